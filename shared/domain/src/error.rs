//! The names errors are known by outside the process, and AWS failures as the rules see them.
//!
//! Lambda reports a failed invocation with an `errorType`; Step Functions' `Retry` and `Catch`
//! route on it, operators' alarms filter on it, the ledger stores it. Those names are the variants
//! of [`ErrorName`]: a typo does not compile, and the ASL shape tests compare each state machine's
//! `ErrorEquals` with [`ErrorName::SWITCH`] and [`ErrorName::SWAP`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every error name a function of this project reports.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
pub enum ErrorName {
    // ---- refused input: nothing was changed, retrying will not help
    /// An event that is malformed, incomplete or impossible.
    InvalidEvent,
    /// A well-formed event of a source or kind this function does not handle.
    UnsupportedEvent,
    /// A request (run request, saga input or step payload) that is malformed or incomplete.
    InvalidRequest,
    // ---- AWS answers
    /// Throttling, timeouts, 5xx: worth retrying.
    Transient,
    AccessDenied,
    /// A stored item or an AWS answer this version cannot read.
    InvalidData,
    /// Any other refusal by an AWS service.
    AwsError,
    /// The accounts table names no usable role for the account.
    AccountMisconfigured,
    // ---- what the sagas route on
    /// The target must not be moved (with every reason).
    NotEligible,
    /// Every pool the target could go to is quarantined.
    PoolQuarantined,
    /// No candidate pool had Spot capacity.
    InsufficientCapacity,
    ImageFailed,
    HealthCheckFailed,
    /// A replacement attached to its group did not become InService (and healthy in its target
    /// groups) in time.
    AttachFailed,
    /// A detached member did not leave its group or its target groups in time.
    DetachFailed,
    /// An operator rejected the change, or nobody answered in time.
    ApprovalRejected,
    /// A rollback could not undo everything safely (a source that will not run again keeps its
    /// Spot clone; a group member it could not put back): the cause says what is left. Alarmed.
    RollbackIncomplete,
    /// The name a rolled-back execution fails with when the cause was Step Functions' own
    /// (`States.*`), never a reserved name.
    SwitchFailed,
    /// The name a failed failover carries when the cause was Step Functions' own (`States.*`).
    FailoverFailed,
    /// A pause is in force (an operator's kill switch, or the circuit breaker's pause of the
    /// account): nothing new is changed; a saga in flight goes to its rollback.
    Paused,
}

impl ErrorName {
    /// The names the atomic switch's ASL routes on (`Retry` and `Catch`), and nothing else.
    pub const SWITCH: &[ErrorName] = &[
        Self::NotEligible,
        Self::PoolQuarantined,
        Self::InsufficientCapacity,
        Self::ImageFailed,
        Self::HealthCheckFailed,
        Self::ApprovalRejected,
        Self::Transient,
        Self::RollbackIncomplete,
    ];

    /// The names the emergency failover's ASL routes on: it retries transient failures, and
    /// every other failure goes to its rollback, which records the name.
    pub const FAILOVER: &[ErrorName] = &[Self::Transient];

    /// The names the ASG swap's ASL routes on.
    pub const SWAP: &[ErrorName] = &[
        Self::NotEligible,
        Self::PoolQuarantined,
        Self::InsufficientCapacity,
        Self::HealthCheckFailed,
        Self::AttachFailed,
        Self::DetachFailed,
        Self::ApprovalRejected,
        Self::Transient,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Refused input: nothing was changed and a retry gets the same answer.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::InvalidEvent | Self::UnsupportedEvent | Self::InvalidRequest
        )
    }
}

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

    /// The name Lambda and the state machines see.
    pub fn error_name(&self) -> ErrorName {
        match self.kind {
            AwsErrorKind::Transient => ErrorName::Transient,
            AwsErrorKind::AccessDenied => ErrorName::AccessDenied,
            AwsErrorKind::InvalidData => ErrorName::InvalidData,
            AwsErrorKind::Rejected => ErrorName::AwsError,
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

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn names_round_trip_through_their_text_and_json() {
        for name in ErrorName::VARIANTS {
            assert_eq!(name.as_str().parse::<ErrorName>(), Ok(*name));
            assert_eq!(
                serde_json::to_value(name).unwrap(),
                serde_json::json!(name.as_str())
            );
            assert!(!name.as_str().starts_with("States."), "reserved by AWS");
        }
        assert!(
            "NotEligble".parse::<ErrorName>().is_err(),
            "a typo is no name"
        );
    }

    #[test]
    fn aws_errors_keep_their_class_in_their_name() {
        let e = AwsError::new(AwsErrorKind::Transient, "DescribeInstances", None, "slow");
        assert_eq!(e.error_name(), ErrorName::Transient);
        assert!(e.is_retryable());
        let e = AwsError::new(
            AwsErrorKind::Rejected,
            "RunInstances",
            Some("Unsupported".into()),
            "no",
        );
        assert_eq!(e.error_name(), ErrorName::AwsError);
        assert_eq!(e.to_string(), "RunInstances failed (Unsupported): no");
    }
}
