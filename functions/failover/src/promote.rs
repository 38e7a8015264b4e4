//! Promotion, once the replacement passed its checks: the dying instance's Elastic IP and
//! target-group registrations move to it, the ledger records the roles (the replacement PRIMARY,
//! the interrupted instance ZOMBIE until its audit period ends) and the failover, and an instance
//! that still runs (a rebalance recommendation) is retired only now.

use chrono::Utc;
use serde_json::json;
use spot_aws::{LedgerTable, Reach};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::saga::failover::{
    self, FailoverInput, FailoverRecord, FailoverStatus, Promoted, RoleRecord, WARNING_NOTICE,
};
use spot_domain::saga::{SagaMode, StepError};
use spot_domain::{ErrorName, metrics};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
        })
    }
}

pub struct Promoter {
    pub reach: Reach,
    pub ledger: LedgerTable,
}

impl Promoter {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Failover, "failover-promote").await;
        Ok(Self {
            ledger: LedgerTable::new(crate::dynamodb(&ctx), config.ledger_table),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "failover-promote", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: FailoverInput) -> Result<Promoted, StepError> {
        let state = &input.state;
        let request = &state.request;
        let launch = state.launch("promote")?;
        let replacement = state.replacement("promote")?;
        if launch.mode != SagaMode::Live || !state.health.as_ref().is_some_and(|h| h.is_ok()) {
            return Err(StepError::new(
                ErrorName::InvalidRequest,
                "promotion comes after a live launch whose checks passed",
            ));
        }
        let failover_id = &input.execution;
        let dying = &launch.dying;
        let account = self
            .reach
            .account(&request.account_id, &request.region, failover_id)
            .await?;
        let now = Utc::now();

        let address_moved = match &dying.elastic_ip {
            Some(ip) => {
                account
                    .ec2
                    .move_address(&ip.allocation_id, &replacement.instance_id)
                    .await?;
                true
            }
            None => false,
        };
        let target_groups = account.elb.groups_of(&dying.instance_id).await?;
        account
            .elb
            .register(&target_groups, &replacement.instance_id)
            .await?;
        let retired_old = request.retires_the_old();
        if retired_old {
            // It still ran: only now, with its replacement serving, does it go.
            account.ec2.terminate(&dying.instance_id).await?;
        }

        let terminated_at = if retired_old {
            now
        } else {
            request.received_at + WARNING_NOTICE
        };
        let workload = &launch.workload;
        self.ledger
            .record(&RoleRecord::primary(
                request,
                workload,
                &replacement.instance_id,
                failover_id,
                now,
            ))
            .await?;
        self.ledger
            .record(&RoleRecord::zombie(
                request,
                workload,
                failover_id,
                terminated_at,
                now,
            ))
            .await?;
        let seconds_to_healthy = (now - request.received_at).num_seconds().max(0);
        let downtime = failover::downtime_seconds(request, now);
        self.ledger
            .record(&FailoverRecord {
                switch_id: failover_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                workload: Some(workload.id().to_owned()),
                old_instance_id: dying.instance_id.clone(),
                new_instance_id: Some(replacement.instance_id.clone()),
                market: Some(replacement.market),
                pool: replacement.pool.clone(),
                instance_type: Some(replacement.instance_type.clone()),
                fallbacks: replacement.fallbacks.clone(),
                on_demand_until: launch.hold.as_ref().map(|h| h.until),
                mode: SagaMode::Live,
                status: FailoverStatus::Promoted,
                signal: request.signal.detail_type().to_owned(),
                received_at: request.received_at,
                seconds_to_healthy: Some(seconds_to_healthy),
                downtime_seconds: Some(downtime),
                error: None,
                cause: None,
                at: now,
            })
            .await?;
        println!(
            "{}",
            metrics::count(
                "FailoverCompleted",
                1,
                &[("Market", &replacement.market.to_string())],
                &[
                    ("failover", json!(failover_id)),
                    ("old_instance_id", json!(dying.instance_id)),
                    ("new_instance_id", json!(replacement.instance_id)),
                    ("seconds_to_healthy", json!(seconds_to_healthy)),
                    ("downtime_seconds", json!(downtime)),
                ],
                now,
            )
        );
        info!(
            new_instance_id = %replacement.instance_id,
            market = %replacement.market,
            address_moved,
            target_groups = target_groups.len(),
            seconds_to_healthy,
            "promoted"
        );
        Ok(Promoted {
            address_moved,
            target_groups,
            seconds_to_healthy,
            retired_old,
        })
    }
}
