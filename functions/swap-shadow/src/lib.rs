//! Shadow mode: record what swapping each member would have saved; touch nothing.

use serde::Serialize;
use spot_domain::Clock;
use spot_domain::asg::{self, SwapInput};
use spot_domain::ports::SwitchLedger;
use spot_domain::saga::{StepError, SwitchRecord, SwitchStatus};
use tracing::info;

#[derive(Debug, Serialize)]
pub struct Recorded {
    pub members: usize,
    pub saving_per_hour: f64,
}

pub struct Shadow<L, C> {
    pub ledger: L,
    pub clock: C,
}

impl<L: SwitchLedger, C: Clock> Shadow<L, C> {
    pub async fn handle(&self, input: SwapInput) -> Result<Recorded, StepError> {
        let request = &input.state.request;
        let plan =
            input.state.plan.as_ref().ok_or_else(|| {
                StepError::new("InvalidRequest", "the shadow step needs the plan")
            })?;
        let now = self.clock.now();
        for m in &plan.members {
            let best = m.candidates.first();
            self.ledger
                .record(&SwitchRecord {
                    switch_id: asg::record_id(&input.execution, &m.instance_id),
                    account_id: request.account_id.clone(),
                    region: request.region.clone(),
                    source_instance_id: m.instance_id.clone(),
                    mode: request.mode,
                    status: SwitchStatus::Shadow,
                    new_instance_id: None,
                    pool: best.map(|b| b.pool.clone()),
                    instance_type: best.map(|b| b.instance_type.clone()),
                    on_demand_price: Some(m.on_demand_price),
                    spot_price: best.map(|b| b.spot_price),
                    saving_per_hour: Some(m.saving_per_hour()),
                    risk: Some(plan.risk),
                    cause: None,
                    at: now,
                    group: Some(request.asg_name.clone()),
                })
                .await?;
        }
        info!(swap_id = %input.execution, group = %request.asg_name, saving_per_hour = plan.saving_per_hour, "shadow swap recorded");
        Ok(Recorded {
            members: plan.members.len(),
            saving_per_hour: plan.saving_per_hour,
        })
    }
}
