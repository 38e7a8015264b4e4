//! Adapters from the optimizer's ports (`spot_domain::ports`) to AWS, one module per service.
//!
//! SDK types stay inside this crate: callers see domain types and [`AwsError`], whose kind keeps the
//! SDK's retry classification (throttling and 5xx are `Transient`).
//!
//! [`AwsError`]: spot_domain::AwsError

pub mod autoscaling;
pub mod clients;
pub mod dynamodb;
pub mod ec2;
mod error;
pub mod fleet;
pub mod governance_tables;
pub mod telemetry;

pub use clients::AwsContext;
pub use dynamodb::{AccountsTable, QuarantineTable};
pub use ec2::Ec2Directory;
pub use fleet::{AwsFleet, AwsFleets};
pub use governance_tables::{AuditTable, EnforcementTable, WasteTable};
