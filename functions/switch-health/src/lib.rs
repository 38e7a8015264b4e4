//! Reports the clone's 2/2 status checks; the state machine waits between checks. Impaired, gone,
//! or still not ok after the allowed checks: `HealthCheckFailed`.

use spot_domain::ports::{AccountRegistry, SwitchFleet, SwitchFleets};
use spot_domain::saga::{
    HealthStep, HealthVerdict, Reach, StepError, StepInput, errors, health_verdict,
};

pub struct Checker<R, F> {
    pub reach: Reach<R, F>,
}

impl<R: AccountRegistry, F: SwitchFleets> Checker<R, F> {
    pub async fn handle(&self, input: StepInput) -> Result<HealthStep, StepError> {
        let launch = input
            .state
            .launch
            .as_ref()
            .ok_or_else(|| StepError::new("InvalidRequest", "no clone to check"))?;
        let limit = input
            .state
            .plan
            .as_ref()
            .map_or(1, |p| p.settings.health_checks);
        let checks = input.state.health.as_ref().map_or(0, |h| h.checks) + 1;
        let (fleet, _) = self.reach.fleet(&input.state.request).await?;
        let health = fleet.health(&launch.instance_id).await?;
        let status = match health_verdict(&launch.instance_id, health.as_ref(), checks, limit) {
            HealthVerdict::Ok => "ok",
            HealthVerdict::Pending => "pending",
            HealthVerdict::Failed(why) => {
                return Err(StepError::new(errors::HEALTH_CHECK_FAILED, why));
            }
        };
        Ok(HealthStep {
            status: status.into(),
            checks,
            batch: None,
        })
    }
}
