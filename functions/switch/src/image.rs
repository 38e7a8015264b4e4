//! Images the source (phase `create`), then reports the image's state (phase `check`) until it is
//! available; the state machine waits between checks.

use spot_aws::{Guardian, Reach};
use spot_domain::AwsErrorKind;
use spot_domain::ErrorName;
use spot_domain::config::{Accounts, ConfigError, Env, Guardrails, key};
use spot_domain::saga::switch::{self, ImageState, ImageStep, SwitchInput};
use spot_domain::saga::{Phase, StepError};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    /// Skip the reboot: faster, but the disk may not be consistent.
    pub no_reboot: bool,
    pub guardrails: Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            no_reboot: env.parsed(key::NO_REBOOT, false)?,
            guardrails: Guardrails::from_env(env)?,
        })
    }
}

pub struct Imager {
    pub reach: Reach,
    pub guard: Guardian,
    pub config: Config,
}

impl Imager {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Switch, "switch-image").await;
        Ok(Self {
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "switch-image", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "switch-image", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id, phase = ?input.phase))]
    pub async fn handle(&self, input: SwitchInput) -> Result<ImageStep, StepError> {
        let request = &input.state.request;
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;
        match input.phase {
            Some(Phase::Create) => {
                self.guard.check(&request.account_id).await?;
                let image_id = ec2
                    .image(
                        &input.execution,
                        &request.instance_id,
                        self.config.no_reboot,
                    )
                    .await
                    .map_err(|e| match e.kind {
                        // EC2 refused to image the source (state, limits...): the switch stops.
                        AwsErrorKind::Rejected => {
                            StepError::new(ErrorName::ImageFailed, e.to_string())
                        }
                        _ => e.into(),
                    })?;
                info!(image_id = %image_id, "image requested");
                Ok(ImageStep {
                    image_id,
                    state: ImageState::Pending,
                    checks: 0,
                    snapshot_ids: Vec::new(),
                })
            }
            Some(Phase::Check) => {
                let previous = input.state.image("image check")?;
                let limit = input.state.plan("image check")?.settings.image_checks;
                let found = ec2.image_state(&previous.image_id).await?;
                let checks = previous.checks + 1;
                let state = switch::image_verdict(
                    &previous.image_id,
                    found.as_ref().map(|(state, _)| state.as_str()),
                    checks,
                    limit,
                )?;
                Ok(ImageStep {
                    state,
                    checks,
                    snapshot_ids: found.map(|(_, snapshots)| snapshots).unwrap_or_default(),
                    image_id: previous.image_id.clone(),
                })
            }
            other => Err(StepError::invalid(format!(
                "phase {other:?} is neither create nor check"
            ))),
        }
    }
}
