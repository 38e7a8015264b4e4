//! Step 2 of the ASG swap: for every member to replace, the Spot pools it could go to (same AZ,
//! the group's own subnets, types compatible with it or the group's overrides), every pool through
//! the gatekeeper in one batch read, ranked as for the atomic switch; then the swap's risk.

use std::collections::{BTreeMap, BTreeSet};

use spot_domain::asg::{self, MemberPlan, SwapInput, SwapPlan};
use spot_domain::catalog::Catalog;
use spot_domain::gatekeeper;
use spot_domain::ports::{
    AccountRegistry, GroupFleets, OnDemandPrices, QuarantineStore, SwitchFleet, SwitchFleets,
};
use spot_domain::saga::{Reach, StepError, errors};
use spot_domain::switch::{self, Exclusion, Market, Risk, SwitchMode};
use spot_domain::{Clock, PoolKey, SignalKind};
use tracing::info;

const MAX_CANDIDATES: usize = 10;

pub struct Planner<R, F, Q, P, C> {
    pub reach: Reach<R, F>,
    pub quarantine: Q,
    pub prices: P,
    pub clock: C,
    pub catalog: &'static Catalog,
    /// Live swaps at or above this risk wait for an operator.
    pub approval_threshold: Risk,
}

impl<R, F, Q, P, C> Planner<R, F, Q, P, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    Q: QuarantineStore,
    P: OnDemandPrices,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<SwapPlan, StepError> {
        let request = &input.state.request;
        let discovered =
            input.state.discover.as_ref().ok_or_else(|| {
                StepError::new("InvalidRequest", "the plan step needs the discovery")
            })?;
        let group = &discovered.group;
        let reach = self.reach.group(request).await?;
        let ids: Vec<String> = discovered
            .candidates
            .iter()
            .map(|m| m.instance_id.clone())
            .collect();
        let found = reach.ec2.placements(&ids).await?;
        let mut skipped = Vec::new();
        let mut sources = Vec::new();
        for id in &ids {
            match found.iter().find(|s| &s.instance_id == id) {
                Some(s) => sources.push(s.clone()),
                None => skipped.push(Exclusion {
                    what: id.clone(),
                    reason: "no longer exists".into(),
                }),
            }
        }
        let Some(first) = sources.first() else {
            return Err(StepError::new(
                errors::NOT_ELIGIBLE,
                format!("group {}: no member left to plan", group.name),
            ));
        };
        let subnets: Vec<_> = reach
            .ec2
            .subnets(&first.vpc_id)
            .await?
            .into_iter()
            .filter(|s| group.subnet_ids.contains(&s.subnet_id))
            .collect();
        let mut types_by_arch = BTreeMap::new();
        for arch in sources
            .iter()
            .map(|s| s.architecture.clone())
            .collect::<BTreeSet<_>>()
        {
            let types = reach.ec2.instance_types(&arch).await?;
            types_by_arch.insert(arch, types);
        }
        let allowed = asg::allowed_types(group);
        let compatible: Vec<_> = sources
            .iter()
            .map(|s| {
                let types = types_by_arch
                    .get(&s.architecture)
                    .map_or(&[][..], Vec::as_slice);
                switch::compatible_types(s, types, &allowed).0
            })
            .collect();
        let names: Vec<String> = compatible
            .iter()
            .flatten()
            .map(|t| t.instance_type.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let prices = if names.is_empty() {
            Vec::new()
        } else {
            reach.ec2.spot_prices(&names).await?
        };

        // Every pool any member could go to, through the gatekeeper in one batch read.
        let now = self.clock.now();
        let pools: Vec<PoolKey> = sources
            .iter()
            .zip(&compatible)
            .flat_map(|(s, types)| {
                types
                    .iter()
                    .filter_map(|t| PoolKey::new(&request.region, &s.az_id, &t.instance_type).ok())
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let held = gatekeeper::quarantined_among(&self.quarantine, &pools, now).await?;
        let (short, long): (Vec<_>, Vec<_>) = held
            .values()
            .partition(|r| r.reason == SignalKind::CapacityShortage);
        let unavailable: BTreeSet<PoolKey> = short.iter().map(|r| r.pool.clone()).collect();
        let quarantined: BTreeSet<PoolKey> = long.iter().map(|r| r.pool.clone()).collect();

        let mut members = Vec::new();
        for (source, types) in sources.iter().zip(&compatible) {
            let Some(on_demand_price) = self
                .prices
                .on_demand(&request.region, &source.instance_type)
                .await?
            else {
                skipped.push(Exclusion {
                    what: source.instance_id.clone(),
                    reason: format!("no on-demand price known for {}", source.instance_type),
                });
                continue;
            };
            let market = Market {
                region: &request.region,
                subnets: &subnets,
                prices: &prices,
                quarantined: &quarantined,
                unavailable: &unavailable,
                catalog: self.catalog,
                on_demand_price,
            };
            // Same AZ: the group's balance across AZs stays as it is.
            let (mut candidates, mut exclusions) =
                switch::rank(source, types, std::slice::from_ref(&source.az_id), &market);
            if candidates.is_empty() {
                let why: Vec<String> = exclusions
                    .iter()
                    .take(3)
                    .map(|e| format!("{}: {}", e.what, e.reason))
                    .collect();
                skipped.push(Exclusion {
                    what: source.instance_id.clone(),
                    reason: format!("no Spot pool in {} ({})", source.az_name, why.join("; ")),
                });
                continue;
            }
            candidates.truncate(MAX_CANDIDATES);
            exclusions.truncate(MAX_CANDIDATES);
            members.push(MemberPlan {
                instance_id: source.instance_id.clone(),
                instance_type: source.instance_type.clone(),
                az_name: source.az_name.clone(),
                on_demand_price,
                candidates,
                exclusions,
                tags: switch::inherited_tags(&source.tags),
            });
        }
        if members.is_empty() {
            let name = if skipped.iter().any(|e| e.reason.contains("quarantined")) {
                errors::POOL_QUARANTINED
            } else {
                errors::NOT_ELIGIBLE
            };
            let why: Vec<String> = skipped
                .iter()
                .map(|e| format!("{}: {}", e.what, e.reason))
                .collect();
            return Err(StepError::new(
                name,
                format!(
                    "group {}: no member can move ({})",
                    group.name,
                    why.join("; ")
                ),
            ));
        }
        let (risk, risk_reasons) = asg::risk(
            discovered.environment,
            group,
            discovered.batch_size,
            &members,
        );
        let saving_per_hour: f64 = members.iter().map(MemberPlan::saving_per_hour).sum();
        let targets: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| m.candidates.first().map(|c| c.instance_type.as_str()))
            .collect();
        let summary = format!(
            "asg/{}: {} on-demand member(s) → Spot {}, {} at a time, saves ${saving_per_hour:.4}/h",
            group.name,
            members.len(),
            targets.into_iter().collect::<Vec<_>>().join("/"),
            discovered.batch_size,
        );
        let needs_approval = request.mode == SwitchMode::Live && risk >= self.approval_threshold;
        info!(swap_id = %input.execution, group = %group.name, members = members.len(), risk = %risk, needs_approval, "planned");
        Ok(SwapPlan {
            members,
            skipped,
            risk,
            risk_reasons,
            needs_approval,
            summary,
            saving_per_hour,
        })
    }
}
