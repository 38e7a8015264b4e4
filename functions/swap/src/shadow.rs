//! Shadow mode: record what swapping each member would have saved; touch nothing.

use serde::Serialize;
use spot_aws::LedgerTable;
use spot_domain::config::{ConfigError, Env, key};
use spot_domain::saga::StepError;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::swap::{self, SwapInput};
use spot_domain::{Clock, SystemClock};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub ledger_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger_table: env.required(key::LEDGER_TABLE)?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Recorded {
    pub members: usize,
    pub saving_per_hour: f64,
}

pub struct Shadow {
    pub ledger: LedgerTable,
}

impl Shadow {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Read, "swap-shadow").await;
        Ok(Self {
            ledger: LedgerTable::new(crate::dynamodb(&ctx), config.ledger_table),
        })
    }

    #[instrument(name = "swap-shadow", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<Recorded, StepError> {
        let request = &input.state.request;
        let plan = input.state.plan("shadow")?;
        let now = SystemClock.now();
        for m in &plan.members {
            let best = m.candidates.first();
            self.ledger
                .record(&LedgerRecord {
                    switch_id: swap::record_id(&input.execution, &m.instance_id),
                    account_id: request.account_id.clone(),
                    region: request.region.clone(),
                    source_instance_id: m.instance_id.clone(),
                    mode: request.mode,
                    status: LedgerStatus::Shadow,
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
                    downtime_ms: None,
                })
                .await?;
        }
        info!(
            saving_per_hour = plan.saving_per_hour,
            "shadow swap recorded"
        );
        Ok(Recorded {
            members: plan.members.len(),
            saving_per_hour: plan.saving_per_hour,
        })
    }
}
