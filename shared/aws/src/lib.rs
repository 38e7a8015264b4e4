//! Adapters from the optimizer's rules to AWS, one module per service: callers see domain types
//! and [`AwsError`], whose kind keeps the SDK's retry classification (throttling and 5xx are
//! `Transient`). Nothing here reads the environment: functions pass their typed configuration.
//!
//! | module | service |
//! |---|---|
//! | [`ec2`] | EC2: instances, images, addresses, launches, market, waste inventory |
//! | [`autoscaling`] | Auto Scaling: groups, attach/detach, launch configurations |
//! | [`elbv2`] | ELBv2: target health, deregistration |
//! | [`dynamodb`] | one module per table |
//! | [`sfn`], [`sns`], [`pricing`] | Step Functions, SNS, the Price List |
//! | [`organizations`] | the organisation's accounts, OU paths and tags (onboarding) |
//! | [`events`] | EventBridge: the decisions published, the failovers started |
//! | [`clients`], [`reach`] | SDK configuration, member accounts through AssumeRole |
//! | [`guard`] | the guardrails: pauses, shadow before live, the circuit breaker's count |
//! | [`fleet`] | the governance functions' port over EC2 and Auto Scaling |
//! | [`step`], [`telemetry`] | the saga steps' Lambda runner, JSON logs |
//!
//! [`AwsError`]: spot_domain::AwsError

pub mod autoscaling;
pub mod clients;
pub mod dynamodb;
pub mod ec2;
pub mod elbv2;
mod error;
pub mod events;
pub mod fleet;
pub mod guard;
pub mod lambda;
pub mod organizations;
pub mod pricing;
pub mod reach;
pub mod sfn;
pub mod sns;
pub mod step;
pub mod telemetry;
pub mod tls;

pub use clients::AwsContext;
pub use dynamodb::{
    AccountsTable, ApprovalsTable, AuditTable, ControlTable, EnforcementTable, HibernationTable,
    LedgerTable, QuarantineTable, SavingsInputs, SchedulesTable, WasteTable,
};
pub use ec2::{Ec2, Ec2Directory};
pub use events::{EventBus, SignalReactions};
pub use fleet::{AwsFleet, AwsFleets};
pub use guard::Guardian;
pub use pricing::PriceList;
pub use reach::{AccountClients, Reach};
pub use sfn::{Executions, Started, StateMachines, TaskAnswers};
pub use sns::Notifier;
