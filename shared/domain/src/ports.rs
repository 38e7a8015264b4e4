//! What the rules need from the outside world. `spot-aws` implements these over the AWS SDK; unit
//! tests implement them over memory.

use std::fmt;
use std::future::Future;

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
