//! Compensation of the ASG swap, after any failure. It decides from what it sees in the group (a
//! crashed step may have left more, or less, than the state says), member by member of the plan:
//!
//! | replacement | predecessor | what the rollback does |
//! |---|---|---|
//! | not in the group | (any) | terminates the replacement |
//! | in the group | still in the group | detaches the replacement with decrement (N+1 → N), terminates it |
//! | InService | already left | that member's swap is done: terminates the leftover predecessor |
//! | not InService | already left | attaches the predecessor back, then removes the replacement |
//!
//! Then MaxSize and `AZRebalance` go back as the owner had them, a pending approval is closed, the
//! group's lock is released, and the failure is recorded. The predecessor is never terminated
//! unless its replacement is InService. Every action is idempotent; the state machine retries this
//! step and then fails the execution.

use serde::Serialize;
use serde_json::json;
use spot_domain::Clock;
use spot_domain::asg::{self, Group, SwapInput};
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, Approvals, AuditEntry, AuditLog, GroupFleet, GroupFleets, SwitchFleet,
    SwitchFleets, SwitchLedger,
};
use spot_domain::saga::{
    CaughtError, GroupReach, Reach, StepError, SwitchRecord, SwitchStatus, errors, rollback_outcome,
};
use tracing::info;

#[derive(Debug, Serialize)]
pub struct RolledBack {
    /// The failure, as the execution's error (never a reserved `States.` name).
    pub error: String,
    pub cause: String,
    pub status: SwitchStatus,
    pub undone: Vec<String>,
}

pub struct Rollback<R, F, L, A, P, C> {
    pub reach: Reach<R, F>,
    pub ledger: L,
    pub audit: A,
    pub approvals: P,
    pub clock: C,
}

