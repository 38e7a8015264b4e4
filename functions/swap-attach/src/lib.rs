//! Attaches the batch's healthy replacements to the group (in service N → N+k; Auto Scaling raises
//! the desired capacity by as many), phase `attach`; then reports, phase `check`, whether every one
//! is InService and Healthy in the group and `healthy` in each of its target groups.

use spot_domain::asg::{Progress, SwapInput};
use spot_domain::ports::{AccountRegistry, GroupFleet, GroupFleets, SwitchFleets};
use spot_domain::saga::{Reach, StepError, errors};
use tracing::info;

pub struct Attacher<R, F> {
    pub reach: Reach<R, F>,
}

impl<R: AccountRegistry, F: SwitchFleets + GroupFleets> Attacher<R, F> {
    pub async fn handle(&self, input: SwapInput) -> Result<Progress, StepError> {
        let request = &input.state.request;
        let launch = input
            .state
            .launch
            .as_ref()
            .ok_or_else(|| StepError::new("InvalidRequest", "no batch to attach"))?;
        if input.state.health.as_ref().map(|h| h.status.as_str()) != Some("ok")
            && !launch.replacements.is_empty()
        {
            // Only a replacement that passed its status checks joins the group.
            return Err(StepError::new(
                "InvalidRequest",
                "the batch has not passed its status checks",
            ));
        }
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
            Some("attach") => {
                let ids: Vec<String> = launch
                    .replacements
                    .iter()
                    .filter(|r| group.member(&r.new).is_none())
                    .map(|r| r.new.clone())
                    .collect();
                if !ids.is_empty() {
                    reach.groups.attach(&request.asg_name, &ids).await?;
                    info!(swap_id = %input.execution, group = %request.asg_name, attached = ?ids, "attached");
                }
                Ok(Progress {
                    status: "pending".into(),
                    checks: 0,
                })
            }
            Some("check") => {
                let limit = input
                    .state
                    .discover
                    .as_ref()
                    .map_or(1, |d| d.settings.health_checks);
                let checks = input.state.attach.as_ref().map_or(0, |p| p.checks) + 1;
                let mut waiting = Vec::new();
                for r in &launch.replacements {
                    match group.member(&r.new) {
                        Some(m) if m.in_service() => {}
                        Some(m) => waiting.push(format!(
                            "{} is {} / {}",
                            r.new, m.lifecycle_state, m.health_status
                        )),
                        None => waiting.push(format!("{} is not in the group", r.new)),
                    }
                    for (tg, state) in reach
                        .groups
                        .target_states(&group.target_groups, &r.new)
                        .await?
                    {
                        if state != "healthy" {
                            waiting.push(format!("{} is {state} in {tg}", r.new));
                        }
                    }
                }
                if waiting.is_empty() {
                    return Ok(Progress {
                        status: "ok".into(),
                        checks,
                    });
                }
                if checks >= limit {
                    return Err(StepError::new(
                        errors::ATTACH_FAILED,
                        format!("after {checks} checks: {}", waiting.join("; ")),
                    ));
                }
                Ok(Progress {
                    status: "pending".into(),
                    checks,
                })
            }
            other => Err(StepError::new(
                "InvalidRequest",
                format!("phase {other:?} is neither attach nor check"),
            )),
        }
    }
}
