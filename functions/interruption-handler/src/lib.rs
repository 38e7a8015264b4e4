//! The interruption handler's flow: event → account → instance → pool → quarantine decision → write.
//!
//! Generic over the ports so the flow is unit-tested in memory; `main.rs` wires the AWS adapters and
//! the integration tests run the real binary against the local AWS bed.

use chrono::{DateTime, TimeDelta, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{Value, json};
use spot_domain::ports::{AccountRegistry, InstanceDirectory, QuarantineStore, Write};
use spot_domain::quarantine::decide;
use spot_domain::{
    AccountError, AccountView, AwsError, AwsErrorKind, Clock, Decision, Environment, PoolKey,
    QuarantinePolicy, QuarantineRecord, Signal, SignalError, metrics,
};
use tracing::{info, warn};

/// Default of `ACCOUNT_CACHE_SECONDS`.
pub const DEFAULT_ACCOUNT_CACHE: TimeDelta = TimeDelta::seconds(300);

/// Settings read from the environment once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub quarantine_table: String,
    pub accounts_table: String,
    pub default_environment: Environment,
    /// The account the function runs in; asked of STS at start when unset.
    pub home_account_id: Option<String>,
    pub policy: QuarantinePolicy,
    /// How long a warm function trusts its copy of an accounts-table item.
    pub account_cache: TimeDelta,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the configuration through `var` (the process environment in `main`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |key: &str| {
            var(key)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError(format!("{key} is not set")))
        };
        let seconds = |key: &str, default: TimeDelta, min: u32| match var(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|s| *s >= min)
                .map(|s| TimeDelta::seconds(s.into()))
                .ok_or_else(|| {
                    ConfigError(format!("{key}=`{v}` is not a number of seconds >= {min}"))
                }),
        };
        let defaults = QuarantinePolicy::default();
        Ok(Self {
            quarantine_table: required("QUARANTINE_TABLE")?,
            accounts_table: required("ACCOUNTS_TABLE")?,
            default_environment: match var("DEFAULT_ENVIRONMENT") {
                None => Environment::Prod,
                Some(v) => v
                    .parse()
                    .map_err(|e| ConfigError(format!("DEFAULT_ENVIRONMENT: {e}")))?,
            },
            home_account_id: var("HOME_ACCOUNT_ID").filter(|v| !v.trim().is_empty()),
            policy: QuarantinePolicy {
                interruption: seconds("QUARANTINE_SECONDS_INTERRUPTION", defaults.interruption, 1)?,
                rebalance: seconds("QUARANTINE_SECONDS_REBALANCE", defaults.rebalance, 1)?,
                ..defaults
            },
            account_cache: seconds("ACCOUNT_CACHE_SECONDS", DEFAULT_ACCOUNT_CACHE, 0)?,
        })
    }
}

