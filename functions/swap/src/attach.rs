//! Attaches the batch's healthy replacements to the group (in service N → N+k; Auto Scaling raises
//! the desired capacity by as many), phase `attach`; then reports, phase `check`, whether every one
//! is InService and Healthy in the group and `healthy` in each of its target groups.

use spot_aws::{AccountClients, Reach};
use spot_domain::config::{Accounts, ConfigError, Env};
use spot_domain::saga::swap::{self, BatchLaunch, Group, SwapInput};
use spot_domain::saga::{Phase, Progress, StepError};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
        })
    }
}

pub struct Attacher {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
}

/// Every (instance, target group, state) of `instances` in the group's target groups.
pub(crate) async fn target_states(
    account: &AccountClients,
    group: &Group,
    instances: impl Iterator<Item = &String>,
) -> Result<Vec<(String, String, String)>, StepError> {
    let mut states = Vec::new();
    for instance in instances {
        for (tg, state) in account
            .elb
            .target_states(&group.target_groups, instance)
            .await?
        {
            states.push((instance.clone(), tg, state));
        }
    }
    Ok(states)
}

impl Attacher {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-attach").await;
        Ok(Self {
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-attach", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-attach", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name, phase = ?input.phase))]
    pub async fn handle(&self, input: SwapInput) -> Result<Progress, StepError> {
        let request = &input.state.request;
        let launch: &BatchLaunch = input.state.batch("attach")?;
        if !input.state.health.as_ref().is_some_and(Progress::is_ok)
            && !launch.replacements.is_empty()
        {
            // Only a replacement that passed its status checks joins the group.
            return Err(StepError::invalid(
                "the batch has not passed its status checks",
            ));
        }
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let group = crate::group_now(&account, &request.asg_name).await?;
        match input.phase {
            Some(Phase::Attach) => {
                self.guard.check(&request.account_id).await?;
                let ids: Vec<String> = launch
                    .replacements
                    .iter()
                    .filter(|r| group.member(&r.new).is_none())
                    .map(|r| r.new.clone())
                    .collect();
                if !ids.is_empty() {
                    account.autoscaling.attach(&request.asg_name, &ids).await?;
                    info!(attached = ?ids, "attached");
                }
                Ok(Progress::pending(0))
            }
            Some(Phase::Check) => {
                let limit = input.state.discovery("attach")?.settings.health_checks;
                let checks = input.state.attach.as_ref().map_or(0, |p| p.checks) + 1;
                let states =
                    target_states(&account, &group, launch.replacements.iter().map(|r| &r.new))
                        .await?;
                swap::attach_progress(&group, launch, &states, checks, limit)
            }
            other => Err(StepError::invalid(format!(
                "phase {other:?} is neither attach nor check"
            ))),
        }
    }
}
