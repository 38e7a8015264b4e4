//! Launches the next batch's Spot replacements from the group's own launch template or
//! configuration, in the member's AZ, in the best pool of its plan that the gatekeeper still
//! allows. A pool without capacity is held briefly in the shared quarantine and the next is tried;
//! a member no pool can take stays on-demand, with the reason. A retried step finds its
//! replacements by tag.

use spot_domain::Clock;
use spot_domain::asg::{
    self, BatchLaunch, CREATED_VIA, MemberPlan, Replacement, SWAP_TAG, SwapInput,
};
use spot_domain::gatekeeper::{self, Gate};
use spot_domain::ports::{
    AccountRegistry, GroupFleet, GroupFleets, GroupLaunchSpec, Launched, QuarantineStore,
    SwitchFleets,
};
use spot_domain::quarantine::QuarantinePolicy;
use spot_domain::saga::{Reach, StepError, errors};
use spot_domain::switch::{Candidate, Exclusion, MANAGED_BY, SOURCE_TAG};
use tracing::{info, warn};

pub struct Launcher<R, F, Q, C> {
    pub reach: Reach<R, F>,
    pub quarantine: Q,
    pub clock: C,
    /// `capacity`: how long a pool without capacity is passed over.
    pub policy: QuarantinePolicy,
}

/// The replacement's tags: its predecessor's own, then the optimizer's.
pub fn replacement_tags(member: &MemberPlan, swap_id: &str) -> Vec<(String, String)> {
    let mut tags = member.tags.clone();
    tags.extend([
        (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
        (CREATED_VIA.0.into(), CREATED_VIA.1.into()),
        (SOURCE_TAG.into(), member.instance_id.clone()),
        (SWAP_TAG.into(), swap_id.into()),
    ]);
    tags
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

impl<R, F, Q, C> Launcher<R, F, Q, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    Q: QuarantineStore,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<BatchLaunch, StepError> {
        let missing = |what: &str| {
            StepError::new(
                "InvalidRequest",
                format!("the launch step needs the {what}"),
            )
        };
        let request = &input.state.request;
        let plan = input.state.plan.as_ref().ok_or_else(|| missing("plan"))?;
        let discovered = input
            .state
            .discover
            .as_ref()
            .ok_or_else(|| missing("discovery"))?;
        let swap_id = &input.execution;
        let first = input.state.cursor.as_ref().map_or(0, |c| c.next);
        let reach = self.reach.group(request).await?;
        let group = reach
            .groups
            .group(&request.asg_name)
            .await?
            .ok_or_else(|| {
                StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!("group {} no longer exists", request.asg_name),
                )
            })?;
        let source = group.launch.clone().ok_or_else(|| {
            StepError::new(
                errors::NOT_ELIGIBLE,
                "the group lost its launch template or configuration",
            )
        })?;

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
                not_replaced.push(Exclusion {
                    what: member.instance_id.clone(),
                    reason: "left the group or is not InService any more".into(),
                });
                continue;
            }
            if let Some(existing) = reach
                .groups
                .replacement_of(swap_id, &member.instance_id)
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
                            "InvalidData",
                            format!("{} matches no planned pool", existing.instance_id),
                        )
                    })?;
                info!(swap_id = %swap_id, old = %member.instance_id, new = %existing.instance_id, "replacement already launched");
                replacements.push(replacement(member, existing.instance_id, c));
                continue;
            }
            let mut tried = Vec::new();
            for (index, c) in member.candidates.iter().enumerate() {
                let now = self.clock.now();
                if let Gate::Quarantined(record) =
                    gatekeeper::check(&self.quarantine, &c.pool, now).await?
                {
                    tried.push(format!(
                        "{}: quarantined ({})",
                        c.pool,
                        record.reason.detail_type()
                    ));
                    continue;
                }
                let spec = GroupLaunchSpec {
                    source: source.clone(),
                    instance_type: c.instance_type.clone(),
                    subnet_id: c.subnet_id.clone(),
                    tags: replacement_tags(member, swap_id),
                    client_token: asg::client_token(swap_id, &member.instance_id, index),
                };
                match reach.groups.launch(&spec).await? {
                    Launched::Instance(id) => {
                        info!(swap_id = %swap_id, old = %member.instance_id, new = %id, pool = %c.pool, "replacement launched");
                        replacements.push(replacement(member, id, c));
                        tried.clear();
                        break;
                    }
                    Launched::NoCapacity(why) => {
                        warn!(swap_id = %swap_id, pool = %c.pool, reason = %why, "no capacity");
                        let held = gatekeeper::hold_capacity(
                            &self.quarantine,
                            &c.pool,
                            format!("capacity:{swap_id}:{}", c.pool),
                            (&request.account_id, &request.region, &member.instance_id),
                            &self.policy,
                            now,
                        )
                        .await;
                        if let Err(e) = held {
                            warn!(pool = %c.pool, error = %e, "capacity hold not recorded");
                        }
                        tried.push(format!("{}: {why}", c.pool));
                    }
                }
            }
            if !tried.is_empty() {
                short_of_capacity = true;
                not_replaced.push(Exclusion {
                    what: member.instance_id.clone(),
                    reason: format!(
                        "no pool could launch its replacement ({})",
                        tried.join("; ")
                    ),
                });
            }
        }
        if replacements.is_empty() && short_of_capacity {
            let why: Vec<String> = not_replaced
                .iter()
                .map(|e| format!("{}: {}", e.what, e.reason))
                .collect();
            return Err(StepError::new(
                errors::INSUFFICIENT_CAPACITY,
                why.join("; "),
            ));
        }
        Ok(BatchLaunch {
            first,
            replacements,
            not_replaced,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_carries_its_predecessors_tags_and_ours() {
        let member = MemberPlan {
            instance_id: "i-0old".into(),
            instance_type: "m5.large".into(),
            az_name: "us-east-1a".into(),
            on_demand_price: 0.096,
            candidates: vec![],
            exclusions: vec![],
            tags: vec![("Name".into(), "web".into())],
        };
        let tags = replacement_tags(&member, "swap-1");
        assert!(tags.contains(&("Name".into(), "web".into())));
        assert!(tags.contains(&("CreatedVia".into(), "AsgSwap".into())));
        assert!(tags.contains(&(SOURCE_TAG.into(), "i-0old".into())));
        assert!(tags.contains(&(SWAP_TAG.into(), "swap-1".into())));
        let token = asg::client_token(&"x".repeat(100), "i-0123456789abcdef0", 9);
        assert!(token.len() <= 64, "{token}");
    }
}
