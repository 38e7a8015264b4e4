//! The batch's replaced members leave: phase `detach` detaches them with decrement (in service
//! N+k → N) and deregisters them from the group's target groups (connection draining starts);
//! phase `check` reports when they are out of the group and of every target group; phase
//! `terminate` terminates them, records each swap and moves the cursor on.
//!
//! An old member is never detached nor terminated unless its replacement is InService in the
//! group: this step checks it again before acting.

use serde::Serialize;
use serde_json::json;
use spot_domain::asg::{self, BatchLaunch, Cursor, Group, Progress, SWAP_TAG, SwapInput};
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, AuditEntry, AuditLog, GroupFleet, GroupFleets, SwitchFleet, SwitchFleets,
    SwitchLedger,
};
use spot_domain::saga::{self, Reach, StepError, SwitchRecord, SwitchStatus, errors};
use spot_domain::{Clock, metrics};
use tracing::info;

/// Target-group states of an instance that is gone from it.
const OUT: [&str; 2] = ["unused", "unavailable"];

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Progress(Progress),
    Cursor(Cursor),
}

pub struct Detacher<R, F, L, A, C> {
    pub reach: Reach<R, F>,
    pub ledger: L,
    pub audit: A,
    pub clock: C,
}

/// The invariant, checked before every destructive action: each replacement is InService.
fn replacements_in_service(group: &Group, launch: &BatchLaunch) -> Result<(), StepError> {
    match launch
        .replacements
        .iter()
        .find(|r| !group.member(&r.new).is_some_and(|m| m.in_service()))
    {
        Some(r) => Err(StepError::new(
            errors::ATTACH_FAILED,
            format!("{} is not InService: {} stays", r.new, r.old),
        )),
        None => Ok(()),
    }
}

impl<R, F, L, A, C> Detacher<R, F, L, A, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    L: SwitchLedger,
    A: AuditLog,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<Outcome, StepError> {
        let request = &input.state.request;
        let missing = |what: &str| {
            StepError::new(
                "InvalidRequest",
                format!("the detach step needs the {what}"),
            )
        };
        let launch = input
            .state
            .launch
            .as_ref()
            .ok_or_else(|| missing("batch"))?;
        let plan = input.state.plan.as_ref().ok_or_else(|| missing("plan"))?;
        let reach = self.reach.group(request).await?;
        let group = reach
            .groups
            .group(&request.asg_name)
            .await?
            .ok_or_else(|| {
                StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!("group {} no longer exists", request.asg_name),
                )
            })?;
        match input.phase.as_deref() {
            Some("detach") => {
                replacements_in_service(&group, launch)?;
                let olds: Vec<String> = launch
                    .replacements
                    .iter()
                    .filter(|r| group.member(&r.old).is_some())
                    .map(|r| r.old.clone())
                    .collect();
                if !olds.is_empty() {
                    let entry = self.entry(&input, "detach_replaced", &olds.join(","), &group);
                    saga::audited(&self.audit, &entry, async {
                        // The mark is what lets this step terminate it later (IAM condition).
                        for old in &olds {
                            reach.ec2.tag(old, SWAP_TAG, &input.execution).await?;
                        }
                        reach.groups.detach(&request.asg_name, &olds).await
                    })
                    .await?;
                    info!(swap_id = %input.execution, group = %request.asg_name, detached = ?olds, "detached");
                }
                // Auto Scaling deregisters detached instances; asking too makes draining start
                // whatever the group's attachment does (and is a no-op when already done).
                for r in &launch.replacements {
                    reach
                        .groups
                        .deregister(&group.target_groups, &r.old)
                        .await?;
                }
                Ok(Outcome::Progress(Progress {
                    status: "pending".into(),
                    checks: 0,
                }))
            }
            Some("check") => {
                let limit = input
                    .state
                    .discover
                    .as_ref()
                    .map_or(1, |d| d.settings.health_checks);
                let checks = input.state.detach.as_ref().map_or(0, |p| p.checks) + 1;
                let mut waiting = Vec::new();
                for r in &launch.replacements {
                    if let Some(m) = group.member(&r.old) {
                        waiting.push(format!(
                            "{} is still {} in the group",
                            r.old, m.lifecycle_state
                        ));
                    }
                    for (tg, state) in reach
                        .groups
                        .target_states(&group.target_groups, &r.old)
                        .await?
                    {
                        if !OUT.contains(&state.as_str()) {
                            waiting.push(format!("{} is {state} in {tg}", r.old));
                        }
                    }
                }
                if waiting.is_empty() {
                    return Ok(Outcome::Progress(Progress {
                        status: "ok".into(),
                        checks,
                    }));
                }
                if checks >= limit {
                    return Err(StepError::new(
                        errors::DETACH_FAILED,
                        format!("after {checks} checks: {}", waiting.join("; ")),
                    ));
                }
                Ok(Outcome::Progress(Progress {
                    status: "pending".into(),
                    checks,
                }))
            }
            Some("terminate") => {
                replacements_in_service(&group, launch)?;
                let now = self.clock.now();
                for r in &launch.replacements {
                    let entry = self.entry(&input, "terminate_replaced", &r.old, &group);
                    saga::audited(&self.audit, &entry, reach.ec2.terminate(&r.old)).await?;
                    self.ledger
                        .record(&SwitchRecord {
                            switch_id: asg::record_id(&input.execution, &r.old),
                            account_id: request.account_id.clone(),
                            region: request.region.clone(),
                            source_instance_id: r.old.clone(),
                            mode: request.mode,
                            status: SwitchStatus::Switched,
                            new_instance_id: Some(r.new.clone()),
                            pool: Some(r.pool.clone()),
                            instance_type: Some(r.instance_type.clone()),
                            on_demand_price: Some(r.on_demand_price),
                            spot_price: Some(r.spot_price),
                            saving_per_hour: Some(r.saving_per_hour),
                            risk: Some(plan.risk),
                            cause: None,
                            at: now,
                            group: Some(request.asg_name.clone()),
                        })
                        .await?;
                    println!(
                        "{}",
                        metrics::count(
                            "SwitchCompleted",
                            1,
                            &[("Saga", "AsgSwap")],
                            &[
                                ("swap_id", json!(input.execution)),
                                ("group", json!(request.asg_name)),
                                ("pool", json!(r.pool)),
                                ("saving_per_hour", json!(r.saving_per_hour)),
                            ],
                            now,
                        )
                    );
                    info!(swap_id = %input.execution, old = %r.old, new = %r.new, "member swapped");
                }
                let mut swapped = input.state.swapped().to_vec();
                swapped.extend(
                    launch
                        .replacements
                        .iter()
                        .map(|r| (r.old.clone(), r.new.clone())),
                );
                Ok(Outcome::Cursor(Cursor {
                    next: launch.next,
                    done: launch.next >= plan.members.len(),
                    swapped,
                }))
            }
            other => Err(StepError::new(
                "InvalidRequest",
                format!("phase {other:?} is neither detach, check nor terminate"),
            )),
        }
    }

    fn entry(&self, input: &SwapInput, action: &str, resource: &str, group: &Group) -> AuditEntry {
        let request = &input.state.request;
        AuditEntry {
            action_id: format!("swap-detach#{}#{action}#{resource}", input.execution),
            function: "swap-detach".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "replaced by Spot in group {} (swap {})",
                group.name, input.execution
            ),
            pre_state: json!({"desired": group.desired, "in_service": group.in_service(),
                "replacements": input.state.launch.as_ref().map(|l| &l.replacements)})
            .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: self.clock.now(),
        }
    }
}
