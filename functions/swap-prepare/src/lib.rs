//! Before the first replacement: suspend `AZRebalance` (it could terminate a member mid-swap) and,
//! if the group is at its MaxSize, raise it by the batch size so attaching fits. What it changed is
//! decided from the discovery's snapshot, so a retried step records the same thing and the restore
//! (or the rollback) puts back exactly what the owner had.

use serde_json::json;
use spot_domain::Clock;
use spot_domain::asg::{self, AZ_REBALANCE, Prepared, SwapInput};
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, AuditEntry, AuditLog, GroupFleet, GroupFleets, SwitchFleets,
};
use spot_domain::saga::{Reach, StepError, errors};
use tracing::info;

pub struct Preparer<R, F, A, C> {
    pub reach: Reach<R, F>,
    pub audit: A,
    pub clock: C,
}

impl<R, F, A, C> Preparer<R, F, A, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    A: AuditLog,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<Prepared, StepError> {
        let request = &input.state.request;
        let discovered = input.state.discover.as_ref().ok_or_else(|| {
            StepError::new("InvalidRequest", "the prepare step needs the discovery")
        })?;
        let before = &discovered.group;
        let prepared = Prepared {
            original_max: before.max_size,
            raised_max: asg::raised_max(before, discovered.batch_size),
            suspended_by_swap: !before.suspended.iter().any(|p| p == AZ_REBALANCE),
        };
        let reach = self.reach.group(request).await?;
        let now_group = reach
            .groups
            .group(&request.asg_name)
            .await?
            .ok_or_else(|| {
                StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!("group {} no longer exists", request.asg_name),
                )
            })?;
        let entry = AuditEntry {
            action_id: format!("swap-prepare#{}", input.execution),
            function: "swap-prepare".into(),
            action: "prepare_group".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: format!("asg/{}", request.asg_name),
            reason: format!("swap {}: suspend {AZ_REBALANCE}, MaxSize {:?}", input.execution, prepared.raised_max),
            pre_state: json!({"max_size": before.max_size, "desired": before.desired, "suspended": before.suspended}).to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: self.clock.now(),
        };
        self.audit.begin(&entry).await?;
        if prepared.suspended_by_swap && !now_group.suspended.iter().any(|p| p == AZ_REBALANCE) {
            reach
                .groups
                .suspend(&request.asg_name, AZ_REBALANCE)
                .await?;
        }
        if let Some(max) = prepared.raised_max
            && now_group.max_size < max
        {
            reach.groups.set_max_size(&request.asg_name, max).await?;
        }
        self.audit.finish(&entry.action_id, "done").await?;
        info!(swap_id = %input.execution, group = %request.asg_name, raised_max = ?prepared.raised_max, "group prepared");
        Ok(prepared)
    }
}