impl<R, F, L, A, P, C> Rollback<R, F, L, A, P, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    L: SwitchLedger,
    A: AuditLog,
    P: Approvals,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<RolledBack, StepError> {
        let error = input.state.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (status, name) = rollback_outcome(&error);
        let request = &input.state.request;
        let mut undone = Vec::new();
        match self.reach.group(request).await {
            Ok(reach) => self.undo(&reach, &input, &mut undone).await?,
            // A request that could not reach its account changed nothing there.
            Err(e)
                if matches!(
                    e.name,
                    "InvalidRequest" | errors::NOT_ELIGIBLE | "AccountMisconfigured"
                ) => {}
            Err(e) => return Err(e),
        }
        if status == SwitchStatus::Rejected {
            let (outcome, note) = if error.error == "States.Timeout" {
                ("EXPIRED", "no answer before the approval timeout")
            } else {
                ("REJECTED", error.cause.as_str())
            };
            self.approvals
                .answer(&input.execution, outcome, "swap-rollback", note)
                .await?;
        }
        self.ledger
            .unlock(&asg::lock_key(request), &input.execution)
            .await?;
        info!(swap_id = %input.execution, group = %request.asg_name, error = %error.error, undone = ?undone, "swap rolled back");
        Ok(RolledBack {
            error: name,
            cause: error.cause,
            status,
            undone,
        })
    }

    async fn undo<S: SwitchFleet, G: GroupFleet>(
        &self,
        reach: &GroupReach<S, G>,
        input: &SwapInput,
        undone: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let (Some(discovered), Some(plan)) = (&input.state.discover, &input.state.plan) else {
            // Nothing was changed before the plan (discovery only reads and locks).
            return Ok(());
        };
        let name = &request.asg_name;
        // Every replacement this swap launched, wherever the saga stopped.
        let mut pairs = Vec::new();
        for m in &plan.members {
            if let Some(new) = reach
                .groups
                .replacement_of(&input.execution, &m.instance_id)
                .await?
            {
                pairs.push((m.instance_id.clone(), new.instance_id));
            }
        }
        for (old, new) in &pairs {
            let group = reach.groups.group(name).await?;
            let member = |id: &str| group.as_ref().and_then(|g: &Group| g.member(id).cloned());
            match (member(new), member(old)) {
                (None, _) => {
                    self.audited(
                        input,
                        "terminate_replacement",
                        new,
                        reach.ec2.terminate(new),
                    )
                    .await?;
                    undone.push(format!("terminated {new} (never in the group)"));
                    self.record(input, old, Some(new), SwitchStatus::RolledBack)
                        .await?;
                }
                (Some(_), Some(_)) => {
                    let targets = group
                        .as_ref()
                        .map(|g| g.target_groups.clone())
                        .unwrap_or_default();
                    self.audited(input, "detach_replacement", new, async {
                        reach.groups.detach(name, std::slice::from_ref(new)).await?;
                        reach.groups.deregister(&targets, new).await
                    })
                    .await?;
                    self.audited(
                        input,
                        "terminate_replacement",
                        new,
                        reach.ec2.terminate(new),
                    )
                    .await?;
                    undone.push(format!(
                        "detached {new} with decrement and terminated it; {old} stays"
                    ));
                    self.record(input, old, Some(new), SwitchStatus::RolledBack)
                        .await?;
                }
                (Some(n), None) if n.in_service() => {
                    // The predecessor left and its replacement serves: that member's swap is done.
                    self.audited(input, "terminate_replaced", old, reach.ec2.terminate(old))
                        .await?;
                    undone.push(format!(
                        "kept {new} in service; terminated the detached {old}"
                    ));
                    self.record(input, old, Some(new), SwitchStatus::Switched)
                        .await?;
                }
                (Some(_), None) => {
                    let running = reach.ec2.state(old).await?.as_deref() == Some("running");
                    if running {
                        self.audited(
                            input,
                            "reattach_replaced",
                            old,
                            reach.groups.attach(name, std::slice::from_ref(old)),
                        )
                        .await?;
                        undone.push(format!("attached {old} back"));
                    }
                    self.audited(
                        input,
                        "detach_replacement",
                        new,
                        reach.groups.detach(name, std::slice::from_ref(new)),
                    )
                    .await?;
                    self.audited(
                        input,
                        "terminate_replacement",
                        new,
                        reach.ec2.terminate(new),
                    )
                    .await?;
                    undone.push(format!(
                        "detached and terminated {new}, which never became InService"
                    ));
                    self.record(input, old, Some(new), SwitchStatus::RolledBack)
                        .await?;
                }
            }
        }
        undone.extend(asg::restore_group(&reach.groups, &discovered.group).await?);
        Ok(())
    }

    async fn record(
        &self,
        input: &SwapInput,
        old: &str,
        new: Option<&String>,
        status: SwitchStatus,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let replacement = input
            .state
            .launch
            .as_ref()
            .and_then(|l| l.replacements.iter().find(|r| r.old == old));
        self.ledger
            .record(&SwitchRecord {
                switch_id: asg::record_id(&input.execution, old),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: old.into(),
                mode: request.mode,
                status,
                new_instance_id: new.cloned(),
                pool: replacement.map(|r| r.pool.clone()),
                instance_type: replacement.map(|r| r.instance_type.clone()),
                on_demand_price: replacement.map(|r| r.on_demand_price),
                spot_price: replacement.map(|r| r.spot_price),
                saving_per_hour: (status == SwitchStatus::Switched)
                    .then(|| replacement.map(|r| r.saving_per_hour))
                    .flatten(),
                risk: input.state.plan.as_ref().map(|p| p.risk),
                cause: input
                    .state
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.error, e.cause)),
                at: self.clock.now(),
                group: Some(request.asg_name.clone()),
            })
            .await?;
        Ok(())
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        input: &SwapInput,
        action: &str,
        resource: &str,
        act: impl std::future::Future<Output = Result<(), spot_domain::AwsError>>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let entry = AuditEntry {
            action_id: format!("swap-rollback#{}#{action}#{resource}", input.execution),
            function: "swap-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "swap of group {} failed: {}",
                request.asg_name,
                input.state.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": input.state.launch, "cursor": input.state.cursor})
                .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: self.clock.now(),
        };
        spot_domain::saga::audited(&self.audit, &entry, act).await
    }
}
