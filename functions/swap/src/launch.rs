//! Launches the next batch's Spot replacements from the group's own launch template or
//! configuration, in the member's AZ, in the best pool of its plan that the gatekeeper still
//! allows. A pool without capacity is held briefly in the shared quarantine and the next is tried;
//! a member no pool can take stays on-demand, with the reason. A retried step finds its
//! replacements by tag.

use spot_aws::autoscaling::LaunchConfiguration;
use spot_aws::{Ec2, QuarantineTable, Reach};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::instance::{GroupLaunchSpec, Launched};
use spot_domain::market::{self, Candidate, Exclusion, ExclusionReason};
use spot_domain::pool::gatekeeper::{self, Gate};
use spot_domain::saga::StepError;
use spot_domain::saga::launch::{first_open_pool, no_launch_error};
use spot_domain::saga::swap::{
    self, BatchLaunch, LaunchSource, MemberPlan, Replacement, SwapInput,
};
use spot_domain::tags::{self, SWAP_TAG, Tags, VIA_SWAP};
use spot_domain::{AwsError, Clock, ErrorName, PoolKey, QuarantinePolicy, SystemClock};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub quarantine_table: String,
    /// `capacity`: how long a pool without capacity is passed over (`CAPACITY_HOLD_SECONDS`).
    pub policy: QuarantinePolicy,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            policy: QuarantinePolicy::for_launches(env)?,
        })
    }
}

pub struct Launcher {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub quarantine: QuarantineTable,
    pub config: Config,
}

/// The replacement's tags: its predecessor's own (read now, not carried in the state, where a
/// large group's tags would not fit), then the optimizer's.
pub fn replacement_tags(member: &MemberPlan, own: &Tags, swap_id: &str) -> Vec<(String, String)> {
    tags::launched(
        tags::inherited(own),
        VIA_SWAP,
        &member.instance_id,
        SWAP_TAG,
        swap_id,
    )
}

fn replacement(member: &MemberPlan, new: String, c: &Candidate) -> Replacement {
    Replacement {
        old: member.instance_id.clone(),
        new,
        pool: c.pool.clone(),
        instance_type: c.instance_type.clone(),
        spot_price: c.spot_price,
        saving_per_hour: c.saving_per_hour,
        on_demand_price: member.on_demand_price,
    }
}

