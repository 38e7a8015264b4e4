//! The scheduled governance functions' rules: the audit/live switch ([`mode`]), what a run covers
//! ([`scope`], [`run`], [`report`]), waste and its lifecycle ([`waste`], [`pricing`]), the
//! enforcement of authorising tags ([`enforcement`]), the ports their flows use ([`ports`]), and a
//! run fanned out on Step Functions ([`fanout`]).

pub mod enforcement;
pub mod fanout;
pub mod mode;
pub mod ports;
pub mod pricing;
pub mod report;
pub mod run;
pub mod scope;
pub mod waste;
