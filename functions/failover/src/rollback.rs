//! What a failed failover leaves, and the record of why. Nothing here makes the workload worse
//! off than the failure did: a replacement is terminated only while the instance it was to
//! replace still runs (a rebalance recommendation: the old one keeps serving), and only when it
//! carries this failover's mark; otherwise it is kept running as the workload's best chance, and
//! the cause says so. A group member's replacement that never joined the group is terminated (the
//! group replaces its member itself); one that joined stays, and a maximum size the promotion
//! raised is put back. An original started by the fallback is left running. The dying instance's
//! volumes are kept (live mode) whether or not the preserve step ran. Every action is idempotent:
//! the state machine retries this step until it answers.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use spot_aws::ec2::Kept;
use spot_aws::sns::announce;
use spot_aws::{AccountClients, Ec2, LedgerTable, Notifier, Reach};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::instance::SourceInstance;
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::failover::{
    self, Dying, FailoverInput, FailoverRecord, FailoverStatus, Market,
};
use spot_domain::saga::step::CaughtError;
use spot_domain::saga::{SagaMode, StepError};
use spot_domain::tags::FAILOVER_TAG;
use spot_domain::{ErrorName, metrics};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub breaker: spot_domain::guard::Breaker,
    pub ledger_table: String,
    pub live: LiveSwitch,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            breaker: spot_domain::config::breaker(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            live: config::live_switch(env, env.parsed(key::MODE, SagaMode::Shadow)?.as_mode())?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
        })
    }
}

/// The rollback's answer: the name and cause the failed execution ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolledBack {
    pub error: ErrorName,
    pub cause: String,
}

pub struct Rollback {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub ledger: LedgerTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
    pub config: Config,
}

