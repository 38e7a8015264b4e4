//! Pure rules of the Spot optimizer.
//!
//! Nothing here talks to AWS or knows an SDK type: the decisions (what pool an event names, whether
//! a pool is quarantined, which pool a clone goes to, what a rollback undoes, whether a volume is
//! waste) are plain functions over plain data, each tested beside its code. The few traits here
//! (ports) are what `spot-aws` implements for the flows that are generic over them.
//!
//! | module | what lives there |
//! |---|---|
//! | [`pool`] | pool key, signals, quarantine decision, gatekeeper |
//! | [`market`] | shipped catalog, compatible types, pool ranking, exclusions |
//! | [`saga`] | both sagas' state and decisions, shared step machinery, ledger, approvals, router |
//! | [`governance`] | audit/live switch, run scope, waste and enforcement lifecycles |
//! | [`hibernation`] | schedules: the 168-hour week, DST-correct reading, the reconciler's decision |
//! | [`guard`] | pauses (kill switch, circuit breaker), the breaker's count, shadow before live |
//! | [`onboarding`] | which accounts of the organisation to register, in which environment |
//! | [`savings`] | net savings: accruals at the Spot price in force, less what a move keeps, by month |
//! | [`ids`] | the syntax of every identifier an event or request carries |
//! | [`account`], [`instance`], [`tags`], [`audit`] | what several concerns share |
//! | [`config`], [`error`], [`clock`], [`metrics`], [`notice`] | configuration keys, error names, time, EMF, owner notices |

pub mod account;
pub mod audit;
pub mod clock;
pub mod config;
pub mod error;
pub mod governance;
pub mod guard;
pub mod hibernation;
pub mod ids;
pub mod instance;
pub mod market;
pub mod metrics;
pub mod notice;
pub mod onboarding;
pub mod pool;
pub mod saga;
pub mod savings;
pub mod tags;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use account::{
    Access, Account, AccountError, AccountRegistry, AccountView, CachedRegistry, Capability,
    Environment, Unregistered,
};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{AwsError, AwsErrorKind, ErrorName};
pub use pool::quarantine::{Decision, QuarantinePolicy, QuarantineRecord};
pub use pool::signal::{Signal, SignalError, SignalKind};
pub use pool::{PoolKey, PoolKeyError};

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
