//! Before the first replacement: suspend `AZRebalance` (it could terminate a member mid-swap) and,
//! if the group is at its MaxSize, raise it by the batch size so attaching fits. What it changed is
//! decided from the discovery's snapshot, so a retried step records the same thing and the restore
//! (or the rollback) puts back exactly what the owner had.

use serde_json::json;
use spot_aws::{AuditTable, Reach};
use spot_domain::audit::{AuditEntry, AuditLog};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::saga::StepError;
use spot_domain::saga::swap::{AZ_REBALANCE, Prepared, SwapInput};
use spot_domain::tags::{RESTORE_TAG, SWAP_TAG};
use spot_domain::{Clock, SystemClock};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub audit_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
        })
    }
}

pub struct Preparer {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub audit: AuditTable,
}

impl Preparer {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-prepare").await;
        Ok(Self {
            audit: AuditTable::new(crate::dynamodb(&ctx), config.audit_table),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-prepare", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-prepare", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<Prepared, StepError> {
        let request = &input.state.request;
        let discovered = input.state.discovery("prepare")?;
        let before = &discovered.group;
        let prepared = Prepared::of(before, discovered.batch_size);
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        self.guard.check(&request.account_id).await?;
        let now_group = crate::group_now(&account, &request.asg_name).await?;
        let entry = AuditEntry {
            action_id: format!("swap-prepare#{}", input.execution),
            function: "swap-prepare".into(),
            action: "prepare_group".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: format!("asg/{}", request.asg_name),
            reason: format!(
                "swap {}: suspend {AZ_REBALANCE}, MaxSize {:?}",
                input.execution, prepared.raised_max
            ),
            pre_state: json!({"max_size": before.max_size, "desired": before.desired,
                "suspended": before.suspended})
            .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: SystemClock.now(),
        };
        self.audit.begin(&entry).await?;
        // The mark first, with what is about to change: whatever happens next, the rollback finds
        // on the group itself what to put back, and nothing on a group without it.
        account
            .autoscaling
            .tag_group(
                &request.asg_name,
                &[
                    (SWAP_TAG, input.execution.as_str()),
                    (RESTORE_TAG, prepared.to_tag().as_str()),
                ],
            )
            .await?;
        if prepared.suspended_by_swap && !now_group.suspended.iter().any(|p| p == AZ_REBALANCE) {
            account
                .autoscaling
                .suspend(&request.asg_name, AZ_REBALANCE)
                .await?;
        }
        if let Some(max) = prepared.raised_max
            && now_group.max_size < max
        {
            account
                .autoscaling
                .set_max_size(&request.asg_name, max)
                .await?;
        }
        self.audit.finish(&entry.action_id, "done").await?;
        info!(raised_max = ?prepared.raised_max, "group prepared");
        Ok(prepared)
    }
}
