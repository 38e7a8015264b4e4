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
use spot_domain::saga::failover::{
    self, FAILOVER_STARTED, FailoverRequest, Reactions, RebalanceAction, Workload,
};
use spot_domain::{
    AccountError, AccountRegistry, AccountView, AwsError, AwsErrorKind, Clock, Decision,
    Environment, ErrorName, PoolKey, QuarantinePolicy, QuarantineRecord, Signal, SignalError,
    SignalKind, metrics,
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
    /// The emergency failover's state machine; none: no failover is started (quarantine only).
    pub failover_state_machine: Option<String>,
    /// What a rebalance recommendation for a managed instance does.
    pub rebalance_action: RebalanceAction,
    /// The bus decisions are published on; none: not published.
    pub event_bus: Option<String>,
    /// How a signal from an account the registry does not know is read.
    pub unregistered: spot_domain::Unregistered,
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
            failover_state_machine: env.optional(key::FAILOVER_STATE_MACHINE_ARN),
            rebalance_action: env.parsed(key::REBALANCE_ACTION, RebalanceAction::Replace)?,
            event_bus: env.optional(key::EVENT_BUS_NAME),
            unregistered: spot_domain::config::unregistered(env)?,
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
    /// The failover of a managed instance: its execution, and whether this signal started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStart>,
}

/// The failover a signal for a managed instance asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverStart {
    pub execution: String,
    /// The workload (its original instance).
    pub workload: String,
    /// False when an execution of that name existed: a repeated signal, or the warning after a
    /// rebalance recommendation, continues the failover already under way.
    pub started: bool,
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

pub struct Handler<R, I, S, C, P> {
    pub registry: R,
    pub instances: I,
    pub store: S,
    pub clock: C,
    /// Failovers and the decision events.
    pub reactions: P,
    pub home_account: String,
    pub config: Config,
}

