//! The audit trail: every destructive action is recorded before it is taken, and how it ended
//! after (`AUDIT_TABLE`), so an operator can see who did what and why, and a re-run after a crash
//! finds what was already done.

use std::future::Future;

use serde::Serialize;

use crate::error::AwsError;
use crate::governance::mode::Mode;

/// One destructive action, recorded before it is taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Stable for one decision, so a re-run after a crash finds it: `{function}#{resource key}#{action}#{deadline}`.
    pub action_id: String,
    pub function: String,
    pub action: String,
    pub account: String,
    pub region: String,
    pub resource_id: String,
    pub reason: String,
    /// The resource's record before the action, as JSON.
    pub pre_state: String,
    pub mode: Mode,
    pub request_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// An audited action as the trail holds it: the entry, how it ended (`started` until it did) and
/// when.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub action_id: String,
    pub function: String,
    pub action: String,
    pub account: String,
    pub region: String,
    pub resource_id: String,
    pub reason: String,
    pub pre_state: String,
    pub mode: Mode,
    pub request_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub outcome: String,
    #[serde(default)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether an audited action was already completed by an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBegin {
    /// First attempt, or an earlier attempt that did not finish: take the action.
    Proceed,
    /// An earlier run took it and recorded so.
    AlreadyDone,
}

pub trait AuditLog: Send + Sync {
    /// Records the intent (once per `action_id`).
    fn begin(
        &self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<AuditBegin, AwsError>> + Send;
    /// Records how it ended: `done`, `pending`, `refused: …`, `failed: …`.
    fn finish(
        &self,
        action_id: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}
