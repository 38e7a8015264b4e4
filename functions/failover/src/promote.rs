//! Promotion, once the replacement passed its checks: the dying instance's Elastic IP and
//! target-group registrations move to it (for a group member: the replacement is attached to the
//! group, N → N+1, and the dying member detached with decrement, N+1 → N, so the group's capacity
//! never dips and the group launches nothing to fill a gap; its target groups follow the group),
//! the ledger records the roles (the replacement PRIMARY, the interrupted instance ZOMBIE until its
//! audit period ends) and the failover, and an instance that still runs (a rebalance
//! recommendation) is retired only now. A replica workload's standby, promoted, is tagged as
//! its primary before anything moves to it.

use chrono::Utc;
use serde_json::json;
use spot_aws::sns::announce;
use spot_aws::{AccountClients, LedgerTable, Notifier, Reach};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::failover::{
    self, FailoverInput, FailoverRecord, FailoverStatus, GroupMaxNote, Market, Promoted,
    RoleRecord, WARNING_NOTICE,
};
use spot_domain::saga::{SagaMode, StepError};
use spot_domain::tags::{ROLE_PRIMARY, ROLE_TAG};
use spot_domain::{ErrorName, metrics};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub ledger_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
        })
    }
}

pub struct Promoter {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub ledger: LedgerTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
}

impl Promoter {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Failover, "failover-promote").await;
        Ok(Self {
            ledger: LedgerTable::new(crate::dynamodb(&ctx), config.ledger_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "failover-promote", None),
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

        // A promoted standby says so first: from here it is the workload's primary, which the
        // next failover replaces and the standby step never retires.
        if replacement.market == Market::Standby {
            account
                .ec2
                .tag(&replacement.instance_id, ROLE_TAG, ROLE_PRIMARY)
                .await?;
        }
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
        let target_groups = match launch.workload.group() {
            None => {
                let target_groups = account.elb.groups_of(&dying.instance_id).await?;
                account
                    .elb
                    .register(&target_groups, &replacement.instance_id)
                    .await?;
                target_groups
            }
            Some(group) => {
                self.swap_in(
                    &account,
                    group,
                    &dying.instance_id,
                    &replacement.instance_id,
                    failover_id,
                )
                .await?
            }
        };
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
        self.guard.succeeded(&request.account_id).await?;
        println!(
            "{}",
            metrics::count(
                metrics::name::FAILOVER_COMPLETED,
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
        let mut lines = vec![
            format!(
                "{} ({}, {}) replaces {} after {}",
                replacement.instance_id,
                replacement.instance_type,
                replacement.market,
                dying.instance_id,
                request.signal.detail_type()
            ),
            format!("healthy {seconds_to_healthy} s after the warning; downtime {downtime} s"),
        ];
        lines.extend(
            replacement
                .fallbacks
                .iter()
                .map(|f| format!("fell back to {}: {}", f.to, f.why)),
        );
        announce(
            &self.notices,
            &[Notice::saga(
                Kind::Failover,
                Event::Finished,
                failover_id,
                &request.account_id,
                &request.region,
                &dying.instance_id,
                SagaMode::Live.as_str(),
                &lines,
            )],
        )
        .await;
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

    /// Attaches `new` to `group` (raising its maximum by one if it is full, the original kept in
    /// the ledger first), then detaches `old` with decrement, then puts the maximum back. Each
    /// action checks the group first: a retried step repeats none. Returns the group's target
    /// groups (Auto Scaling registers the replacement in them and drains the detached member).
    async fn swap_in(
        &self,
        account: &AccountClients,
        group: &str,
        old: &str,
        new: &str,
        failover_id: &str,
    ) -> Result<Vec<String>, StepError> {
        let now =
            account.autoscaling.group(group).await?.ok_or_else(|| {
                StepError::not_eligible(format!("group {group} no longer exists"))
            })?;
        if now.member(new).is_none() {
            if let Some(max) = failover::max_for_attach(now.members.len(), now.max_size) {
                let key = GroupMaxNote::key(failover_id);
                if self.ledger.get_as::<GroupMaxNote>(&key).await?.is_none() {
                    self.ledger
                        .record(&GroupMaxNote::new(
                            failover_id,
                            group,
                            now.max_size,
                            Utc::now(),
                        ))
                        .await?;
                }
                account.autoscaling.set_max_size(group, max).await?;
            }
            account.autoscaling.attach(group, &[new.to_owned()]).await?;
            info!(group, new, "replacement attached");
        }
        if now.member(old).is_some() {
            account.autoscaling.detach(group, &[old.to_owned()]).await?;
            info!(group, old, "interrupted member detached with decrement");
        }
        restore_max(account, &self.ledger, group, failover_id).await?;
        Ok(now.target_groups)
    }
}

/// Puts back the maximum size a failover raised on `group`, if it raised it and the group's
/// desired capacity allows it now. Idempotent.
pub(crate) async fn restore_max(
    account: &AccountClients,
    ledger: &LedgerTable,
    group: &str,
    failover_id: &str,
) -> Result<Option<String>, StepError> {
    let Some(note) = ledger
        .get_as::<GroupMaxNote>(&GroupMaxNote::key(failover_id))
        .await?
    else {
        return Ok(None);
    };
    let Some(now) = account.autoscaling.group(group).await? else {
        return Ok(None);
    };
    if now.max_size == note.max_size {
        return Ok(None);
    }
    if now.desired > note.max_size {
        return Ok(Some(format!(
            "group {group} keeps maximum {} (desired {} is above its former {})",
            now.max_size, now.desired, note.max_size
        )));
    }
    account
        .autoscaling
        .set_max_size(group, note.max_size)
        .await?;
    Ok(Some(format!(
        "group {group} maximum put back to {}",
        note.max_size
    )))
}
