//! Keeps the dying instance's data: its EBS volumes outlive its termination
//! (`DeleteOnTermination=false`) and are tagged with where they came from and when, so they are
//! listed by `spotctl failovers volumes` and the waste scanner leaves them for their retention.

use chrono::Utc;
use spot_aws::Reach;
use spot_aws::ec2::Kept;
use spot_domain::config::{Accounts, ConfigError, Env};
use spot_domain::saga::StepError;
use spot_domain::saga::failover::{FailoverInput, Preserved};
use tracing::{info, instrument, warn};

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

pub struct Keeper {
    pub reach: Reach,
}

impl Keeper {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        Ok(Self {
            reach: Reach::connect(
                crate::aws(spot_domain::Capability::Failover, "failover-preserve").await,
                &config.accounts,
            )
            .await?,
        })
    }

    #[instrument(name = "failover-preserve", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: FailoverInput) -> Result<Preserved, StepError> {
        let request = &input.state.request;
        let dying = &input.state.launch("preserve")?.dying;
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;
        match ec2
            .keep_volumes(&dying.instance_id, &dying.volumes, Utc::now())
            .await?
        {
            Kept::Volumes(volumes) => {
                info!(volumes = volumes.len(), "volumes kept");
                Ok(Preserved {
                    volumes,
                    note: None,
                })
            }
            Kept::InstanceGone => {
                warn!("the instance is gone; what it deleted on termination is gone too");
                Ok(Preserved {
                    volumes: Vec::new(),
                    note: Some(format!(
                        "{} was already gone: volumes deleted on termination could not be kept",
                        dying.instance_id
                    )),
                })
            }
        }
    }
}
