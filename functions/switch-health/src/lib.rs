//! Reports the clone's 2/2 status checks; the state machine waits between checks. Impaired, gone,
//! or still not ok after the allowed checks: `HealthCheckFailed`.

use spot_domain::ports::{AccountRegistry, SwitchFleet, SwitchFleets};
use spot_domain::saga::{HealthStep, Reach, StepError, StepInput, errors};

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
        let failed = |why: String| {
            StepError::new(
                errors::HEALTH_CHECK_FAILED,
                format!("{}: {why}", launch.instance_id),
            )
        };
        let Some(health) = fleet.health(&launch.instance_id).await? else {
            return Err(failed("the instance no longer exists".into()));
        };
        if matches!(
            health.state.as_str(),
            "shutting-down" | "terminated" | "stopping" | "stopped"
        ) {
            return Err(failed(format!("the instance is {}", health.state)));
        }
        if health.system == "impaired" || health.instance == "impaired" {
            return Err(failed(format!(
                "status checks impaired (system {}, instance {})",
                health.system, health.instance
            )));
        }
        if health.state == "running" && health.system == "ok" && health.instance == "ok" {
            return Ok(HealthStep {
                status: "ok".into(),
                checks,
            });
        }
        if checks >= limit {
            return Err(failed(format!(
                "checks not passed after {checks} tries (system {}, instance {})",
                health.system, health.instance
            )));
        }
        Ok(HealthStep {
            status: "pending".into(),
            checks,
        })
    }
}
