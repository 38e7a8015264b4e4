//! The sagas: the atomic switch ([`switch`]) and the ASG swap ([`swap`]), the machinery their steps
//! share ([`step`]: mode, risk, settings, errors, phases, the audited-action helper), the pool
//! chooser of their launch steps ([`launch`]), their ledger and approval gate, and the router that
//! sends each instance to one of them ([`route`]).
//!
//! Each step of a saga is a Lambda in `functions/switch` or `functions/swap`: it reads what it
//! needs from AWS, asks a decision function here, and acts. The decisions are tested here in
//! memory; the steps in the bed (moto executing the real state machines).

pub mod approval;
pub mod failover;
pub mod launch;
pub mod ledger;
pub mod route;
pub mod step;
pub mod swap;
pub mod switch;

pub use step::{Outcome, Phase, Progress, Risk, SagaMode, Settings, StepError, StepStatus};
