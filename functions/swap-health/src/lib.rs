//! Reports the batch's replacements' 2/2 status checks; the state machine waits between checks.
//! Any replacement impaired, gone, or not ok after the allowed checks: `HealthCheckFailed`.

use spot_domain::asg::SwapInput;
use spot_domain::ports::{AccountRegistry, GroupFleets, SwitchFleet, SwitchFleets};
use spot_domain::saga::{HealthStep, HealthVerdict, Reach, StepError, errors, health_verdict};

pub struct Checker<R, F> {
    pub reach: Reach<R, F>,
}

impl<R: AccountRegistry, F: SwitchFleets + GroupFleets> Checker<R, F> {
    pub async fn handle(&self, input: SwapInput) -> Result<HealthStep, StepError> {
        let launch = input
            .state
            .launch
            .as_ref()
            .ok_or_else(|| StepError::new("InvalidRequest", "no batch to check"))?;
        let limit = input
            .state
            .discover
            .as_ref()
            .map_or(1, |d| d.settings.health_checks);
        let checks = match &input.state.health {
            Some(h) if h.batch == Some(launch.first) => h.checks + 1,
            _ => 1,
        };
        let reach = self.reach.group(&input.state.request).await?;
        let mut all_ok = true;
        for r in &launch.replacements {
            let health = reach.ec2.health(&r.new).await?;
            match health_verdict(&r.new, health.as_ref(), checks, limit) {
                HealthVerdict::Ok => {}
                HealthVerdict::Pending => all_ok = false,
                HealthVerdict::Failed(why) => {
                    return Err(StepError::new(errors::HEALTH_CHECK_FAILED, why));
                }
            }
        }
        Ok(HealthStep {
            status: if all_ok { "ok" } else { "pending" }.into(),
            checks,
            batch: Some(launch.first),
        })
    }
}
