//! Launches the Spot clone from the image, in the best pool of the plan that the gatekeeper still
//! allows. A pool without capacity is held briefly in the shared quarantine (so other launches skip
//! it too) and the next candidate is tried. A retried step finds its clone by tag.

use spot_aws::{Ec2, Guardian, QuarantineTable, Reach};
use spot_domain::config::{Accounts, ConfigError, Env, Guardrails};
use spot_domain::instance::{LaunchSpec, Launched};
use spot_domain::market::{self, Candidate};
use spot_domain::pool::gatekeeper::{self, Gate};
use spot_domain::saga::StepError;
use spot_domain::saga::launch::{first_open_pool, no_launch_error};
use spot_domain::saga::switch::{LaunchStep, SwitchInput};
use spot_domain::tags::{self, SWITCH_TAG, VIA_SWITCH};
use spot_domain::{Clock, ErrorName, PoolKey, QuarantinePolicy, SystemClock};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub quarantine_table: String,
    /// `capacity`: how long a pool without capacity is passed over (`CAPACITY_HOLD_SECONDS`).
    pub policy: QuarantinePolicy,
    pub guardrails: Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            quarantine_table: env.required(spot_domain::config::key::QUARANTINE_TABLE)?,
            policy: QuarantinePolicy::for_launches(env)?,
            guardrails: Guardrails::from_env(env)?,
        })
    }
}

pub struct Launcher {
    pub reach: Reach,
    pub quarantine: QuarantineTable,
    pub guard: Guardian,
    pub config: Config,
}

/// An idempotency token per switch and pool.
pub fn client_token(switch_id: &str, candidate: usize) -> String {
    spot_domain::saga::step::client_token(switch_id, &[&candidate.to_string()])
}

impl Launcher {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Switch, "switch-launch").await;
        Ok(Self {
            quarantine: QuarantineTable::new(crate::dynamodb(&ctx), &config.quarantine_table),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "switch-launch", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "switch-launch", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: SwitchInput) -> Result<LaunchStep, StepError> {
        let plan = input.state.plan("launch")?;
        let image = input.state.image("launch")?;
        let switch_id = &input.execution;
        let request = &input.state.request;
        self.guard.check(&request.account_id).await?;
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;

        let tokens: Vec<String> = (0..plan.candidates.len())
            .map(|index| client_token(switch_id, index))
            .collect();
        if let Some(clone) = ec2.clone_of(switch_id, &tokens).await? {
            let candidate = plan
                .candidates
                .iter()
                .find(|c| c.instance_type == clone.instance_type && c.az_name == clone.az_name)
                .ok_or_else(|| {
                    StepError::new(
                        ErrorName::InvalidData,
                        format!(
                            "clone {} ({} in {}) matches no planned pool",
                            clone.instance_id, clone.instance_type, clone.az_name
                        ),
                    )
                })?;
            info!(instance_id = %clone.instance_id, "clone already launched");
            return Ok(step(clone.instance_id, candidate, Vec::new()));
        }

        let source = &plan.source;
        // Read here, not carried: user data often holds secrets, and a saga's state stays in the
        // execution history.
        let user_data = ec2.user_data(&source.instance_id).await?;
        let tags = tags::launched(
            tags::inherited(&source.tags),
            VIA_SWITCH,
            &source.instance_id,
            SWITCH_TAG,
            switch_id,
        );
        let chosen = first_open_pool(
            &plan.candidates,
            |c| self.quarantined(&c.pool),
            |index, c| {
                let spec = LaunchSpec::with_posture_of(
                    source,
                    &image.image_id,
                    &c.instance_type,
                    &c.subnet_id,
                    user_data.clone(),
                    tags.clone(),
                    client_token(switch_id, index),
                );
                self.launch(&ec2, spec, c, &input)
            },
        )
        .await?;
        match chosen {
            Ok(taken) => {
                let candidate = &plan.candidates[taken.index];
                info!(instance_id = %taken.instance_id, pool = %candidate.pool, "clone launched");
                Ok(step(taken.instance_id, candidate, taken.skipped))
            }
            Err(skipped) => Err(StepError::new(
                no_launch_error(&skipped),
                format!(
                    "no candidate pool could launch the clone ({})",
                    market::explain(&skipped, usize::MAX)
                ),
            )),
        }
    }

    /// The gatekeeper's answer for `pool` now: why it is quarantined, if it is.
    async fn quarantined(&self, pool: &PoolKey) -> Result<Option<String>, spot_domain::AwsError> {
        Ok(
            match gatekeeper::check(&self.quarantine, pool, SystemClock.now()).await? {
                Gate::Quarantined(record) => Some(format!(
                    "quarantined since planning ({})",
                    record.reason.detail_type()
                )),
                Gate::Open => None,
            },
        )
    }

    /// One launch attempt; a pool without capacity is held for every launch path.
    async fn launch(
        &self,
        ec2: &Ec2,
        spec: LaunchSpec,
        candidate: &Candidate,
        input: &SwitchInput,
    ) -> Result<Launched, spot_domain::AwsError> {
        let launched = ec2.launch_clone(&spec).await?;
        if let Launched::NoCapacity(why) = &launched {
            warn!(pool = %candidate.pool, reason = %why, "no capacity");
            self.hold(&candidate.pool, input, why).await;
        }
        Ok(launched)
    }

    /// Marks `pool` as short of capacity for a while. Best effort: the switch goes on to the next
    /// pool whatever happens here.
    async fn hold(&self, pool: &PoolKey, input: &SwitchInput, why: &str) {
        let request = &input.state.request;
        let held = gatekeeper::hold_capacity(
            &self.quarantine,
            pool,
            format!("capacity:{}:{pool}", input.execution),
            (&request.account_id, &request.region, &request.instance_id),
            &self.config.policy,
            SystemClock.now(),
        )
        .await;
        match held {
            Ok(true) => info!(pool = %pool, reason = why, "capacity hold recorded"),
            Ok(false) => {}
            Err(e) => warn!(pool = %pool, error = %e, "capacity hold not recorded"),
        }
    }
}

fn step(
    instance_id: String,
    candidate: &Candidate,
    skipped: Vec<spot_domain::market::Exclusion>,
) -> LaunchStep {
    LaunchStep {
        instance_id,
        pool: candidate.pool.clone(),
        instance_type: candidate.instance_type.clone(),
        az_name: candidate.az_name.clone(),
        spot_price: candidate.spot_price,
        saving_per_hour: candidate.saving_per_hour,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_ec2s_limit_and_differ_per_pool() {
        assert_eq!(client_token(&"x".repeat(100), 9).len(), 64);
        assert_ne!(client_token("sw-1", 1), client_token("sw-1", 2));
    }
}
