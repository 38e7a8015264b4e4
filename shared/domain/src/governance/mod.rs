//! The scheduled governance functions' rules: the audit/live switch ([`mode`]), what a run covers
//! ([`scope`], [`run`], [`report`]), waste and its lifecycle ([`waste`], [`pricing`]), the
//! enforcement of authorising tags ([`enforcement`]), and the ports their flows use ([`ports`]).

pub mod enforcement;
pub mod mode;
pub mod ports;
pub mod pricing;
pub mod report;
pub mod run;
pub mod scope;
pub mod waste;
