//! Pure rules of the Spot optimizer.
//!
//! Nothing here talks to AWS or knows an SDK type: the decisions (what pool an event names, whether a
//! pool is quarantined, how a new signal changes a quarantine, which credentials reach an account)
//! are plain functions over plain data, each tested beside its code. The traits in [`ports`] are what
//! the adapters in `spot-aws` implement.

pub mod account;
pub mod asg;
pub mod catalog;
pub mod clock;
pub mod enforcement;
pub mod gatekeeper;
pub mod metrics;
pub mod mode;
pub mod pool;
pub mod ports;
pub mod pricing;
pub mod quarantine;
pub mod report;
pub mod route;
pub mod run;
pub mod saga;
pub mod scope;
pub mod settings;
pub mod signal;
pub mod switch;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod waste;

pub use account::{Access, Account, AccountError, AccountView, CachedRegistry, Environment};
pub use clock::{Clock, FixedClock, SystemClock};
pub use gatekeeper::Gate;
pub use mode::{LiveSwitch, Mode};
pub use pool::{PoolKey, PoolKeyError};
pub use ports::{AwsError, AwsErrorKind, Placement};
pub use quarantine::{Decision, QuarantinePolicy, QuarantineRecord};
pub use signal::{Signal, SignalError, SignalKind};

/// Optimistic writes that lose a race re-read and re-decide at most this many times.
pub const MAX_WRITE_ATTEMPTS: usize = 5;

/// The error for an optimistic write that lost the race every time.
pub fn concurrent_update(operation: &str, pool: &PoolKey) -> AwsError {
    AwsError::new(
        AwsErrorKind::Transient,
        operation,
        Some("ConcurrentUpdate".into()),
        format!("{pool} kept changing during {MAX_WRITE_ATTEMPTS} attempts"),
    )
}
