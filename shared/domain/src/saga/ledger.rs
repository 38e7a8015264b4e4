//! The ledger both sagas write (`LEDGER_TABLE`): one record per instance a saga moved, would have
//! moved (shadow), or gave up on, with the prices and the reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pool::PoolKey;
use crate::saga::step::{Outcome, Risk, SagaMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    /// Shadow mode: what would have happened.
    Shadow,
    Switched,
    RolledBack,
    /// Rolled back as far as it safely could: the source did not run again, its clone is kept.
    RollbackIncomplete,
    Rejected,
    NotEligible,
    /// Switched, then switched back by an operator (`spotctl switch revert`): the source runs
    /// again with its address, the clone is terminated.
    Reverted,
}

impl From<Outcome> for LedgerStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Rejected => Self::Rejected,
            Outcome::NotEligible => Self::NotEligible,
            Outcome::RolledBack => Self::RolledBack,
        }
    }
}

/// One instance's move, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The atomic switch's execution name, or `<swap id>#<member>` for a member of an ASG swap
    /// ([`crate::saga::swap::record_id`]).
    pub switch_id: String,
    pub account_id: String,
    pub region: String,
    pub source_instance_id: String,
    pub mode: SagaMode,
    pub status: LedgerStatus,
    pub new_instance_id: Option<String>,
    pub pool: Option<PoolKey>,
    pub instance_type: Option<String>,
    pub on_demand_price: Option<f64>,
    pub spot_price: Option<f64>,
    /// Realised (switched) or counterfactual (shadow) saving, USD per hour.
    pub saving_per_hour: Option<f64>,
    pub risk: Option<Risk>,
    pub cause: Option<String>,
    pub at: DateTime<Utc>,
    /// The Auto Scaling group, for a member replaced by an ASG swap.
    #[serde(default)]
    pub group: Option<String>,
    /// A switch's downtime, milliseconds: from the source's stop request to its Elastic IP
    /// answering on the clone (the association's answer). None without an address to move, or
    /// when the stop was requested by an earlier attempt of the step (not measured, not guessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
}
