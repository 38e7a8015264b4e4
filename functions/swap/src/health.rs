//! Reports the batch's replacements' 2/2 status checks; the state machine waits between checks.
//! Any replacement impaired, gone, or not ok after the allowed checks: `HealthCheckFailed`.

use spot_aws::Reach;
use spot_domain::ErrorName;
use spot_domain::config::{Accounts, ConfigError, Env};
use spot_domain::saga::step::{HealthVerdict, health_verdict};
use spot_domain::saga::swap::SwapInput;
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
                crate::aws(spot_domain::Capability::Read, "swap-health").await,
                &config.accounts,
            )
            .await?,
        })
    }

    #[instrument(name = "swap-health", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<Progress, StepError> {
        let request = &input.state.request;
        let launch = input.state.batch("health")?;
        let limit = input.state.discovery("health")?.settings.health_checks;
        let checks = match &input.state.health {
            Some(h) if h.batch == Some(launch.first) => h.checks + 1,
            _ => 1,
        };
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;
        let mut all_ok = true;
        for r in &launch.replacements {
            let health = ec2.health(&r.new).await?;
            match health_verdict(&r.new, health.as_ref(), checks, limit) {
                HealthVerdict::Ok => {}
                HealthVerdict::Pending => all_ok = false,
                HealthVerdict::Failed(why) => {
                    return Err(StepError::new(ErrorName::HealthCheckFailed, why));
                }
            }
        }
        let progress = if all_ok {
            Progress::ok(checks)
        } else {
            Progress::pending(checks)
        };
        Ok(Progress {
            batch: Some(launch.first),
            ..progress
        })
    }
}
