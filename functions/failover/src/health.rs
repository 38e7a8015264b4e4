//! Reports the replacement's 2/2 status checks; the state machine waits between checks. Impaired,
//! gone, or still not ok after the allowed checks: `HealthCheckFailed`.

use spot_aws::Reach;
use spot_domain::ErrorName;
use spot_domain::config::{Accounts, ConfigError, Env};
use spot_domain::saga::failover::FailoverInput;
use spot_domain::saga::step::{HealthVerdict, health_verdict};
use spot_domain::saga::{Progress, StepError};
use tracing::instrument;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
        })
    }
}

pub struct Checker {
    pub reach: Reach,
}

impl Checker {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        Ok(Self {
            reach: Reach::connect(
                crate::aws(spot_domain::Capability::Read, "failover-health").await,
                &config.accounts,
            )
            .await?,
        })
    }

    #[instrument(name = "failover-health", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: FailoverInput) -> Result<Progress, StepError> {
        let request = &input.state.request;
        let launch = input.state.launch("health")?;
        let replacement = input.state.replacement("health")?;
        let limit = launch.settings.health_checks;
        let checks = input.state.health.as_ref().map_or(0, |h| h.checks) + 1;
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;
        let health = ec2.health(&replacement.instance_id).await?;
        match health_verdict(&replacement.instance_id, health.as_ref(), checks, limit) {
            HealthVerdict::Ok => Ok(Progress::ok(checks)),
            HealthVerdict::Pending => Ok(Progress::pending(checks)),
            HealthVerdict::Failed(why) => Err(StepError::new(ErrorName::HealthCheckFailed, why)),
        }
    }
}
