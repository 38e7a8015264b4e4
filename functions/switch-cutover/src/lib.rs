//! Cut-over, once the clone passed its checks: stop the source (marking it, so a rollback knows it
//! stopped it), move its Elastic IP, record the switch in the ledger and the audit trail.

use serde_json::json;
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, AuditBegin, AuditEntry, AuditLog, SwitchFleet, SwitchFleets, SwitchLedger,
};
use spot_domain::saga::{
    self, CutoverStep, Reach, StepError, StepInput, SwitchRecord, SwitchStatus,
};
use spot_domain::switch::SWITCH_TAG;
use spot_domain::{Clock, metrics};
use tracing::info;

pub struct Cutover<R, F, L, A, C> {
    pub reach: Reach<R, F>,
    pub ledger: L,
    pub audit: A,
    pub clock: C,
}

impl<R, F, L, A, C> Cutover<R, F, L, A, C>
where
    R: AccountRegistry,
    F: SwitchFleets,
    L: SwitchLedger,
    A: AuditLog,
    C: Clock,
{
    pub async fn handle(&self, input: StepInput) -> Result<CutoverStep, StepError> {
        let missing =
            |what: &str| StepError::new("InvalidRequest", format!("the cut-over needs the {what}"));
        let plan = input.state.plan.as_ref().ok_or_else(|| missing("plan"))?;
        let launch = input
            .state
            .launch
            .as_ref()
            .ok_or_else(|| missing("launch"))?;
        if input.state.health.as_ref().map(|h| h.status.as_str()) != Some("ok") {
            // The source is never stopped before the clone passed its checks.
            return Err(StepError::new(
                "InvalidRequest",
                "the clone has not passed its status checks",
            ));
        }
        let request = &input.state.request;
        let switch_id = &input.execution;
        let source = &plan.source.instance_id;
        let (fleet, _) = self.reach.fleet(request).await?;
        let entry = AuditEntry {
            action_id: format!("switch-cutover#{switch_id}#stop_source"),
            function: "switch-cutover".into(),
            action: "stop_source".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: source.clone(),
            reason: format!("replaced by Spot clone {} in {}", launch.instance_id, launch.pool),
            pre_state: json!({"source": plan.source.instance_id, "state": plan.source.state, "elastic_ip": plan.source.elastic_ip}).to_string(),
            mode: Mode::Live,
            request_id: switch_id.clone(),
            at: self.clock.now(),
        };
        let begun = self.audit.begin(&entry).await?;
        if begun == AuditBegin::Proceed {
            fleet.tag(source, SWITCH_TAG, switch_id).await?;
            fleet.stop(source).await?;
        }
        let mut moved = false;
        if let Some(ip) = &plan.source.elastic_ip {
            fleet
                .move_address(&ip.allocation_id, &launch.instance_id)
                .await?;
            moved = true;
        }
        let now = self.clock.now();
        self.ledger
            .record(&SwitchRecord {
                switch_id: switch_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: source.clone(),
                mode: request.mode,
                status: SwitchStatus::Switched,
                new_instance_id: Some(launch.instance_id.clone()),
                pool: Some(launch.pool.clone()),
                instance_type: Some(launch.instance_type.clone()),
                on_demand_price: Some(plan.on_demand_price),
                spot_price: Some(launch.spot_price),
                saving_per_hour: Some(launch.saving_per_hour),
                risk: Some(plan.risk),
                cause: None,
                at: now,
                group: None,
            })
            .await?;
        self.audit.finish(&entry.action_id, "done").await?;
        self.ledger
            .unlock(&saga::lock_key(request), switch_id)
            .await?;
        println!(
            "{}",
            metrics::count(
                "SwitchCompleted",
                1,
                &[("Saga", "AtomicSwitch")],
                &[
                    ("switch_id", json!(switch_id)),
                    ("pool", json!(launch.pool)),
                    ("saving_per_hour", json!(launch.saving_per_hour)),
                ],
                now,
            )
        );
        info!(switch_id = %switch_id, source = %source, clone = %launch.instance_id, saving_per_hour = launch.saving_per_hour, "switched");
        Ok(CutoverStep {
            stopped: source.clone(),
            elastic_ip_moved: moved,
        })
    }
}
