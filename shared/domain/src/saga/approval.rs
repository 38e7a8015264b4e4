//! The approval gate both sagas pause on: what the state machine hands the approval step, and the
//! pending request an operator answers (`APPROVALS_TABLE`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::saga::step::Risk;

/// Which saga asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Saga {
    AtomicSwitch,
    AsgSwap,
}

impl fmt::Display for Saga {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AtomicSwitch => "AtomicSwitch",
            Self::AsgSwap => "AsgSwap",
        })
    }
}

/// What the approval step is given: built by the state machine's `Parameters`, so every saga
/// shares one approval function and table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// The execution name (the switch or swap id).
    pub execution: String,
    pub token: String,
    pub saga: Saga,
    pub account_id: String,
    pub region: String,
    /// What would change: an instance id, or `asg/<name>`.
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub summary: String,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    /// Nobody answered before the timeout.
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Expired => "EXPIRED",
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("approval status `{s}` is unknown"))
    }
}

/// A pending approval (`APPROVALS_TABLE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The execution name (the switch or swap id).
    pub saga_id: String,
    pub saga: Saga,
    pub task_token: String,
    pub account_id: String,
    pub region: String,
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// One line: from → to, saving.
    pub summary: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: ApprovalStatus,
    pub answered_by: Option<String>,
    /// Why it was answered so (an operator's reason, or `timed out`).
    #[serde(default)]
    pub answer_note: Option<String>,
}
