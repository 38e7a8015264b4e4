//! The interruption handler's flow: event → account → instance → pool → quarantine decision → write.
//!
//! Generic over the ports so the flow is unit-tested in memory; `main.rs` wires the AWS adapters and
//! the integration tests run the real binary against the local AWS bed.

use chrono::{DateTime, TimeDelta, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{Value, json};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::instance::InstanceDirectory;
use spot_domain::pool::quarantine::{QuarantineStore, Write, decide};
use spot_domain::{
    AccountError, AccountRegistry, AccountView, AwsError, AwsErrorKind, Clock, Decision,
    Environment, ErrorName, PoolKey, QuarantinePolicy, QuarantineRecord, Signal, SignalError,
    metrics,
};
use tracing::{info, warn};

/// Settings read from the environment once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub quarantine_table: String,
    pub accounts: Accounts,
    pub default_environment: Environment,
    pub policy: QuarantinePolicy,
    /// How far after its receipt an event may be dated (clocks differ a little, never by days).
    pub event_skew: TimeDelta,
}

impl Config {
    /// Default of `EVENT_SKEW_SECONDS`.
    pub const DEFAULT_SKEW: TimeDelta = TimeDelta::minutes(5);

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let defaults = QuarantinePolicy::default();
        let second = TimeDelta::seconds(1);
        Ok(Self {
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            accounts: Accounts::from_env(env)?,
            default_environment: env.parsed(key::DEFAULT_ENVIRONMENT, Environment::Prod)?,
            policy: QuarantinePolicy {
                interruption: env.duration(
                    key::QUARANTINE_SECONDS_INTERRUPTION,
                    defaults.interruption,
                    second,
                    1,
                )?,
                rebalance: env.duration(
                    key::QUARANTINE_SECONDS_REBALANCE,
                    defaults.rebalance,
                    second,
                    1,
                )?,
                ..defaults
            },
            event_skew: TimeDelta::seconds(env.bounded(
                key::EVENT_SKEW_SECONDS,
                Self::DEFAULT_SKEW.num_seconds(),
                0,
                3600,
            )?),
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
    pub fn error_name(&self) -> ErrorName {
        match self {
            Self::Event(e) => e.error_name(),
            Self::Account(e) => e.error_name(),
            Self::Aws(e) => e.error_name(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        Diagnostic {
            error_type: err.error_name().as_str().to_owned(),
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
            warn!(event_id = %event_id, error_type = %err.error_name(), error = %err, "rejected");
        })
    }

    async fn handle_signal(&self, event: Value) -> Result<Response, HandlerError> {
        let signal = Signal::parse(event)?.received(self.clock.now(), self.config.event_skew)?;
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