/// What the handler did, as returned to the caller and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The pool was not quarantined and now is.
    Quarantined,
    /// The pool was quarantined; the signal was counted and the end pushed out if later.
    Extended,
    /// This event id was already counted.
    Duplicate,
    /// The event came from a LAB account.
    IgnoredLab,
    /// The instance no longer exists, so its pool is unknown.
    IgnoredInstanceNotFound,
    /// The signal is older than its quarantine would last.
    IgnoredStale,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantined => "quarantined",
            Self::Extended => "extended",
            Self::Duplicate => "duplicate",
            Self::IgnoredLab => "ignored_lab",
            Self::IgnoredInstanceNotFound => "ignored_instance_not_found",
            Self::IgnoredStale => "ignored_stale",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub action: Action,
    pub event_id: String,
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub signal: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interruptions: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] SignalError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl HandlerError {
    /// Stable name for Lambda's `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Event(e) => e.error_type(),
            Self::Account(e) => e.error_type(),
            Self::Aws(e) => e.error_type(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

pub struct Handler<R, I, S, C> {
    pub registry: R,
    pub instances: I,
    pub store: S,
    pub clock: C,
    pub home_account: String,
    pub config: Config,
}

impl<R, I, S, C> Handler<R, I, S, C>
where
    R: AccountRegistry,
    I: InstanceDirectory,
    S: QuarantineStore,
    C: Clock,
{
    pub async fn handle(&self, event: Value) -> Result<Response, HandlerError> {
        let event_id = event.get("id").cloned().unwrap_or(Value::Null);
        self.handle_signal(event).await.inspect_err(|err| {
            warn!(event_id = %event_id, error_type = err.error_type(), error = %err, "rejected");
        })
    }

    async fn handle_signal(&self, event: Value) -> Result<Response, HandlerError> {
        let signal = Signal::parse(event)?;
        let account = AccountView::new(
            &signal.account,
            self.registry.account(&signal.account).await?,
            self.config.default_environment,
        );
        if account.environment == Environment::Lab {
            return Ok(decided(&signal, Action::IgnoredLab, None, None));
        }
        let access = account.access(&self.home_account)?;
        let Some(placement) = self
            .instances
            .placement(&access, &signal.region, &signal.instance_id)
            .await?
        else {
            return Ok(decided(
                &signal,
                Action::IgnoredInstanceNotFound,
                None,
                None,
            ));
        };
        let pool = PoolKey::new(&signal.region, &placement.az_id, &placement.instance_type)
            .map_err(|e| {
                AwsError::new(
                    AwsErrorKind::InvalidData,
                    "DescribeInstances",
                    None,
                    format!("{}: {e}", signal.instance_id),
                )
            })?;

        for attempt in 0..spot_domain::MAX_WRITE_ATTEMPTS {
            if attempt > 0 {
                // Writers that lost a race retry at random moments, not in lockstep.
                let cap = 20u64 << attempt.min(4);
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..cap))).await;
            }
            let stored = self.store.get(&pool).await?;
            let now = self.clock.now();
            let (action, record) =
                match decide(stored.as_ref(), &pool, &signal, &self.config.policy, now) {
                    Decision::Duplicate(record) => {
                        return Ok(decided(
                            &signal,
                            Action::Duplicate,
                            Some(&pool),
                            Some(&record),
                        ));
                    }
                    Decision::Stale { .. } => {
                        return Ok(decided(&signal, Action::IgnoredStale, Some(&pool), None));
                    }
                    Decision::Quarantine(record) => (Action::Quarantined, record),
                    Decision::Extend(record) => (Action::Extended, record),
                };
            if self.store.put(&record).await? == Write::Written {
                let response = decided(&signal, action, Some(&pool), Some(&record));
                println!("{}", quarantine_metric(&response, now));
                return Ok(response);
            }
        }
        Err(spot_domain::concurrent_update("PutItem", &pool).into())
    }
}

/// The answer for `signal`, logged as the one decision line of this event.
fn decided(
    signal: &Signal,
    action: Action,
    pool: Option<&PoolKey>,
    record: Option<&QuarantineRecord>,
) -> Response {
    let response = Response {
        action,
        event_id: signal.event_id.clone(),
        account: signal.account.clone(),
        region: signal.region.clone(),
        instance_id: signal.instance_id.clone(),
        signal: signal.kind.detail_type(),
        pool: pool.map(ToString::to_string),
        expires_at: record.map(|r| r.expires_at),
        interruptions: record.map(|r| r.interruptions),
    };
    info!(
        action = action.as_str(),
        instance_id = %response.instance_id,
        pool = response.pool.as_deref().unwrap_or(""),
        account = %response.account,
        event_id = %response.event_id,
        signal = response.signal,
        "decision"
    );
    response
}

/// The EMF line counting one quarantine (new or extended).
fn quarantine_metric(response: &Response, now: DateTime<Utc>) -> String {
    metrics::count(
        "PoolQuarantine",
        1,
        &[("Action", response.action.as_str())],
        &[
            ("pool", json!(response.pool)),
            ("account", json!(response.account)),
            ("instance_id", json!(response.instance_id)),
            ("event_id", json!(response.event_id)),
            ("signal", json!(response.signal)),
        ],
        now,
    )
}

#[cfg(test)]
mod tests;
