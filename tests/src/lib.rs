//! The local AWS test bed.
//!
//! - [`template`]: table schemas and function settings read from `infra/template.yaml`;
//! - [`lambda_host`]: a Lambda Runtime API that runs a function's real binary;
//! - [`proxy`]: records AWS calls and injects faults, in front of the emulator;
//! - [`bed`]: the connection to the bed and per-test tables;
//! - [`fixtures`]: seeded instances and sample events;
//! - [`saga`]: the atomic-switch state machine executed by moto against the step binaries.
//!
//! The integration tests (`tests/integration/`), the demo and the benchmark are built on these.

pub mod bed;
pub mod bench;
pub mod bench_failover;
pub mod bench_fanout;
pub mod bench_governance;
pub mod bench_hibernation;
pub mod bench_savings;
pub mod bench_swap;
pub mod bench_switch;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod demo_governance;
pub mod demo_swap;
pub mod demo_switch;
pub mod fixtures;
pub mod functions;
pub mod gateway;
pub mod governance;
pub mod iam;
pub mod lambda_host;
pub mod proxy;
pub mod saga;
pub mod swap;
pub mod template;

pub use bed::{Bed, HOME_ACCOUNT, REGION, Tables};
pub use fixtures::{Event, Launch};
pub use lambda_host::{FunctionSpec, LambdaHost, Outcome};
pub use proxy::{AwsProxy, Call, Fault, Forwarder};
