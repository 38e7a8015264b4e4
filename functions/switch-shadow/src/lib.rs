//! Shadow mode: record what the switch would have done and saved; touch nothing.

use serde::Serialize;
use spot_domain::Clock;
use spot_domain::ports::SwitchLedger;
use spot_domain::saga::{StepError, StepInput, SwitchRecord, SwitchStatus};
use tracing::info;

#[derive(Debug, Serialize)]
pub struct Recorded {
    pub status: SwitchStatus,
    pub saving_per_hour: f64,
}

pub struct Shadow<L, C> {
    pub ledger: L,
    pub clock: C,
}

impl<L: SwitchLedger, C: Clock> Shadow<L, C> {
    pub async fn handle(&self, input: StepInput) -> Result<Recorded, StepError> {
        let request = &input.state.request;
        let plan =
            input.state.plan.as_ref().ok_or_else(|| {
                StepError::new("InvalidRequest", "the shadow step needs the plan")
            })?;
        let best = plan.candidates.first();
        self.ledger
            .record(&SwitchRecord {
                switch_id: input.execution.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: request.instance_id.clone(),
                mode: request.mode,
                status: SwitchStatus::Shadow,
                new_instance_id: None,
                pool: best.map(|b| b.pool.clone()),
                instance_type: best.map(|b| b.instance_type.clone()),
                on_demand_price: Some(plan.on_demand_price),
                spot_price: best.map(|b| b.spot_price),
                saving_per_hour: Some(plan.saving_per_hour),
                risk: Some(plan.risk),
                cause: None,
                at: self.clock.now(),
                group: None,
            })
            .await?;
        info!(switch_id = %input.execution, saving_per_hour = plan.saving_per_hour, "shadow switch recorded");
        Ok(Recorded {
            status: SwitchStatus::Shadow,
            saving_per_hour: plan.saving_per_hour,
        })
    }
}
