//! Compensation, after any failure: terminate the clone, move the Elastic IP back, restart the
//! source if the saga stopped it, remove the image and its snapshots (unless kept), and record why.
//! Every action is idempotent; the state machine retries this step and then fails the execution.

use serde::Serialize;
use serde_json::json;
use spot_domain::Clock;
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, Approvals, AuditEntry, AuditLog, SwitchFleet, SwitchFleets, SwitchLedger,
};
use spot_domain::saga::{
    self, CaughtError, Reach, StepError, StepInput, SwitchRecord, SwitchStatus, errors,
};
use spot_domain::switch::SWITCH_TAG;
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
    /// A pending approval of a rejected or timed-out switch is closed, so no list shows it.
    pub approvals: P,
    pub clock: C,
    /// Keep the saga's image and snapshots (for forensics) instead of deleting them.
    pub keep_image: bool,
}

pub use spot_domain::saga::rollback_outcome as classify;

impl<R, F, L, A, P, C> Rollback<R, F, L, A, P, C>
where
    R: AccountRegistry,
    F: SwitchFleets,
    L: SwitchLedger,
    A: AuditLog,
    P: Approvals,
    C: Clock,
{
    pub async fn handle(&self, input: StepInput) -> Result<RolledBack, StepError> {
        let error = input.state.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (status, name) = classify(&error);
        let request = &input.state.request;
        let switch_id = &input.execution;
        let mut undone = Vec::new();
        match self.reach.fleet(request).await {
            Ok((fleet, _)) => self.undo(&fleet, &input, &mut undone).await?,
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
            // `false`: an operator already answered it (spotctl marks the answer first).
            self.approvals
                .answer(switch_id, outcome, "switch-rollback", note)
                .await?;
        }
        let plan = input.state.plan.as_ref();
        let launch = input.state.launch.as_ref();
        self.ledger
            .record(&SwitchRecord {
                switch_id: switch_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: request.instance_id.clone(),
                mode: request.mode,
                status,
                new_instance_id: launch.map(|l| l.instance_id.clone()),
                pool: launch
                    .map(|l| l.pool.clone())
                    .or_else(|| plan.and_then(|p| p.candidates.first().map(|c| c.pool.clone()))),
                instance_type: launch.map(|l| l.instance_type.clone()),
                on_demand_price: plan.map(|p| p.on_demand_price),
                spot_price: launch.map(|l| l.spot_price),
                saving_per_hour: None,
                risk: plan.map(|p| p.risk),
                cause: Some(format!("{}: {}", error.error, error.cause)),
                at: self.clock.now(),
                group: None,
            })
            .await?;
        self.ledger
            .unlock(&saga::lock_key(request), switch_id)
            .await?;
        info!(switch_id = %switch_id, error = %error.error, undone = ?undone, "rolled back");
        Ok(RolledBack {
            error: name,
            cause: error.cause,
            status,
            undone,
        })
    }

    async fn undo(
        &self,
        fleet: &F::Fleet,
        input: &StepInput,
        undone: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let switch_id = &input.execution;
        let request = &input.state.request;
        let source = &request.instance_id;

        // 1. The clone: the launch step's, or one a crashed launch left behind (found by tag).
        let clone = match &input.state.launch {
            Some(l) => Some(l.instance_id.clone()),
            None => fleet.clone_of(switch_id).await?.map(|c| c.instance_id),
        };
        if let Some(clone) = &clone {
            self.audited(
                input,
                "terminate_clone",
                clone,
                "the switch failed",
                fleet.terminate(clone),
            )
            .await?;
            undone.push(format!("terminated clone {clone}"));
        }

        // 2. The Elastic IP goes back to the source.
        if let Some(ip) = input
            .state
            .plan
            .as_ref()
            .and_then(|p| p.source.elastic_ip.as_ref())
        {
            let holder = fleet.address_holder(&ip.allocation_id).await?;
            if holder.as_deref() != Some(source.as_str()) {
                fleet.move_address(&ip.allocation_id, source).await?;
                undone.push(format!("moved {} back to {source}", ip.public_ip));
            }
        }

        // 3. The source runs again if the saga stopped it (the cut-over marks it first), and loses
        // the mark, so no later step of any switch mistakes it for one it stopped.
        if fleet.tags(source).await?.get(SWITCH_TAG) == Some(switch_id) {
            match fleet.state(source).await?.as_deref() {
                Some("stopped") => {
                    self.audited(
                        input,
                        "start_source",
                        source,
                        "the switch failed after stopping it",
                        fleet.start(source),
                    )
                    .await?;
                    undone.push(format!("started {source} again"));
                }
                // Retried by the state machine until the stop has finished.
                Some("stopping") => {
                    return Err(StepError::new(
                        errors::TRANSIENT,
                        format!("{source} is still stopping"),
                    ));
                }
                _ => {}
            }
            fleet.untag(source, SWITCH_TAG).await?;
        }

        // 4. The image and its snapshots.
        let image = match &input.state.image {
            Some(i) => Some(i.image_id.clone()),
            None => fleet.find_image(switch_id).await?,
        };
        if let Some(image) = image {
            if self.keep_image {
                undone.push(format!("kept image {image} (KEEP_IMAGE)"));
            } else {
                let mut snapshots = input
                    .state
                    .image
                    .as_ref()
                    .map(|i| i.snapshot_ids.clone())
                    .unwrap_or_default();
                if let Some((_, more)) = fleet.image_state(&image).await? {
                    snapshots.extend(more);
                }
                snapshots.sort();
                snapshots.dedup();
                self.audited(
                    input,
                    "remove_image",
                    &image,
                    "image made by a failed switch",
                    fleet.remove_image(&image, &snapshots),
                )
                .await?;
                undone.push(format!(
                    "removed image {image} and {} snapshot(s)",
                    snapshots.len()
                ));
            }
        }
        Ok(())
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        input: &StepInput,
        action: &str,
        resource: &str,
        reason: &str,
        act: impl std::future::Future<Output = Result<(), spot_domain::AwsError>>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let entry = AuditEntry {
            action_id: format!("switch-rollback#{}#{action}#{resource}", input.execution),
            function: "switch-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "{reason}: {}",
                input.state.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": input.state.launch, "image": input.state.image})
                .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: self.clock.now(),
        };
        spot_domain::saga::audited(&self.audit, &entry, act).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caught(error: &str) -> CaughtError {
        CaughtError {
            error: error.into(),
            cause: String::new(),
        }
    }

    #[test]
    fn failures_are_named_without_reserved_prefixes() {
        assert_eq!(
            classify(&caught("States.Timeout")),
            (SwitchStatus::Rejected, "ApprovalRejected".into())
        );
        assert_eq!(
            classify(&caught("ApprovalRejected")).0,
            SwitchStatus::Rejected
        );
        assert_eq!(
            classify(&caught("NotEligible")).0,
            SwitchStatus::NotEligible
        );
        assert_eq!(
            classify(&caught("HealthCheckFailed")),
            (SwitchStatus::RolledBack, "HealthCheckFailed".into())
        );
        assert_eq!(classify(&caught("States.TaskFailed")).1, "SwitchFailed");
    }
}
