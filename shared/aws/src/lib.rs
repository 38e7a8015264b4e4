//! Adapters from the optimizer's ports (`spot_domain::ports`) to AWS, one module per service.
//!
//! SDK types stay inside this crate: callers see domain types and [`AwsError`], whose kind keeps the
//! SDK's retry classification (throttling and 5xx are `Transient`).
//!
//! [`AwsError`]: spot_domain::AwsError

pub mod asg_swap;
pub mod autoscaling;
pub mod clients;
pub mod dynamodb;
pub mod ec2;
pub mod ec2_switch;
mod error;
pub mod fleet;
pub mod governance_tables;
pub mod pricing;
pub mod sfn;
pub mod sns;
pub mod step;
pub mod switch_tables;
pub mod telemetry;

pub use asg_swap::AwsGroupFleet;
pub use clients::AwsContext;
pub use dynamodb::{AccountsTable, QuarantineTable};
pub use ec2::Ec2Directory;
pub use ec2_switch::{AwsReach, AwsSwitchFleet, AwsSwitchFleets, reach};
pub use fleet::{AwsFleet, AwsFleets};
pub use governance_tables::{AuditTable, EnforcementTable, WasteTable};
pub use pricing::PriceList;
pub use sfn::{StateMachines, TaskAnswers};
pub use sns::Notifier;
pub use switch_tables::{ApprovalsTable, SwitchTable};