impl Rollback {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Failover, "failover-rollback").await;
        Ok(Self {
            ledger: LedgerTable::new(crate::dynamodb(&ctx), &config.ledger_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn.clone()),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "failover-rollback", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "failover-rollback", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: FailoverInput) -> Result<RolledBack, StepError> {
        let state = &input.state;
        let request = &state.request;
        let failover_id = &input.execution;
        let caught = state.error.clone().unwrap_or(CaughtError {
            error: String::new(),
            cause: "no error was caught".to_owned(),
        });
        let error = caught.name().unwrap_or(ErrorName::FailoverFailed);
        let mut notes = vec![format!("{}: {}", caught.error, caught.cause)];
        let mode = match &state.launch {
            Some(launch) => launch.mode,
            None => request
                .mode
                .unwrap_or(SagaMode::Live)
                .gated(&self.config.live, &request.account_id),
        };
        let refused_early =
            state.launch.is_none() && CaughtError::before_reaching_the_account(error);
        let mut replacement = None;
        if mode == SagaMode::Live && !refused_early {
            let account = self
                .reach
                .account(&request.account_id, &request.region, failover_id)
                .await?;
            let ec2 = &account.ec2;
            let dying = ec2.source(&request.instance_id).await?;
            replacement = self.leftover(ec2, state, failover_id).await?;
            let group = state
                .launch
                .as_ref()
                .map(|l| l.workload.clone())
                .or_else(|| dying.as_ref().and_then(|d| failover::workload(&d.tags)))
                .and_then(|w| w.group().map(str::to_owned));
            if let (Some((id, _)), Some(group)) = (&replacement, &group) {
                notes.push(self.settle_member(&account, group, id, failover_id).await?);
            } else if let Some((id, market)) = &replacement {
                notes.push(
                    self.settle(ec2, id, *market, dying.as_ref(), request, failover_id)
                        .await?,
                );
            }
            if let Some(d) = &dying {
                notes.extend(self.keep(ec2, d).await?);
            }
        }
        let cause = notes.join("; ");
        let now = Utc::now();
        self.ledger
            .record(&FailoverRecord {
                switch_id: failover_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                workload: state.launch.as_ref().map(|l| l.workload.id().to_owned()),
                old_instance_id: request.instance_id.clone(),
                new_instance_id: replacement.as_ref().map(|(id, _)| id.clone()),
                market: replacement.as_ref().map(|(_, m)| *m),
                pool: None,
                instance_type: None,
                fallbacks: state
                    .launch
                    .as_ref()
                    .and_then(|l| l.replacement.as_ref())
                    .map(|r| r.fallbacks.clone())
                    .unwrap_or_default(),
                on_demand_until: state
                    .launch
                    .as_ref()
                    .and_then(|l| l.hold.as_ref())
                    .map(|h| h.until),
                mode,
                status: FailoverStatus::Failed,
                signal: request.signal.detail_type().to_owned(),
                received_at: request.received_at,
                seconds_to_healthy: None,
                downtime_seconds: None,
                error: Some(error),
                cause: Some(cause.clone()),
                at: now,
            })
            .await?;
        println!(
            "{}",
            metrics::count(
                metrics::name::FAILOVER_FAILED,
                1,
                &[("Error", error.as_str())],
                &[
                    ("failover", json!(failover_id)),
                    ("instance_id", json!(request.instance_id)),
                ],
                now,
            )
        );
        if mode == SagaMode::Live {
            println!(
                "{}",
                metrics::count(
                    metrics::name::SAGA_ROLLED_BACK,
                    1,
                    &[("Saga", "EmergencyFailover")],
                    &[
                        ("failover", json!(failover_id)),
                        ("error", json!(error.as_str()))
                    ],
                    now,
                )
            );
            announce(
                &self.notices,
                &[Notice::saga(
                    Kind::Failover,
                    Event::RolledBack,
                    failover_id,
                    &request.account_id,
                    &request.region,
                    &request.instance_id,
                    mode.as_str(),
                    &notes,
                )],
            )
            .await;
            if spot_domain::guard::Breaker::counts(
                spot_domain::saga::ledger::LedgerStatus::RolledBack,
                Some(error),
            ) && !refused_early
            {
                let end = spot_aws::guard::SagaEnd {
                    kind: Kind::Failover,
                    saga_id: failover_id,
                    account: &request.account_id,
                    region: &request.region,
                };
                end.failed(
                    &self.guard,
                    self.config.breaker,
                    &self.notices,
                    error.as_str(),
                    now,
                )
                .await?;
            }
        }
        warn!(error = %error, cause, "failover failed");
        Ok(RolledBack { error, cause })
    }

    /// The replacement this failover launched or started, if any: from the state, else found by
    /// its mark or tokens (a launch step that failed after launching).
    async fn leftover(
        &self,
        ec2: &Ec2,
        state: &failover::FailoverState,
        failover_id: &str,
    ) -> Result<Option<(String, Market)>, StepError> {
        if let Some(r) = state.launch.as_ref().and_then(|l| l.replacement.as_ref()) {
            return Ok(Some((r.instance_id.clone(), r.market)));
        }
        let tokens: Vec<String> = (0..16)
            .map(|i| crate::launch::client_token(failover_id, i))
            .collect();
        Ok(ec2
            .failover_launch(failover_id, &tokens)
            .await?
            .map(|found| (found.instance_id, Market::Spot)))
    }

    /// A member's replacement: kept if it joined the group (it serves there; the maximum the
    /// promotion raised is put back when the group allows), terminated if it never did and
    /// carries this failover's mark.
    async fn settle_member(
        &self,
        account: &AccountClients,
        group: &str,
        replacement: &str,
        failover_id: &str,
    ) -> Result<String, StepError> {
        let joined = account
            .autoscaling
            .group(group)
            .await?
            .is_some_and(|g| g.member(replacement).is_some());
        let restored = crate::promote::restore_max(account, &self.ledger, group, failover_id)
            .await?
            .map(|r| format!("; {r}"))
            .unwrap_or_default();
        if joined {
            return Ok(format!(
                "replacement {replacement} is kept: it joined group {group}{restored}"
            ));
        }
        let mark = account.ec2.tags(replacement).await?;
        if mark.get(FAILOVER_TAG).map(String::as_str) != Some(failover_id) {
            return Ok(format!(
                "replacement {replacement} does not carry this failover's mark; left \
                 alone{restored}"
            ));
        }
        account.ec2.terminate(replacement).await?;
        info!(
            replacement,
            group, "replacement outside the group terminated"
        );
        Ok(format!(
            "replacement {replacement} terminated: it never joined group {group}, which replaces \
             its member itself{restored}"
        ))
    }

    /// Terminates the replacement while the old instance still serves; keeps it otherwise.
    async fn settle(
        &self,
        ec2: &Ec2,
        replacement: &str,
        market: Market,
        dying: Option<&SourceInstance>,
        request: &failover::FailoverRequest,
        failover_id: &str,
    ) -> Result<String, StepError> {
        if market == Market::Origin {
            return Ok(format!(
                "the original {replacement} was started and is left running"
            ));
        }
        if market == Market::Standby {
            return Ok(format!(
                "{replacement} was the workload's standby; it is left running"
            ));
        }
        let old_serves = request.retires_the_old()
            && dying.is_some_and(|d| matches!(d.state.as_str(), "pending" | "running"));
        if !old_serves {
            return Ok(format!(
                "replacement {replacement} is kept: the interrupted instance is going, and an \
                 instance that may still come up is better than none"
            ));
        }
        // Verified on the resource: only an instance this failover launched.
        let mark = ec2.tags(replacement).await?;
        if mark.get(FAILOVER_TAG).map(String::as_str) != Some(failover_id) {
            return Ok(format!(
                "replacement {replacement} does not carry this failover's mark; left alone"
            ));
        }
        ec2.terminate(replacement).await?;
        info!(
            replacement,
            "replacement terminated; the old instance serves"
        );
        Ok(format!(
            "replacement {replacement} terminated: {} still serves",
            request.instance_id
        ))
    }

    /// Keeps the dying instance's volumes (idempotent; the preserve step may not have run).
    async fn keep(&self, ec2: &Ec2, dying: &SourceInstance) -> Result<Option<String>, StepError> {
        let volumes = Dying::of(dying).volumes;
        Ok(
            match ec2
                .keep_volumes(&dying.instance_id, &volumes, Utc::now())
                .await?
            {
                Kept::Volumes(v) if !v.is_empty() => Some(format!("{} volume(s) kept", v.len())),
                _ => None,
            },
        )
    }
}