impl Launcher {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-launch").await;
        Ok(Self {
            quarantine: QuarantineTable::new(crate::dynamodb(&ctx), &config.quarantine_table),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-launch", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "swap-launch", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<BatchLaunch, StepError> {
        let request = &input.state.request;
        let plan = input.state.plan("launch")?;
        let discovered = input.state.discovery("launch")?;
        let swap_id = &input.execution;
        let first = input.state.cursor.as_ref().map_or(0, |c| c.next);
        self.guard.check(&request.account_id).await?;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let group = crate::group_now(&account, &request.asg_name).await?;
        let source = group.launch.clone().ok_or_else(|| {
            StepError::not_eligible("the group lost its launch template or configuration")
        })?;
        let configuration = match &source {
            LaunchSource::Configuration { name } => {
                Some(account.autoscaling.launch_configuration(name).await?)
            }
            LaunchSource::Template { .. } => None,
        };

        let mut replacements = Vec::new();
        let mut not_replaced = Vec::new();
        let mut short_of_capacity = false;
        let mut next = first;
        while replacements.len() < discovered.batch_size && next < plan.members.len() {
            let member = &plan.members[next];
            next += 1;
            if !group
                .member(&member.instance_id)
                .is_some_and(|m| m.in_service())
            {
                not_replaced.push(Exclusion::new(
                    &member.instance_id,
                    ExclusionReason::LeftGroup,
                    "left the group or is not InService any more",
                ));
                continue;
            }
            let tokens: Vec<String> = (0..member.candidates.len())
                .map(|index| swap::client_token(swap_id, &member.instance_id, index))
                .collect();
            if let Some(existing) = account
                .ec2
                .replacement_of(swap_id, &member.instance_id, &tokens)
                .await?
            {
                let c = member
                    .candidates
                    .iter()
                    .find(|c| {
                        c.instance_type == existing.instance_type && c.az_name == existing.az_name
                    })
                    .ok_or_else(|| {
                        StepError::new(
                            ErrorName::InvalidData,
                            format!("{} matches no planned pool", existing.instance_id),
                        )
                    })?;
                info!(old = %member.instance_id, new = %existing.instance_id, "replacement already launched");
                replacements.push(replacement(member, existing.instance_id, c));
                continue;
            }
            let own = account.ec2.tags(&member.instance_id).await?;
            let tags = replacement_tags(member, &own, swap_id);
            let chosen = first_open_pool(
                &member.candidates,
                |c| self.quarantined(&c.pool),
                |index, c| {
                    let spec = GroupLaunchSpec {
                        source: source.clone(),
                        instance_type: c.instance_type.clone(),
                        subnet_id: c.subnet_id.clone(),
                        tags: tags.clone(),
                        client_token: swap::client_token(swap_id, &member.instance_id, index),
                    };
                    self.launch(
                        &account.ec2,
                        spec,
                        configuration.as_ref(),
                        c,
                        &input,
                        member,
                    )
                },
            )
            .await?;
            match chosen {
                Ok(taken) => {
                    let c = &member.candidates[taken.index];
                    info!(old = %member.instance_id, new = %taken.instance_id, pool = %c.pool, "replacement launched");
                    replacements.push(replacement(member, taken.instance_id, c));
                }
                Err(skipped) => {
                    short_of_capacity = true;
                    let reason = match no_launch_error(&skipped) {
                        ErrorName::InsufficientCapacity => ExclusionReason::NoCapacity,
                        _ => ExclusionReason::LaunchRefused,
                    };
                    not_replaced.push(Exclusion::new(
                        &member.instance_id,
                        reason,
                        format!(
                            "no pool could launch its replacement ({})",
                            market::explain(&skipped, usize::MAX)
                        ),
                    ));
                }
            }
        }
        if replacements.is_empty() && short_of_capacity {
            return Err(StepError::new(
                no_launch_error(&not_replaced),
                market::explain(&not_replaced, usize::MAX),
            ));
        }
        Ok(BatchLaunch {
            first,
            replacements,
            not_replaced,
            next,
        })
    }

    /// The gatekeeper's answer for `pool` now: why it is quarantined, if it is.
    async fn quarantined(&self, pool: &PoolKey) -> Result<Option<String>, AwsError> {
        Ok(
            match gatekeeper::check(&self.quarantine, pool, SystemClock.now()).await? {
                Gate::Quarantined(record) => {
                    Some(format!("quarantined ({})", record.reason.detail_type()))
                }
                Gate::Open => None,
            },
        )
    }

    /// One launch attempt; a pool without capacity is held for every launch path (best effort).
    async fn launch(
        &self,
        ec2: &Ec2,
        spec: GroupLaunchSpec,
        configuration: Option<&LaunchConfiguration>,
        c: &Candidate,
        input: &SwapInput,
        member: &MemberPlan,
    ) -> Result<Launched, AwsError> {
        let launched = ec2.launch_replacement(&spec, configuration, true).await?;
        if let Launched::NoCapacity(why) = &launched {
            warn!(pool = %c.pool, reason = %why, "no capacity");
            let request = &input.state.request;
            let held = gatekeeper::hold_capacity(
                &self.quarantine,
                &c.pool,
                format!("capacity:{}:{}", input.execution, c.pool),
                (&request.account_id, &request.region, &member.instance_id),
                &self.config.policy,
                SystemClock.now(),
            )
            .await;
            if let Err(e) = held {
                warn!(pool = %c.pool, error = %e, "capacity hold not recorded");
            }
        }
        Ok(launched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spot_domain::tags::SOURCE_TAG;

    #[test]
    fn a_replacement_carries_its_predecessors_tags_and_ours() {
        let member = MemberPlan {
            instance_id: "i-0old".into(),
            instance_type: "m5.large".into(),
            az_name: "us-east-1a".into(),
            on_demand_price: 0.096,
            candidates: vec![],
            exclusions: vec![],
        };
        let own = Tags::from([("Name".to_owned(), "web".to_owned())]);
        let tags = replacement_tags(&member, &own, "swap-1");
        assert!(tags.contains(&("Name".into(), "web".into())));
        assert!(tags.contains(&("CreatedVia".into(), "AsgSwap".into())));
        assert!(tags.contains(&(SOURCE_TAG.into(), "i-0old".into())));
        assert!(tags.contains(&(SWAP_TAG.into(), "swap-1".into())));
        let token = swap::client_token(&"x".repeat(100), "i-0123456789abcdef0", 9);
        assert!(token.len() <= 64, "{token}");
    }
}
