//! Step 1 of the atomic switch: read the source, refuse what must not move, rank the pools the
//! clone could go to (gatekeeper first), rate the risk, and in live mode take the instance's lock.

use std::collections::BTreeSet;

use spot_aws::{Guardian, LedgerTable, PriceList, QuarantineTable, Reach};
use spot_domain::config::{self, Accounts, ConfigError, Env, Guardrails, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::guard::{Activity, Guard};
use spot_domain::market::{self, Catalog, Market, TypeQuery};
use spot_domain::pool::gatekeeper;
use spot_domain::saga::switch::{self, Plan, PlanInput, Planned};
use spot_domain::saga::{Risk, SagaMode, Settings, StepError};
use spot_domain::{Clock, PoolKey, SystemClock};
use tracing::{info, instrument};

/// The plan keeps the best candidates and explanations, not hundreds: a Step Functions state holds
/// at most 256 KB.
const MAX_CANDIDATES: usize = 10;
const MAX_EXCLUSIONS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub quarantine_table: String,
    /// Holds the per-instance locks.
    pub ledger_table: String,
    /// Switches at or above this risk wait for an operator.
    pub approval_threshold: Risk,
    pub settings: Settings,
    /// The sagas' live switch (`MODE`, `LIVE_ACCOUNTS`): a request is live only if this allows.
    pub live: LiveSwitch,
    pub guardrails: Guardrails,
    /// Shadow before live (`SHADOW_DAYS`): live needs the account's promotion for switches.
    pub shadow_period: Option<chrono::TimeDelta>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            approval_threshold: env.parsed(key::APPROVAL_THRESHOLD, Risk::Medium)?,
            settings: Settings::from_env(env)?,
            live: config::live_switch(env, env.parsed(key::MODE, SagaMode::Shadow)?.as_mode())?,
            guardrails: Guardrails::from_env(env)?,
            shadow_period: config::shadow_period(env)?,
        })
    }
}

pub struct Planner {
    pub reach: Reach,
    pub quarantine: QuarantineTable,
    /// On-demand prices: the Price List API, the shipped table as its fallback.
    pub prices: PriceList,
    pub ledger: LedgerTable,
    /// Interruption bands (the shipped Spot Advisor snapshot).
    pub catalog: &'static Catalog,
    /// Pauses, the breaker's, and the account's promotion.
    pub guard: Guardian,
    pub config: Config,
}

impl Planner {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Read, "switch-plan").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            quarantine: QuarantineTable::new(dynamodb.clone(), &config.quarantine_table),
            ledger: LedgerTable::new(dynamodb, &config.ledger_table),
            prices: PriceList::from_config(ctx.base(), Catalog::shipped()),
            catalog: Catalog::shipped(),
            guard: spot_aws::Guardian::of(
                &ctx,
                &config.guardrails,
                "switch-plan",
                config.shadow_period,
            ),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "switch-plan", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.request.account_id, region = %input.request.region,
        target = %input.request.instance_id))]
    pub async fn handle(&self, input: PlanInput) -> Result<Planned, StepError> {
        let mut request = input.request;
        request.validate()?;
        // The stack decides whether a saga may act: a request may lower the mode, never raise it.
        request.mode = request.mode.gated(&self.config.live, &request.account_id);
        // Shadow before live, then the pauses: a paused account starts no live switch.
        request.mode = SagaMode::of(
            self.guard
                .mode(
                    &request.account_id,
                    Activity::Switch,
                    request.mode.as_mode(),
                    SystemClock.now(),
                )
                .await?,
        );
        if request.mode == SagaMode::Live {
            self.guard.check_now(&request.account_id).await?;
        }
        let requested = request.settings.clone().unwrap_or_default();
        let mut settings = requested.resolve(self.config.settings)?;
        let request = &request;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let ec2 = &account.ec2;
        let source = ec2.source(&request.instance_id).await?.ok_or_else(|| {
            StepError::not_eligible(format!(
                "{} does not exist in {}",
                request.instance_id, request.region
            ))
        })?;
        // The first snapshot of large volumes takes longer than the stack's image wait.
        settings.image_checks = switch::image_checks(&settings, requested.image_checks, &source);
        let refusals = switch::ineligibility(&source);
        if !refusals.is_empty() {
            return Err(StepError::not_eligible(format!(
                "{}: {}",
                source.instance_id,
                refusals.join("; ")
            )));
        }
        let on_demand_price = self
            .prices
            .on_demand(&request.region, &source.instance_type)
            .await?
            .ok_or_else(|| {
                StepError::not_eligible(format!(
                    "no on-demand price known for {} in {}",
                    source.instance_type, request.region
                ))
            })?;

        let target = request.target.clone().unwrap_or_default();
        let query = TypeQuery::new(
            &source.architecture,
            &[source.vcpus],
            &target.instance_types,
        );
        let (catalog, subnets) =
            tokio::try_join!(ec2.instance_types(&query), ec2.subnets(&source.vpc_id),)?;
        let (types, mut exclusions) =
            market::compatible_types(&source, &catalog, &target.instance_types);
        let names: Vec<String> = types.iter().map(|t| t.instance_type.clone()).collect();
        let prices = if names.is_empty() {
            Vec::new()
        } else {
            ec2.spot_prices(&names).await?
        };

        // Every pool the ranking may consider goes through the gatekeeper, in one batch.
        let now = SystemClock.now();
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
        let (unavailable, quarantined) = gatekeeper::split_holds(&held);
        let market = Market {
            region: &request.region,
            subnets: &subnets,
            prices: &prices,
            quarantined: &quarantined,
            unavailable: &unavailable,
            catalog: self.catalog,
            on_demand_price,
        };
        let (mut candidates, more) = market::rank(&source, &types, &target.az_ids, &market);
        exclusions.extend(more);
        let Some(best) = candidates.first().cloned() else {
            return Err(StepError::new(
                market::no_pool_error(&exclusions),
                format!(
                    "no pool to move {} to ({})",
                    source.instance_id,
                    market::explain(&exclusions, 5)
                ),
            ));
        };
        let (risk, risk_reasons) = switch::risk(account.view.environment, &source, &best);
        let needs_approval =
            request.mode == SagaMode::Live && risk >= self.config.approval_threshold;
        candidates.truncate(MAX_CANDIDATES);
        exclusions.truncate(MAX_EXCLUSIONS);
        if request.mode == SagaMode::Live {
            // Taken last, so a refused plan holds nothing; released by the cut-over or rollback.
            let key = switch::lock_key(request);
            let until = now + settings.longest_run();
            if let Some(holder) = self.ledger.lock(&key, &input.execution, until, now).await? {
                return Err(StepError::not_eligible(format!(
                    "{}: switch {holder} is in progress for it",
                    source.instance_id
                )));
            }
        }
        info!(
            pool = %best.pool,
            saving_per_hour = best.saving_per_hour,
            risk = %risk,
            mode = request.mode.as_str(),
            needs_approval,
            "planned"
        );
        let plan = Plan {
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
        };
        Ok(Planned {
            request: request.clone(),
            plan,
        })
    }
}
