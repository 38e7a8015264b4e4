//! Launches the Spot clone from the image, in the best pool of the plan that the gatekeeper still
//! allows. A pool without capacity is held briefly in the shared quarantine (so other launches skip
//! it too) and the next candidate is tried. A retried step finds its clone by tag.

use spot_domain::gatekeeper::{self, Gate};
use spot_domain::ports::{
    AccountRegistry, LaunchSpec, Launched, QuarantineStore, SwitchFleet, SwitchFleets,
};
use spot_domain::quarantine::QuarantinePolicy;
use spot_domain::saga::{LaunchStep, Reach, Skipped, StepError, StepInput, errors};
use spot_domain::switch::{
    CREATED_VIA, Candidate, MANAGED_BY, SOURCE_TAG, SWITCH_TAG, SourceInstance,
};
use spot_domain::{Clock, PoolKey};
use tracing::{info, warn};

pub struct Launcher<R, F, Q, C> {
    pub reach: Reach<R, F>,
    pub quarantine: Q,
    pub clock: C,
    /// `capacity`: how long a pool without capacity is passed over.
    pub policy: QuarantinePolicy,
}

/// The clone's tags: the source's own (not `aws:` ones, not the optimizer's markers), then ours.
pub fn clone_tags(source: &SourceInstance, switch_id: &str) -> Vec<(String, String)> {
    let mut tags = spot_domain::switch::inherited_tags(&source.tags);
    tags.extend([
        (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
        (CREATED_VIA.0.into(), CREATED_VIA.1.into()),
        (SOURCE_TAG.into(), source.instance_id.clone()),
        (SWITCH_TAG.into(), switch_id.into()),
    ]);
    tags
}

/// An idempotency token per switch and pool (EC2 accepts 64 characters).
pub fn client_token(switch_id: &str, candidate: usize) -> String {
    let id: String = switch_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(56)
        .collect();
    format!("{id}-{candidate}")
}

impl<R, F, Q, C> Launcher<R, F, Q, C>
where
    R: AccountRegistry,
    F: SwitchFleets,
    Q: QuarantineStore,
    C: Clock,
{
    pub async fn handle(&self, input: StepInput) -> Result<LaunchStep, StepError> {
        let missing = |what: &str| {
            StepError::new(
                "InvalidRequest",
                format!("the launch step needs the {what}"),
            )
        };
        let plan = input.state.plan.as_ref().ok_or_else(|| missing("plan"))?;
        let image = input.state.image.as_ref().ok_or_else(|| missing("image"))?;
        let switch_id = &input.execution;
        let (fleet, _) = self.reach.fleet(&input.state.request).await?;

        if let Some(clone) = fleet.clone_of(switch_id).await? {
            let candidate = plan
                .candidates
                .iter()
                .find(|c| c.instance_type == clone.instance_type && c.az_name == clone.az_name)
                .ok_or_else(|| {
                    StepError::new(
                        "InvalidData",
                        format!(
                            "clone {} ({} in {}) matches no planned pool",
                            clone.instance_id, clone.instance_type, clone.az_name
                        ),
                    )
                })?;
            info!(switch_id = %switch_id, instance_id = %clone.instance_id, "clone already launched");
            return Ok(step(clone.instance_id, candidate, Vec::new()));
        }

        let mut skipped = Vec::new();
        for (index, candidate) in plan.candidates.iter().enumerate() {
            let now = self.clock.now();
            if let Gate::Quarantined(record) =
                gatekeeper::check(&self.quarantine, &candidate.pool, now).await?
            {
                skipped.push(Skipped {
                    pool: candidate.pool.clone(),
                    reason: format!(
                        "quarantined since planning ({})",
                        record.reason.detail_type()
                    ),
                });
                continue;
            }
            let spec = LaunchSpec {
                switch_id: switch_id.clone(),
                image_id: image.image_id.clone(),
                instance_type: candidate.instance_type.clone(),
                subnet_id: candidate.subnet_id.clone(),
                security_group_ids: plan.source.security_group_ids.clone(),
                iam_instance_profile_arn: plan.source.iam_instance_profile_arn.clone(),
                key_name: plan.source.key_name.clone(),
                ebs_optimized: plan.source.ebs_optimized,
                user_data: plan.source.user_data.clone(),
                tags: clone_tags(&plan.source, switch_id),
                client_token: client_token(switch_id, index),
            };
            match fleet.launch(&spec).await? {
                Launched::Instance(instance_id) => {
                    info!(switch_id = %switch_id, instance_id = %instance_id, pool = %candidate.pool, "clone launched");
                    return Ok(step(instance_id, candidate, skipped));
                }
                Launched::NoCapacity(why) => {
                    warn!(switch_id = %switch_id, pool = %candidate.pool, reason = %why, "no capacity");
                    self.hold(&candidate.pool, &input, &why).await;
                    skipped.push(Skipped {
                        pool: candidate.pool.clone(),
                        reason: why,
                    });
                }
            }
        }
        let tried: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.pool, s.reason))
            .collect();
        Err(StepError::new(
            errors::INSUFFICIENT_CAPACITY,
            format!(
                "no candidate pool could launch the clone ({})",
                tried.join("; ")
            ),
        ))
    }

    /// Marks `pool` as short of capacity for a while, for every launch path. Best effort: the
    /// switch goes on to the next pool whatever happens here.
    async fn hold(&self, pool: &PoolKey, input: &StepInput, why: &str) {
        let request = &input.state.request;
        let held = gatekeeper::hold_capacity(
            &self.quarantine,
            pool,
            format!("capacity:{}:{pool}", input.execution),
            (&request.account_id, &request.region, &request.instance_id),
            &self.policy,
            self.clock.now(),
        )
        .await;
        match held {
            Ok(true) => info!(pool = %pool, reason = why, "capacity hold recorded"),
            Ok(false) => {}
            Err(e) => warn!(pool = %pool, error = %e, "capacity hold not recorded"),
        }
    }
}

fn step(instance_id: String, candidate: &Candidate, skipped: Vec<Skipped>) -> LaunchStep {
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
    use spot_domain::waste::Tags;

    #[test]
    fn the_clone_keeps_user_tags_and_carries_ours() {
        let mut tags = Tags::new();
        tags.insert("Name".into(), "db".into());
        tags.insert("aws:cloudformation:stack-name".into(), "s".into());
        tags.insert("ManagedBy".into(), "Terraform".into());
        tags.insert("spot-optimizer:waste".into(), "x".into());
        let source = SourceInstance {
            tags,
            ..spot_domain::testing::source_instance()
        };
        let got = clone_tags(&source, "sw-1");
        assert!(got.contains(&("Name".into(), "db".into())));
        assert!(got.contains(&("ManagedBy".into(), "SpotOptimizer".into())));
        assert!(got.contains(&("SourceInstance".into(), source.instance_id.clone())));
        assert!(got.contains(&(SWITCH_TAG.into(), "sw-1".into())));
        assert!(
            !got.iter()
                .any(|(k, _)| k.starts_with("aws:") || k == "spot-optimizer:waste")
        );
        assert_eq!(got.iter().filter(|(k, _)| k == "ManagedBy").count(), 1);
    }

    #[test]
    fn client_tokens_fit_and_differ_per_pool() {
        let long = "x".repeat(200);
        assert!(client_token(&long, 9).len() <= 64);
        assert_ne!(client_token("sw", 0), client_token("sw", 1));
        assert_eq!(client_token("sw", 0), client_token("sw", 0));
    }
}
