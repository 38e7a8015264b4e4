//! Step 1 of the atomic switch: read the source, refuse what must not move, rank the pools the
//! clone could go to (gatekeeper first), and rate the risk.

use std::collections::BTreeSet;

use spot_domain::catalog::Catalog;
use spot_domain::gatekeeper;
use spot_domain::ports::{
    AccountRegistry, OnDemandPrices, QuarantineStore, SwitchFleet, SwitchFleets, SwitchLedger,
};
use spot_domain::saga::{self, Settings, StepError, StepInput, errors, fleet_for};
use spot_domain::settings::{ConfigError, Env};
use spot_domain::switch::{self, Market, Plan, Risk, SwitchMode};
use spot_domain::{Clock, PoolKey, SignalKind};
use tracing::info;

/// The plan output keeps the best candidates and explanations, not hundreds: a Step Functions
/// state holds at most 256 KB.
const MAX_CANDIDATES: usize = 10;
const MAX_EXCLUSIONS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Switches at or above this risk wait for an operator.
    pub approval_threshold: Risk,
    pub settings: Settings,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            approval_threshold: env.parsed("APPROVAL_THRESHOLD", Risk::Medium)?,
            settings: Settings::from_env(env)?,
        })
    }
}

pub struct Planner<R, F, Q, P, L, C> {
    pub registry: R,
    pub fleets: F,
    pub quarantine: Q,
    /// On-demand prices: the Price List API in production, the shipped table as its fallback.
    pub prices: P,
    /// Holds the per-instance locks: one live switch at a time per instance.
    pub ledger: L,
    pub clock: C,
    /// Interruption bands (the shipped Spot Advisor snapshot).
    pub catalog: &'static Catalog,
    pub home_account: String,
    pub config: Config,
}

impl<R, F, Q, P, L, C> Planner<R, F, Q, P, L, C>
where
    R: AccountRegistry,
    F: SwitchFleets,
    Q: QuarantineStore,
    P: OnDemandPrices,
    L: SwitchLedger,
    C: Clock,
{
    pub async fn handle(&self, input: StepInput) -> Result<Plan, StepError> {
        let request = &input.state.request;
        let (fleet, account) =
            fleet_for(&self.registry, &self.fleets, &self.home_account, request).await?;
        let source = fleet.source(&request.instance_id).await?.ok_or_else(|| {
            StepError::new(
                errors::NOT_ELIGIBLE,
                format!(
                    "{} does not exist in {}",
                    request.instance_id, request.region
                ),
            )
        })?;
        let refusals = switch::ineligibility(&source);
        if !refusals.is_empty() {
            return Err(StepError::new(
                errors::NOT_ELIGIBLE,
                format!("{}: {}", source.instance_id, refusals.join("; ")),
            ));
        }
        let on_demand_price = self
            .prices
            .on_demand(&request.region, &source.instance_type)
            .await?
            .ok_or_else(|| {
                StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!(
                        "no on-demand price known for {} in {}",
                        source.instance_type, request.region
                    ),
                )
            })?;

        let target = request.target.clone().unwrap_or_default();
        let (catalog, subnets) = futures_join(
            fleet.instance_types(&source.architecture),
            fleet.subnets(&source.vpc_id),
        )
        .await?;
        let (types, mut exclusions) =
            switch::compatible_types(&source, &catalog, &target.instance_types);
        let names: Vec<String> = types.iter().map(|t| t.instance_type.clone()).collect();
        let prices = if names.is_empty() {
            Vec::new()
        } else {
            fleet.spot_prices(&names).await?
        };

        // Every pool the ranking may consider goes through the gatekeeper, in one batch.
        let now = self.clock.now();
        let pools: Vec<PoolKey> = types
            .iter()
            .flat_map(|t| {
                subnets
                    .iter()
                    .filter(|s| s.vpc_id == source.vpc_id)
                    .filter_map(|s| PoolKey::new(&request.region, &s.az_id, &t.instance_type).ok())
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let held = gatekeeper::quarantined_among(&self.quarantine, &pools, now).await?;
        let (unavailable, quarantined): (BTreeSet<PoolKey>, BTreeSet<PoolKey>) = {
            let (short, long): (Vec<_>, Vec<_>) = held
                .values()
                .partition(|r| r.reason == SignalKind::CapacityShortage);
            (
                short.iter().map(|r| r.pool.clone()).collect(),
                long.iter().map(|r| r.pool.clone()).collect(),
            )
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
        let (mut candidates, more) = switch::rank(&source, &types, &target.az_ids, &market);
        exclusions.extend(more);
        let Some(best) = candidates.first().cloned() else {
            let name = if exclusions
                .iter()
                .any(|e| e.reason.starts_with("quarantined"))
            {
                errors::POOL_QUARANTINED
            } else {
                errors::NOT_ELIGIBLE
            };
            let why: Vec<String> = exclusions
                .iter()
                .take(5)
                .map(|e| format!("{}: {}", e.what, e.reason))
                .collect();
            return Err(StepError::new(
                name,
                format!(
                    "no pool to move {} to ({})",
                    source.instance_id,
                    why.join("; ")
                ),
            ));
        };
        let (risk, risk_reasons) = switch::risk(account.environment, &source, &best);
        let needs_approval =
            request.mode == SwitchMode::Live && risk >= self.config.approval_threshold;
        candidates.truncate(MAX_CANDIDATES);
        exclusions.truncate(MAX_EXCLUSIONS);
        let settings = input
            .state
            .settings
            .clone()
            .unwrap_or_default()
            .resolve(self.config.settings);
        if request.mode == SwitchMode::Live {
            // Taken last, so a refused plan holds nothing; released by the cut-over or rollback.
            let key = saga::lock_key(request);
            let until = now + settings.longest_run();
            if let Some(holder) = self.ledger.lock(&key, &input.execution, until, now).await? {
                return Err(StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!(
                        "{}: switch {holder} is in progress for it",
                        source.instance_id
                    ),
                ));
            }
        }
        info!(
            switch_id = %input.execution,
            instance_id = %source.instance_id,
            pool = %best.pool,
            saving_per_hour = best.saving_per_hour,
            risk = %risk,
            needs_approval,
            "planned"
        );
        Ok(Plan {
            switch_id: input.execution.clone(),
            summary: switch::summary(&source, Some(&best)),
            saving_per_hour: best.saving_per_hour,
            settings,
            source,
            on_demand_price,
            candidates,
            exclusions,
            risk,
            risk_reasons,
            needs_approval,
        })
    }
}

async fn futures_join<A, B, E>(
    a: impl std::future::Future<Output = Result<A, E>>,
    b: impl std::future::Future<Output = Result<B, E>>,
) -> Result<(A, B), E> {
    let (a, b) = tokio::join!(a, b);
    Ok((a?, b?))
}