impl<R, I, S, C, P> Handler<R, I, S, C, P>
where
    R: AccountRegistry,
    I: InstanceDirectory,
    S: QuarantineStore,
    C: Clock,
    P: Reactions,
{
    pub async fn handle(&self, event: Value) -> Result<Response, HandlerError> {
        let event_id = event.get("id").cloned().unwrap_or(Value::Null);
        self.handle_signal(event).await.inspect_err(|err| {
            warn!(event_id = %event_id, error_type = %err.error_name(), error = %err, "rejected");
        })
    }

    async fn handle_signal(&self, event: Value) -> Result<Response, HandlerError> {
        let received = self.clock.now();
        let signal = Signal::parse(event)?.received(received, self.config.event_skew)?;
        let account = AccountView::new(
            &signal.account,
            self.registry.account(&signal.account).await?,
            self.config.default_environment,
        );
        let access = account.access_with(&self.home_account, &self.config.unregistered)?;
        // Read even in a LAB account: its signals never quarantine, but a workload the optimizer
        // put on Spot there still gets its replacement.
        let Some(placement) = self
            .instances
            .placement(&access, &signal.region, &signal.instance_id)
            .await?
        else {
            return Ok(self
                .decided(&signal, Action::IgnoredInstanceNotFound, None, None, None)
                .await);
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
        // The failover first: its first launch is due within a second of the warning.
        let failover = match failover::workload(&placement.tags) {
            Some(workload) if self.fails_over(&signal) => Some(
                self.start_failover(&signal, &workload, &pool, received)
                    .await,
            ),
            _ => None,
        };
        let (failover, failed_start) = match failover {
            Some(Ok(start)) => (Some(start), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let response = if account.environment == Environment::Lab {
            self.decided(&signal, Action::IgnoredLab, Some(&pool), None, failover)
                .await
        } else {
            self.quarantine(&signal, &pool, failover).await?
        };
        // A failover that could not start fails the invocation, so Lambda delivers the signal
        // again: the quarantine then counts it as a duplicate and the start is tried once more.
        match failed_start {
            Some(e) => Err(e.into()),
            None => Ok(response),
        }
    }

    /// Whether `signal` fails a managed instance over (`REBALANCE_ACTION` for a recommendation).
    fn fails_over(&self, signal: &Signal) -> bool {
        self.config.failover_state_machine.is_some()
            && match signal.kind {
                SignalKind::InterruptionWarning => true,
                SignalKind::RebalanceRecommendation => {
                    self.config.rebalance_action == RebalanceAction::Replace
                }
                SignalKind::CapacityShortage => false,
            }
    }

    async fn start_failover(
        &self,
        signal: &Signal,
        workload: &Workload,
        pool: &PoolKey,
        received: DateTime<Utc>,
    ) -> Result<FailoverStart, AwsError> {
        let execution = failover::execution_name(&signal.account, &signal.instance_id);
        let request = FailoverRequest {
            account_id: signal.account.clone(),
            region: signal.region.clone(),
            instance_id: signal.instance_id.clone(),
            signal: signal.kind,
            event_id: signal.event_id.clone(),
            received_at: received,
            pool: Some(pool.clone()),
            mode: None,
            settings: None,
        };
        let started = self
            .reactions
            .start_failover(&execution, &request)
            .await
            .inspect_err(|e| warn!(execution, error = %e, "failover not started"))?;
        info!(execution, workload = workload.id(), started, "failover");
        Ok(FailoverStart {
            execution,
            workload: workload.id().to_owned(),
            started,
        })
    }

    /// Quarantines `pool` for `signal`, racing other writers optimistically.
    async fn quarantine(
        &self,
        signal: &Signal,
        pool: &PoolKey,
        failover: Option<FailoverStart>,
    ) -> Result<Response, HandlerError> {
        for attempt in 0..spot_domain::MAX_WRITE_ATTEMPTS {
            if attempt > 0 {
                // Writers that lost a race retry at random moments, not in lockstep.
                let cap = 20u64 << attempt.min(4);
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..cap))).await;
            }
            let stored = self.store.get(pool).await?;
            let now = self.clock.now();
            let (action, record) =
                match decide(stored.as_ref(), pool, signal, &self.config.policy, now) {
                    Decision::Duplicate(record) => {
                        return Ok(self
                            .decided(
                                signal,
                                Action::Duplicate,
                                Some(pool),
                                Some(&record),
                                failover,
                            )
                            .await);
                    }
                    Decision::Stale { .. } => {
                        return Ok(self
                            .decided(signal, Action::IgnoredStale, Some(pool), None, failover)
                            .await);
                    }
                    Decision::Quarantine(record) => (Action::Quarantined, record),
                    Decision::Extend(record) => (Action::Extended, record),
                };
            if self.store.put(&record).await? == Write::Written {
                let response = self
                    .decided(signal, action, Some(pool), Some(&record), failover)
                    .await;
                println!("{}", quarantine_metric(&response, now));
                return Ok(response);
            }
        }
        Err(spot_domain::concurrent_update("PutItem", pool).into())
    }

    /// The answer for `signal`, logged as the one decision line of this event and published on
    /// the bus. Publishing is best effort: the decision stands whether or not others hear of it
    /// (a failure is logged and counted as `DecisionNotPublished`).
    async fn decided(
        &self,
        signal: &Signal,
        action: Action,
        pool: Option<&PoolKey>,
        record: Option<&QuarantineRecord>,
        failover: Option<FailoverStart>,
    ) -> Response {
        let response = decided(signal, action, pool, record, failover);
        let events = decision_events(&response, self.clock.now());
        if let Err(e) = self.reactions.publish(&events).await {
            warn!(event_id = %response.event_id, error = %e, "decision not published");
            println!(
                "{}",
                metrics::count(
                    metrics::name::DECISION_NOT_PUBLISHED,
                    1,
                    &[("Action", action.as_str())],
                    &[("event_id", json!(response.event_id))],
                    self.clock.now(),
                )
            );
        }
        response
    }
}

/// The answer for `signal`, logged as the one decision line of this event.
fn decided(
    signal: &Signal,
    action: Action,
    pool: Option<&PoolKey>,
    record: Option<&QuarantineRecord>,
    failover: Option<FailoverStart>,
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
        failover,
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

impl Action {
    /// The detail-type of the event that publishes this decision (source `spot-optimizer`).
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Quarantined => "Spot Pool Quarantined",
            Self::Extended => "Spot Pool Quarantine Extended",
            Self::Duplicate => "Spot Signal Duplicate",
            Self::IgnoredLab => "Spot Signal Ignored LAB Account",
            Self::IgnoredInstanceNotFound => "Spot Signal Ignored Instance Not Found",
            Self::IgnoredStale => "Spot Signal Ignored Stale",
        }
    }
}

/// The events publishing `response`: the decision, and the failover if this signal started one.
/// Schema: docs/events.md.
pub fn decision_events(response: &Response, now: DateTime<Utc>) -> Vec<(String, Value)> {
    let mut detail = serde_json::to_value(response).unwrap_or(Value::Null);
    if let Some(map) = detail.as_object_mut() {
        map.insert("decided_at".into(), json!(now));
    }
    let mut events = vec![(response.action.detail_type().to_owned(), detail.clone())];
    if response.failover.as_ref().is_some_and(|f| f.started) {
        events.push((FAILOVER_STARTED.to_owned(), detail));
    }
    events
}

/// The EMF line counting one quarantine (new or extended).
fn quarantine_metric(response: &Response, now: DateTime<Utc>) -> String {
    metrics::count(
        metrics::name::POOL_QUARANTINE,
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
