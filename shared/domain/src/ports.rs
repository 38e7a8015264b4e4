//! What the rules need from the outside world. `spot-aws` implements these over the AWS SDK; unit
//! tests implement them over memory.

use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::account::{Access, Account};
use crate::pool::PoolKey;
use crate::quarantine::QuarantineRecord;

/// An AWS call that failed, classified so callers can decide to retry, report or route on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    pub kind: AwsErrorKind,
    /// The API operation, e.g. `DescribeInstances`.
    pub operation: String,
    /// The service's error code, e.g. `RequestLimitExceeded`, when there is one.
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttling, timeouts, 5xx, connection failures: worth retrying.
    Transient,
    AccessDenied,
    /// A stored item this version cannot read.
    InvalidData,
    /// Any other answer from the service.
    Rejected,
}

impl AwsError {
    pub fn new(
        kind: AwsErrorKind,
        operation: impl Into<String>,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation: operation.into(),
            code,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == AwsErrorKind::Transient
    }

    /// Stable error name for Lambda and state machines.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            AwsErrorKind::Transient => "Transient",
            AwsErrorKind::AccessDenied => "AccessDenied",
            AwsErrorKind::InvalidData => "InvalidData",
            AwsErrorKind::Rejected => "AwsError",
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instance_type: String,
    pub az_name: String,
    pub az_id: String,
    pub state: String,
    /// `spot` for Spot instances, none for on-demand.
    pub lifecycle: Option<String>,
}

/// The accounts registry.
pub trait AccountRegistry: Send + Sync {
    fn account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Account>, AwsError>> + Send;

    /// Every registered account.
    fn all(&self) -> impl Future<Output = Result<Vec<Account>, AwsError>> + Send;
}

/// Finds where an instance runs, in the account and region the caller names.
pub trait InstanceDirectory: Send + Sync {
    /// `Ok(None)` when the instance does not exist (any more).
    fn placement(
        &self,
        access: &Access,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Placement>, AwsError>> + Send;
}

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Written,
    /// Someone else changed the item since it was read; read again and decide again.
    Conflict,
}

/// The shared table of pool quarantines.
pub trait QuarantineStore: Send + Sync {
    /// A strongly consistent read of one pool's record, active or not.
    fn get(
        &self,
        pool: &PoolKey,
    ) -> impl Future<Output = Result<Option<QuarantineRecord>, AwsError>> + Send;

    /// Writes `record` only if the stored version is `record.version - 1` (absent for version 1).
    fn put(
        &self,
        record: &QuarantineRecord,
    ) -> impl Future<Output = Result<Write, AwsError>> + Send;

    /// Every record in the table, active or not.
    fn all(&self) -> impl Future<Output = Result<Vec<QuarantineRecord>, AwsError>> + Send;
}

// ---- scheduled governance: waste scanner and security enforcer -----------------------------------

use crate::enforcement::{EnforceAction, EnforcementRecord, Instance};
use crate::mode::Mode;
use crate::waste::{Inventory, Usage, WasteKind, WasteRecord};

/// What to delete, and what a previous attempt left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub kind: WasteKind,
    pub resource_id: String,
    /// For an AMI: its snapshots, deleted with it.
    pub snapshot_ids: Vec<String>,
    /// For a volume: snapshot it first.
    pub backup: bool,
    /// A backup snapshot an earlier run already started.
    pub backup_snapshot_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Done {
        backup_snapshot_id: Option<String>,
    },
    /// The volume's backup snapshot is not complete yet: the volume is kept until a later run.
    BackupPending {
        backup_snapshot_id: String,
    },
    /// The resource changed since the scan (e.g. the address got associated): nothing was done.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforced {
    Done,
    /// Termination or stop protection, or another refusal: reported, never forced.
    Refused(String),
}

/// One account and region's EC2 and Auto Scaling resources.
pub trait Fleet: Send + Sync {
    /// Addresses, volumes, snapshots and own images (incl. disabled and deprecated); `usage` empty.
    fn waste_resources(&self) -> impl Future<Output = Result<Inventory, AwsError>> + Send;
    /// What uses images and snapshots: instances (any state) running `images`, and every launch
    /// template version and launch configuration.
    fn usage(&self, images: &[String]) -> impl Future<Output = Result<Usage, AwsError>> + Send;
    /// Instances in state `pending` or `running`.
    fn running_instances(&self) -> impl Future<Output = Result<Vec<Instance>, AwsError>> + Send;
    /// Tags all `resource_ids` (one call).
    fn set_tag(
        &self,
        resource_ids: &[String],
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn remove_tag(
        &self,
        resource_ids: &[String],
        key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes after re-checking that it is still unused; "already gone" is done.
    fn delete(&self, deletion: &Deletion)
    -> impl Future<Output = Result<Deleted, AwsError>> + Send;
    fn enforce(
        &self,
        instance_id: &str,
        action: EnforceAction,
    ) -> impl Future<Output = Result<Enforced, AwsError>> + Send;
}

/// Builds the [`Fleet`] of an account and region.
pub trait Fleets: Send + Sync {
    type Fleet: Fleet;
    fn fleet(&self, access: &Access, region: &str) -> impl Future<Output = Self::Fleet> + Send;
}

/// Tracked records of one account and region, and conditional writes (same rule as [`QuarantineStore::put`]).
pub trait WasteStore: Send + Sync {
    fn records(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<WasteRecord>, AwsError>> + Send;
    fn put(&self, record: &WasteRecord) -> impl Future<Output = Result<Write, AwsError>> + Send;
}

pub trait EnforcementStore: Send + Sync {
    fn records(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<EnforcementRecord>, AwsError>> + Send;
    fn put(
        &self,
        record: &EnforcementRecord,
    ) -> impl Future<Output = Result<Write, AwsError>> + Send;
}

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
