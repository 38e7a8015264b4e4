//! Step 1 of the ASG swap: read the group, refuse what must not be swapped (with every reason),
//! list the on-demand members to replace in order, and, in live mode, take the group's lock so a
//! second swap of the same group cannot start.

use spot_aws::{LedgerTable, Reach};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::guard::{Activity, Guard};
use spot_domain::market;
use spot_domain::saga::swap::{self, DiscoverInput, DiscoverOutput, Discovered, OptIn};
use spot_domain::saga::{SagaMode, Settings, StepError};
use spot_domain::{Clock, SystemClock};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    /// Holds the per-group locks.
    pub ledger_table: String,
    pub opt_in: OptIn,
    /// Replace this share of the group's desired capacity at a time (default: one instance).
    pub batch_percent: Option<u32>,
    /// Members one execution replaces at most (`MAX_MEMBERS`); the next run takes the rest.
    pub max_members: usize,
    pub settings: Settings,
    /// The sagas' live switch (`MODE`, `LIVE_ACCOUNTS`): a request is live only if this allows.
    pub live: LiveSwitch,
    pub guardrails: spot_domain::config::Guardrails,
    /// Shadow before live (`SHADOW_DAYS`): live needs the account's promotion for swaps.
    pub shadow_period: Option<chrono::TimeDelta>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let batch_percent: u32 = env.bounded(key::BATCH_PERCENT, 0, 0, 100)?;
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            opt_in: OptIn {
                allowlist: env.list(key::ASG_ALLOWLIST, |n| !n.is_empty() && n.len() <= 255)?,
                allow_protected: env.parsed(key::ALLOW_PROTECTED, false)?,
            },
            batch_percent: (batch_percent > 0).then_some(batch_percent),
            max_members: env.bounded(key::MAX_MEMBERS, 20, 1, swap::MAX_MEMBERS_LIMIT)?,
            settings: Settings::from_env(env)?,
            live: config::live_switch(env, env.parsed(key::MODE, SagaMode::Shadow)?.as_mode())?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            shadow_period: config::shadow_period(env)?,
        })
    }
}

pub struct Discoverer {
    pub reach: Reach,
    /// Pauses, the breaker's, and the account's promotion.
    pub guard: spot_aws::Guardian,
    pub ledger: LedgerTable,
    pub config: Config,
}

impl Discoverer {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Read, "swap-discover").await;
        Ok(Self {
            ledger: LedgerTable::new(crate::dynamodb(&ctx), &config.ledger_table),
            guard: spot_aws::Guardian::of(
                &ctx,
                &config.guardrails,
                "swap-discover",
                config.shadow_period,
            ),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "swap-discover", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.request.account_id, region = %input.request.region,
        target = %input.request.asg_name))]
    pub async fn handle(&self, input: DiscoverInput) -> Result<DiscoverOutput, StepError> {
        let mut request = input.request;
        request.validate()?;
        // The stack decides whether a saga may act: a request may lower the mode, never raise it.
        request.mode = request.mode.gated(&self.config.live, &request.account_id);
        // Shadow before live, then the pauses: a paused account starts no live swap.
        request.mode = SagaMode::of(
            self.guard
                .mode(
                    &request.account_id,
                    Activity::Swap,
                    request.mode.as_mode(),
                    SystemClock.now(),
                )
                .await?,
        );
        if request.mode == SagaMode::Live {
            self.guard.check_now(&request.account_id).await?;
        }
        let settings = request
            .settings
            .clone()
            .unwrap_or_default()
            .resolve(self.config.settings)?;
        let request = &request;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let group = account
            .inspect_group(&request.asg_name)
            .await?
            .ok_or_else(|| {
                StepError::not_eligible(format!(
                    "no Auto Scaling group {} in {}",
                    request.asg_name, request.region
                ))
            })?;
        let refusals = swap::refusals(&group, &self.config.opt_in);
        if !refusals.is_empty() {
            return Err(StepError::not_eligible(format!(
                "group {}: {}",
                group.name,
                refusals.join("; ")
            )));
        }
        let (candidates, mut excluded) = swap::candidates(&group, &self.config.opt_in);
        let (candidates, deferred) = swap::defer(candidates, self.config.max_members);
        excluded.extend(deferred);
        if candidates.is_empty() {
            return Err(StepError::not_eligible(format!(
                "group {}: no on-demand member to replace ({})",
                group.name,
                market::explain(&excluded, usize::MAX)
            )));
        }
        let batch_size =
            swap::batch_size(group.desired, candidates.len(), self.config.batch_percent);
        if request.mode == SagaMode::Live {
            let now = SystemClock.now();
            let batches = i32::try_from(candidates.len().div_ceil(batch_size)).unwrap_or(i32::MAX);
            // Each batch may also wait for its target groups to drain (at most an hour).
            let until = now
                + (settings.longest_run()
                    + chrono::TimeDelta::seconds(i64::from(swap::LONGEST_DEREGISTRATION_DELAY)))
                    * batches.max(1);
            if let Some(holder) = self
                .ledger
                .lock(&swap::lock_key(request), &input.execution, until, now)
                .await?
            {
                return Err(StepError::not_eligible(format!(
                    "group {}: swap {holder} is in progress",
                    group.name
                )));
            }
        }
        info!(
            candidates = candidates.len(),
            batch_size,
            in_service = group.in_service(),
            mode = request.mode.as_str(),
            "discovered"
        );
        Ok(DiscoverOutput {
            request: request.clone(),
            discover: Discovered {
                start_in_service: group.in_service(),
                environment: account.view.environment,
                group,
                candidates,
                excluded,
                batch_size,
                settings,
            },
        })
    }
}
