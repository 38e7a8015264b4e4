//! Step 2 of the ASG swap: for every member to replace, the Spot pools it could go to (same AZ,
//! the group's own subnets, types compatible with it or the group's overrides), every pool through
//! the gatekeeper in one batch read, ranked as for the atomic switch; then the swap's risk.

use std::collections::{BTreeMap, BTreeSet};

use spot_aws::{PriceList, QuarantineTable, Reach};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::market::{self, Catalog, Exclusion, ExclusionReason, Market, TypeQuery};
use spot_domain::pool::gatekeeper;
use spot_domain::saga::swap::{self, MemberPlan, SwapInput, SwapPlan};
use spot_domain::saga::{Risk, SagaMode, StepError};
use spot_domain::{Clock, PoolKey, SystemClock};
use tracing::{info, instrument};

/// Pools kept per member (and exclusions shown): five is enough to survive a capacity shortage,
/// and keeps a 40-member plan far below Step Functions' 256 KiB state limit.
const MAX_CANDIDATES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub quarantine_table: String,
    /// Live swaps at or above this risk wait for an operator.
    pub approval_threshold: Risk,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            approval_threshold: env.parsed(key::APPROVAL_THRESHOLD, Risk::Medium)?,
        })
    }
}

pub struct Planner {
    pub reach: Reach,
    pub quarantine: QuarantineTable,
    pub prices: PriceList,
    pub catalog: &'static Catalog,
    pub config: Config,
}

impl Planner {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Read, "swap-plan").await;
        Ok(Self {
            quarantine: QuarantineTable::new(crate::dynamodb(&ctx), &config.quarantine_table),
            prices: PriceList::from_config(ctx.base(), Catalog::shipped()),
            catalog: Catalog::shipped(),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "swap-plan", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<SwapPlan, StepError> {
        let request = &input.state.request;
        let discovered = input.state.discovery("plan")?;
        let group = &discovered.group;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let ec2 = &account.ec2;
        let ids: Vec<String> = discovered
            .candidates
            .iter()
            .map(|m| m.instance_id.clone())
            .collect();
        let found = ec2.placements(&ids).await?;
        let mut skipped = Vec::new();
        let mut sources = Vec::new();
        for id in &ids {
            match found.iter().find(|s| &s.instance_id == id) {
                Some(s) => match s.unpriced_platform() {
                    Some(why) => {
                        skipped.push(Exclusion::new(id, ExclusionReason::UnpricedPlatform, why));
                    }
                    None => sources.push(s.clone()),
                },
                None => skipped.push(Exclusion::new(
                    id,
                    ExclusionReason::NoLongerExists,
                    "no longer exists",
                )),
            }
        }
        let Some(first) = sources.first() else {
            return Err(StepError::not_eligible(format!(
                "group {}: no member left to plan",
                group.name
            )));
        };
        let subnets: Vec<_> = ec2
            .subnets(&first.vpc_id)
            .await?
            .into_iter()
            .filter(|s| group.subnet_ids.contains(&s.subnet_id))
            .collect();
        let allowed = swap::allowed_types(group);
        let mut types_by_arch = BTreeMap::new();
        for arch in sources
            .iter()
            .map(|s| s.architecture.clone())
            .collect::<BTreeSet<_>>()
        {
            let vcpus: Vec<u32> = sources
                .iter()
                .filter(|s| s.architecture == arch)
                .map(|s| s.vcpus)
                .collect();
            let types = ec2
                .instance_types(&TypeQuery::new(&arch, &vcpus, &allowed))
                .await?;
            types_by_arch.insert(arch, types);
        }
        let compatible: Vec<_> = sources
            .iter()
            .map(|s| {
                let types = types_by_arch
                    .get(&s.architecture)
                    .map_or(&[][..], Vec::as_slice);
                market::compatible_types(s, types, &allowed).0
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
            ec2.spot_prices(&names).await?
        };

        // Every pool any member could go to, through the gatekeeper in one batch read.
        let now = SystemClock.now();
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
        let (unavailable, quarantined) = gatekeeper::split_holds(&held);
        // Every pool left out of some member's plan: what decides the error when none can move.
        let mut pool_exclusions = Vec::new();

        let mut members = Vec::new();
        for (source, types) in sources.iter().zip(&compatible) {
            let Some(on_demand_price) = self
                .prices
                .on_demand(&request.region, &source.instance_type)
                .await?
            else {
                skipped.push(Exclusion::new(
                    &source.instance_id,
                    ExclusionReason::NoOnDemandPrice,
                    format!("no on-demand price known for {}", source.instance_type),
                ));
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
                market::rank(source, types, std::slice::from_ref(&source.az_id), &market);
            if candidates.is_empty() {
                skipped.push(Exclusion::new(
                    &source.instance_id,
                    ExclusionReason::NoPool,
                    format!(
                        "no Spot pool in {} ({})",
                        source.az_name,
                        market::explain(&exclusions, 3)
                    ),
                ));
                pool_exclusions.extend(exclusions);
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
            });
        }
        if members.is_empty() {
            return Err(StepError::new(
                market::no_pool_error(&pool_exclusions),
                format!(
                    "group {}: no member can move ({})",
                    group.name,
                    market::explain(&skipped, usize::MAX)
                ),
            ));
        }
        let (risk, risk_reasons) = swap::risk(
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
        let needs_approval =
            request.mode == SagaMode::Live && risk >= self.config.approval_threshold;
        info!(members = members.len(), risk = %risk, needs_approval, "planned");
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
