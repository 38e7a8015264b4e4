//! Step 1 of the failover: read the dying instance, plan the fastest allowed pools, and launch its
//! replacement. Spot first (the gatekeeper's pools, the signalled one excluded, the same AZ first,
//! the likeliest capacity before price); then on-demand of a compatible type; then, for a switched
//! workload, the original on-demand instance the switch stopped. A switched workload's replacement
//! boots the switch's image with the dying instance's posture; a group member's, the group's own
//! launch template (or configuration), in one of the group's subnets. Each fallback is recorded
//! with why. A retried step finds its replacement by its mark or its client token, or the origin
//! by the failover's mark, and launches nothing new.

use std::collections::BTreeSet;

use chrono::{TimeDelta, Utc};
use spot_aws::autoscaling::LaunchConfiguration;
use spot_aws::{AccountClients, Ec2, LedgerTable, QuarantineTable, Reach};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::instance::{GroupLaunchSpec, LaunchSpec, Launched, SourceInstance};
use spot_domain::market::{self, Candidate, Catalog, Exclusion, Market as Prices, TypeQuery};
use spot_domain::pool::gatekeeper::{self, Gate};
use spot_domain::saga::failover::{
    self, Dying, FailoverInput, FailoverRecord, FailoverRequest, FailoverStatus, Fallback,
    FallbackNote, Hold, Hysteresis, LaunchStep, Market, Replacement, Workload, WorkloadHistory,
};
use spot_domain::saga::launch::first_open_pool;
use spot_domain::saga::swap::LaunchSource;
use spot_domain::saga::{SagaMode, Settings, StepError};
use spot_domain::tags::{self, FAILOVER_TAG, ON_DEMAND_UNTIL_TAG, ORIGIN_TAG, VIA_FAILOVER};
use spot_domain::{ErrorName, PoolKey, QuarantinePolicy};
use tracing::{info, instrument, warn};

/// Spot pools tried before on-demand: each refusal costs a round trip of the two minutes.
const MAX_SPOT_ATTEMPTS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub quarantine_table: String,
    pub ledger_table: String,
    pub settings: Settings,
    /// The sagas' live switch (`MODE`, `LIVE_ACCOUNTS`).
    pub live: LiveSwitch,
    /// `capacity`: how long a pool without capacity is passed over.
    pub policy: QuarantinePolicy,
    /// When a workload interrupted too often is given on-demand instead.
    pub hysteresis: Hysteresis,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            settings: settings(env)?,
            live: config::live_switch(env, env.parsed(key::MODE, SagaMode::Shadow)?.as_mode())?,
            policy: QuarantinePolicy::for_launches(env)?,
            hysteresis: hysteresis(env)?,
        })
    }
}

/// `HYSTERESIS_INTERRUPTIONS` (0 turns it off), `HYSTERESIS_WINDOW_DAYS`, `ON_DEMAND_HOLD_DAYS`.
fn hysteresis<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Hysteresis, ConfigError> {
    let d = Hysteresis::default();
    let day = TimeDelta::days(1);
    Ok(Hysteresis {
        interruptions: env.bounded(key::HYSTERESIS_INTERRUPTIONS, d.interruptions, 0, 100)?,
        window: env.duration(key::HYSTERESIS_WINDOW_DAYS, d.window, day, 1)?,
        hold: env.duration(key::ON_DEMAND_HOLD_DAYS, d.hold, day, 0)?,
    })
}

/// The failover's pacing: `WAIT_SECONDS` (default 5: a warning gives two minutes) and
/// `HEALTH_CHECKS`; it has no image to wait for and no approval.
fn settings<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Settings, ConfigError> {
    let d = Settings::default();
    let (w0, w1) = Settings::WAIT_SECONDS;
    let (c0, c1) = Settings::CHECKS;
    Ok(Settings {
        wait_seconds: env.bounded(key::WAIT_SECONDS, 5, w0, w1)?,
        health_checks: env.bounded(key::HEALTH_CHECKS, d.health_checks, c0, c1)?,
        ..d
    })
}

/// How a replacement is launched.
enum Recipe {
    /// A switched workload: the switch's image (the dying instance's), with its posture.
    Posture,
    /// A group member: the group's launch template or configuration, in the group's subnets.
    Group {
        source: LaunchSource,
        configuration: Option<Box<LaunchConfiguration>>,
        subnet_ids: Vec<String>,
    },
}

/// The Spot candidates in the order the caller asked for (a failover's, or a standby's), the
/// compatible type names, the VPC's subnets, and the pools excluded with why.
pub(crate) struct Plan {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) types: Vec<String>,
    pub(crate) subnets: Vec<spot_domain::market::SubnetInfo>,
    pub(crate) skipped: Vec<Exclusion>,
    /// The dying instance's user data, read with the catalog rather than after it.
    pub(crate) user_data: Option<String>,
}

pub struct Launcher {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub quarantine: QuarantineTable,
    pub ledger: LedgerTable,
    pub catalog: &'static Catalog,
    pub config: Config,
}

/// The idempotency token of launch attempt `attempt` of `failover_id`.
pub fn client_token(failover_id: &str, attempt: usize) -> String {
    spot_domain::saga::step::client_token(failover_id, &[&attempt.to_string()])
}

/// Every token the step may have used.
fn tokens(failover_id: &str) -> Vec<String> {
    (0..MAX_SPOT_ATTEMPTS + failover::MAX_ON_DEMAND_ATTEMPTS)
        .map(|i| client_token(failover_id, i))
        .collect()
}

impl Launcher {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Failover, "failover-launch").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            quarantine: QuarantineTable::new(dynamodb.clone(), &config.quarantine_table),
            ledger: LedgerTable::new(dynamodb, &config.ledger_table),
            catalog: Catalog::shipped(),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "failover-launch", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "failover-launch", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: FailoverInput) -> Result<LaunchStep, StepError> {
        let request = &input.state.request;
        request.validate()?;
        let mode = request
            .mode
            .unwrap_or(SagaMode::Live)
            .gated(&self.config.live, &request.account_id);
        // Paused: no replacement is launched (the kill switch covers failover launches too).
        if mode == SagaMode::Live {
            self.guard.check(&request.account_id).await?;
        }
        let settings = request
            .settings
            .clone()
            .unwrap_or_default()
            .resolve(self.config.settings)?;
        let failover_id = &input.execution;
        let account = self
            .reach
            .account(&request.account_id, &request.region, failover_id)
            .await?;
        let ec2 = &account.ec2;
        let source = ec2.source(&request.instance_id).await?.ok_or_else(|| {
            StepError::not_eligible(format!(
                "{} no longer exists in {}: nothing to read its replacement from",
                request.instance_id, request.region
            ))
        })?;
        let workload = failover::workload(&source.tags).ok_or_else(|| {
            StepError::not_eligible(format!(
                "{} is no workload the optimizer put on Spot",
                source.instance_id
            ))
        })?;
        let replica = tags::replica_mode(&source.tags) && workload.origin().is_some();
        let step = |replacement, planned, hold| LaunchStep {
            mode,
            settings,
            workload: workload.clone(),
            dying: Dying::of(&source),
            replacement,
            planned,
            hold,
            replica,
            standby_of: None,
        };
        // A standby taken: nothing serves on it, so nothing is promoted; the standby step keeps
        // its primary a new one.
        if tags::is_standby(&source.tags) {
            let primary = source
                .tags
                .get(tags::SOURCE_TAG)
                .filter(|p| spot_domain::ids::Field::InstanceId.accepts(p))
                .ok_or_else(|| {
                    StepError::new(
                        ErrorName::InvalidData,
                        format!(
                            "standby {} names no primary it stands by",
                            source.instance_id
                        ),
                    )
                })?;
            info!(primary = %primary, "a standby is taken: its primary gets a new one");
            return Ok(LaunchStep {
                standby_of: Some(primary.clone()),
                ..step(None, Vec::new(), None)
            });
        }
        // A retry's earlier launch, the pools, the group and the workload's history are read
        // together: the plan is thrown away in the rare case a replacement is already there.
        let (found, standby, plan, recipe, history) = tokio::join!(
            async {
                match mode {
                    SagaMode::Live => {
                        self.already_launched(ec2, failover_id, &workload, &request.region)
                            .await
                    }
                    SagaMode::Shadow => Ok(None),
                }
            },
            async {
                match replica {
                    true => ready_standby(ec2, request, &workload, &source).await,
                    false => Ok(None),
                }
            },
            plan(
                ec2,
                &self.quarantine,
                self.catalog,
                &request.region,
                &source,
                request.pool.as_slice(),
                |c| failover::failover_order(c, &source.az_id)
            ),
            recipe(&account, &workload, &source),
            self.history(request, &workload)
        );
        let history = history?;
        // A warm standby is promoted in seconds: no hold, no launch.
        if let Some(standby) = standby? {
            info!(standby = %standby.instance_id, "the workload's standby is promoted");
            self.remember(history, failover_id, request, None).await?;
            if mode == SagaMode::Shadow {
                self.record_shadow(failover_id, request, &workload, &[], None, Some(&standby))
                    .await?;
                let planned = standby.pool.clone().into_iter().collect();
                return Ok(step(None, planned, None));
            }
            return Ok(step(Some(found?.unwrap_or(standby)), Vec::new(), None));
        }
        // The hold keeps the router off a switched workload; a group's members are the swap's.
        let hold = match workload {
            Workload::Switched { .. } => {
                self.config
                    .hysteresis
                    .hold(&history, failover_id, request.received_at)
            }
            Workload::Member { .. } => None,
        };
        if let Some(found) = found? {
            info!(instance_id = %found.instance_id, market = %found.market, "replacement already launched");
            self.remember(history, failover_id, request, hold.as_ref())
                .await?;
            return Ok(step(Some(found), Vec::new(), hold));
        }
        let plan = plan?;
        let recipe = recipe?;
        if mode == SagaMode::Shadow {
            let planned: Vec<PoolKey> = plan.candidates.iter().map(|c| c.pool.clone()).collect();
            self.record_shadow(
                failover_id,
                request,
                &workload,
                &plan.candidates,
                hold.as_ref(),
                None,
            )
            .await?;
            self.remember(history, failover_id, request, hold.as_ref())
                .await?;
            info!(pools = planned.len(), "shadow: planned, nothing launched");
            return Ok(step(None, planned, hold));
        }
        let replaced = self
            .replace(
                ec2,
                request,
                &source,
                &workload,
                failover_id,
                plan,
                &recipe,
                hold.as_ref(),
            )
            .await;
        // Counted whether or not a replacement was obtained: it was an interruption.
        self.remember(history, failover_id, request, hold.as_ref())
            .await?;
        Ok(step(Some(replaced?), Vec::new(), hold))
    }

    /// The replacement: Spot (unless the workload is held on-demand), then on-demand, then the
    /// workload's original.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        ec2: &Ec2,
        request: &FailoverRequest,
        source: &SourceInstance,
        workload: &Workload,
        failover_id: &str,
        plan: Plan,
        recipe: &Recipe,
        hold: Option<&Hold>,
    ) -> Result<Replacement, StepError> {
        let Plan {
            mut candidates,
            types,
            mut subnets,
            mut skipped,
            user_data,
        } = plan;
        // A member's replacement joins its group: only the group's subnets.
        if let Recipe::Group { subnet_ids, .. } = recipe {
            subnets.retain(|s| subnet_ids.contains(&s.subnet_id));
            candidates.retain(|c| subnet_ids.contains(&c.subnet_id));
        }
        let image_id = source.image_id.clone().ok_or_else(|| {
            StepError::new(
                ErrorName::InvalidData,
                format!(
                    "{} names no image to boot a replacement from",
                    source.instance_id
                ),
            )
        })?;
        let tags = replacement_tags(source, workload, failover_id, hold);
        let order = |instance_type: &str, subnet_id: &str, attempt: usize| match recipe {
            Recipe::Posture => Order::Instance(LaunchSpec::with_posture_of(
                source,
                &image_id,
                instance_type,
                subnet_id,
                user_data.clone(),
                tags.clone(),
                client_token(failover_id, attempt),
            )),
            Recipe::Group {
                source,
                configuration,
                ..
            } => Order::Group(
                GroupLaunchSpec {
                    source: source.clone(),
                    instance_type: instance_type.to_owned(),
                    subnet_id: subnet_id.to_owned(),
                    tags: tags.clone(),
                    client_token: client_token(failover_id, attempt),
                },
                configuration.as_deref(),
            ),
        };

        // 1. Spot, in the order of the plan; none for a workload held on-demand.
        let spot_candidates: &[Candidate] = if hold.is_some() { &[] } else { &candidates };
        let spot = first_open_pool(
            spot_candidates,
            |c| self.quarantined(&c.pool),
            |index, c| {
                let order = order(&c.instance_type, &c.subnet_id, index);
                self.launch(ec2, order, true, Some(c), request, failover_id)
            },
        )
        .await?;
        let mut fallbacks = Vec::new();
        match spot {
            Ok(taken) => {
                let c = &candidates[taken.index];
                skipped.extend(taken.skipped);
                info!(instance_id = %taken.instance_id, pool = %c.pool, "replacement launched on Spot");
                return Ok(Replacement {
                    instance_id: taken.instance_id,
                    market: Market::Spot,
                    instance_type: c.instance_type.clone(),
                    az_name: c.az_name.clone(),
                    pool: Some(c.pool.clone()),
                    spot_price: Some(c.spot_price),
                    fallbacks,
                    skipped,
                    launched_at: Utc::now(),
                });
            }
            Err(refused) => {
                // What the tried pools answered first; then why the others were not tried.
                let why = if let Some(hold) = hold {
                    hold.why.clone()
                } else if refused.is_empty() && skipped.is_empty() {
                    "no Spot pool to try".to_owned()
                } else if refused.is_empty() {
                    format!("no Spot pool to try ({})", market::explain(&skipped, 5))
                } else {
                    format!(
                        "no Spot pool launched it ({}; {} other pool(s) excluded at planning)",
                        market::explain(&refused, 5),
                        skipped.len()
                    )
                };
                skipped.extend(refused);
                fallbacks.push(Fallback {
                    to: Market::OnDemand,
                    why,
                });
            }
        }

        // 2. On-demand, of the dying type or a compatible one.
        let mut refusals = Vec::new();
        for (i, pool) in failover::on_demand_pools(source, &types, &subnets)
            .into_iter()
            .enumerate()
        {
            let order = order(&pool.instance_type, &pool.subnet_id, MAX_SPOT_ATTEMPTS + i);
            match self
                .launch(ec2, order, false, None, request, failover_id)
                .await?
            {
                Launched::Instance(instance_id) => {
                    warn!(instance_id, instance_type = %pool.instance_type, "replacement launched on-demand");
                    return Ok(Replacement {
                        instance_id,
                        market: Market::OnDemand,
                        instance_type: pool.instance_type,
                        az_name: pool.az_name,
                        pool: None,
                        spot_price: None,
                        fallbacks,
                        skipped,
                        launched_at: Utc::now(),
                    });
                }
                Launched::NoCapacity(why) | Launched::Refused(why) => {
                    refusals.push(format!("{} in {}: {why}", pool.instance_type, pool.az_name));
                }
            }
        }

        let no_on_demand = format!("no on-demand launch succeeded ({})", refusals.join("; "));
        // 3. A switched workload's original, stopped by the switch. A group has none: its own
        // scaling replaces the member once it is gone.
        let Some(origin) = workload.origin() else {
            let tried: Vec<&str> = fallbacks
                .iter()
                .map(|f| f.why.as_str())
                .chain([no_on_demand.as_str()])
                .collect();
            return Err(StepError::new(
                ErrorName::InsufficientCapacity,
                format!(
                    "no replacement for {}: {}",
                    source.instance_id,
                    tried.join("; ")
                ),
            ));
        };
        let origin = &origin.to_owned();
        fallbacks.push(Fallback {
            to: Market::Origin,
            why: no_on_demand,
        });
        // Every fallback's reason goes with a failure of the last one: the ledger keeps the cause.
        let tried = fallbacks
            .iter()
            .map(|f| f.why.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let Some(original) = ec2.source(origin).await? else {
            return Err(StepError::new(
                ErrorName::InsufficientCapacity,
                format!(
                    "no replacement for {}: {tried}; and its original {origin} no longer exists",
                    source.instance_id,
                ),
            ));
        };
        let started = async {
            // The reasons first, then the mark: a retried step knows the start was its own and
            // why it came to it; a hold keeps the router off it.
            self.ledger
                .record(&FallbackNote::new(failover_id, &fallbacks, Utc::now()))
                .await?;
            ec2.tag(origin, FAILOVER_TAG, failover_id).await?;
            if let Some(hold) = hold {
                ec2.tag(origin, ON_DEMAND_UNTIL_TAG, &hold.until.to_rfc3339())
                    .await?;
            }
            if !matches!(original.state.as_str(), "pending" | "running") {
                ec2.start(origin).await?;
            }
            Ok::<_, spot_domain::AwsError>(())
        };
        started.await.map_err(|e| {
            let e = StepError::from(e);
            match e.name {
                // Retried by the state machine: the same step comes back here.
                ErrorName::Transient => e,
                name => StepError::new(
                    name,
                    format!(
                        "no replacement for {}: {tried}; and starting its original {origin} \
                         failed: {}",
                        source.instance_id, e.message
                    ),
                ),
            }
        })?;
        warn!(origin, "the original instance was started");
        Ok(Replacement {
            instance_id: origin.clone(),
            market: Market::Origin,
            instance_type: original.instance_type,
            az_name: original.az_name,
            pool: None,
            spot_price: None,
            fallbacks,
            skipped,
            launched_at: Utc::now(),
        })
    }

    /// The workload's failover history (empty for its first).
    async fn history(
        &self,
        request: &FailoverRequest,
        workload: &Workload,
    ) -> Result<WorkloadHistory, StepError> {
        let key = WorkloadHistory::key(&request.account_id, &request.region, workload.id());
        Ok(self.ledger.get_as(&key).await?.unwrap_or_else(|| {
            WorkloadHistory::empty(&request.account_id, &request.region, workload.id())
        }))
    }

    /// Counts this failover in the workload's history (once, however often the step runs), and
    /// the hold it started.
    async fn remember(
        &self,
        history: WorkloadHistory,
        failover_id: &str,
        request: &FailoverRequest,
        hold: Option<&Hold>,
    ) -> Result<(), StepError> {
        if let Some(h) = hold {
            warn!(until = %h.until, why = %h.why, "workload held on-demand");
        }
        let history = history.with(
            failover_id,
            request.received_at,
            hold,
            &self.config.hysteresis,
        );
        self.ledger.record(&history).await?;
        Ok(())
    }

    /// What an earlier attempt of this failover launched or started, if anything.
    async fn already_launched(
        &self,
        ec2: &Ec2,
        failover_id: &str,
        workload: &Workload,
        region: &str,
    ) -> Result<Option<Replacement>, StepError> {
        // Asked at once: this runs before every first launch, on the two minutes.
        let tokens = tokens(failover_id);
        let (found, origin_tags) =
            tokio::try_join!(ec2.failover_launch(failover_id, &tokens), async {
                match workload.origin() {
                    Some(origin) => ec2.tags(origin).await,
                    None => Ok(Default::default()),
                }
            })?;
        let (instance_id, origin) = match (found, workload.origin()) {
            (Some(found), _) => (found.instance_id, false),
            (None, Some(origin))
                if origin_tags.get(FAILOVER_TAG).map(String::as_str) == Some(failover_id) =>
            {
                (origin.to_owned(), true)
            }
            (None, _) => return Ok(None),
        };
        let Some(found) = ec2.source(&instance_id).await? else {
            return Ok(None);
        };
        let mut fallbacks = Vec::new();
        // An original marked by an attempt whose start then failed: started now, with the
        // reasons that attempt wrote.
        if origin {
            fallbacks = self
                .ledger
                .get_as::<FallbackNote>(&FallbackNote::key(failover_id))
                .await?
                .map(|note| note.fallbacks)
                .unwrap_or_default();
            match found.state.as_str() {
                "pending" | "running" => {}
                "stopped" => {
                    ec2.start(&instance_id).await?;
                    warn!(instance_id, "the original instance was started (retried)");
                }
                other => {
                    return Err(StepError::new(
                        ErrorName::Transient,
                        format!(
                            "the original {instance_id} is {other}; it is started once stopped"
                        ),
                    ));
                }
            }
        }
        let market = if origin {
            Market::Origin
        } else if found.lifecycle.as_deref() == Some("spot") {
            Market::Spot
        } else {
            Market::OnDemand
        };
        Ok(Some(Replacement {
            pool: (market == Market::Spot)
                .then(|| PoolKey::new(region, &found.az_id, &found.instance_type).ok())
                .flatten(),
            instance_id,
            market,
            instance_type: found.instance_type,
            az_name: found.az_name,
            spot_price: None,
            fallbacks,
            skipped: Vec::new(),
            launched_at: Utc::now(),
        }))
    }

    /// The gatekeeper's answer for `pool` now.
    async fn quarantined(&self, pool: &PoolKey) -> Result<Option<String>, spot_domain::AwsError> {
        quarantined(&self.quarantine, pool).await
    }

    /// One launch attempt; a Spot pool without capacity is held for every launch path.
    async fn launch(
        &self,
        ec2: &Ec2,
        order: Order<'_>,
        spot: bool,
        candidate: Option<&Candidate>,
        request: &FailoverRequest,
        failover_id: &str,
    ) -> Result<Launched, spot_domain::AwsError> {
        let launched = match order {
            Order::Instance(spec) => ec2.launch_instance(&spec, spot).await?,
            Order::Group(spec, configuration) => {
                ec2.launch_replacement(&spec, configuration, spot).await?
            }
        };
        if let Some(c) = candidate {
            let ids = (
                request.account_id.as_str(),
                request.region.as_str(),
                request.instance_id.as_str(),
            );
            hold_if_full(
                &self.quarantine,
                &self.config.policy,
                &launched,
                c,
                ids,
                failover_id,
            )
            .await;
        }
        Ok(launched)
    }

    async fn record_shadow(
        &self,
        failover_id: &str,
        request: &FailoverRequest,
        workload: &Workload,
        candidates: &[Candidate],
        hold: Option<&Hold>,
        standby: Option<&Replacement>,
    ) -> Result<(), StepError> {
        let best = candidates.first().filter(|_| hold.is_none());
        let market = match (standby, best) {
            (Some(_), _) => Market::Standby,
            (None, Some(_)) => Market::Spot,
            (None, None) => Market::OnDemand,
        };
        self.ledger
            .record(&FailoverRecord {
                switch_id: failover_id.to_owned(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                workload: Some(workload.id().to_owned()),
                old_instance_id: request.instance_id.clone(),
                new_instance_id: standby.map(|s| s.instance_id.clone()),
                market: Some(market),
                pool: standby
                    .and_then(|s| s.pool.clone())
                    .or_else(|| best.map(|c| c.pool.clone())),
                instance_type: standby
                    .map(|s| s.instance_type.clone())
                    .or_else(|| best.map(|c| c.instance_type.clone())),
                fallbacks: hold
                    .map(|h| Fallback {
                        to: Market::OnDemand,
                        why: h.why.clone(),
                    })
                    .into_iter()
                    .collect(),
                on_demand_until: hold.map(|h| h.until),
                mode: SagaMode::Shadow,
                status: FailoverStatus::Shadow,
                signal: request.signal.detail_type().to_owned(),
                received_at: request.received_at,
                seconds_to_healthy: None,
                downtime_seconds: None,
                error: None,
                cause: None,
                at: Utc::now(),
            })
            .await?;
        Ok(())
    }
}

/// The plan for a replacement of `source` (or a standby beside it): Spot candidates sorted by
/// `order` (the best few kept), never `source`'s own pool nor any of `excluded`, and what
/// on-demand may use.
pub(crate) async fn plan(
    ec2: &Ec2,
    quarantine: &QuarantineTable,
    shipped: &Catalog,
    region: &str,
    source: &SourceInstance,
    excluded: &[PoolKey],
    order: impl FnOnce(&mut Vec<Candidate>),
) -> Result<Plan, StepError> {
    let query = TypeQuery::new(&source.architecture, &[source.vcpus], &[]);
    let (catalog, subnets, user_data) = tokio::try_join!(
        ec2.instance_types(&query),
        ec2.subnets(&source.vpc_id),
        ec2.user_data(&source.instance_id)
    )?;
    let (types, mut exclusions) = market::compatible_types(source, &catalog, &[]);
    let names: Vec<String> = types.iter().map(|t| t.instance_type.clone()).collect();
    let now = Utc::now();
    let pools: Vec<PoolKey> = types
        .iter()
        .flat_map(|t| {
            subnets
                .iter()
                .filter(|s| s.vpc_id == source.vpc_id)
                .filter_map(|s| PoolKey::new(region, &s.az_id, &t.instance_type).ok())
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Prices and the gatekeeper at once: neither needs the other.
    let (prices, held) = tokio::try_join!(
        async {
            match names.is_empty() {
                true => Ok(Vec::new()),
                false => ec2.spot_prices(&names).await,
            }
        },
        gatekeeper::quarantined_among(quarantine, &pools, now)
    )?;
    let (unavailable, mut quarantined) = gatekeeper::split_holds(&held);
    // The signalled pool, whether or not the handler's quarantine is written yet (and never
    // for a LAB account): the instance is being taken from it.
    quarantined.extend(excluded.iter().cloned());
    quarantined.extend(PoolKey::new(region, &source.az_id, &source.instance_type).ok());
    // An emergency is no time to refuse a pool for costing more than on-demand: the price
    // only orders pools of equal likelihood.
    let on_demand_price = shipped
        .on_demand(region, &source.instance_type)
        .unwrap_or(f64::MAX);
    let market = Prices {
        region,
        subnets: &subnets,
        prices: &prices,
        quarantined: &quarantined,
        unavailable: &unavailable,
        catalog: shipped,
        on_demand_price,
    };
    let (mut candidates, more) = market::rank(source, &types, &[], &market);
    exclusions.extend(more);
    order(&mut candidates);
    candidates.truncate(MAX_SPOT_ATTEMPTS);
    exclusions.truncate(20);
    Ok(Plan {
        candidates,
        types: names,
        subnets,
        skipped: exclusions,
        user_data,
    })
}

/// A replica workload's standby, running and ready to serve, if it has one outside the pool the
/// signal names (one taken from that pool too would be no better than none).
async fn ready_standby(
    ec2: &Ec2,
    request: &FailoverRequest,
    workload: &Workload,
    dying: &SourceInstance,
) -> Result<Option<Replacement>, StepError> {
    let signalled = PoolKey::new(&request.region, &dying.az_id, &dying.instance_type).ok();
    for id in crate::standby::standbys(ec2, workload.id(), &[&dying.instance_id]).await? {
        let Some(standby) = ec2.source(&id).await? else {
            continue;
        };
        let pool = PoolKey::new(&request.region, &standby.az_id, &standby.instance_type).ok();
        if standby.state != "running" || pool.is_none() || pool == signalled || pool == request.pool
        {
            continue;
        }
        return Ok(Some(Replacement {
            instance_id: standby.instance_id,
            market: Market::Standby,
            instance_type: standby.instance_type,
            az_name: standby.az_name,
            pool,
            spot_price: None,
            fallbacks: Vec::new(),
            skipped: Vec::new(),
            launched_at: Utc::now(),
        }));
    }
    Ok(None)
}

/// The gatekeeper's answer for `pool` now: why it is passed over, if it is.
pub(crate) async fn quarantined(
    quarantine: &QuarantineTable,
    pool: &PoolKey,
) -> Result<Option<String>, spot_domain::AwsError> {
    Ok(
        match gatekeeper::check(quarantine, pool, Utc::now()).await? {
            Gate::Quarantined(record) => Some(format!(
                "quarantined since planning ({})",
                record.reason.detail_type()
            )),
            Gate::Open => None,
        },
    )
}

/// Holds `candidate`'s pool for every launch path when `launched` says it has no capacity (for
/// the instance `(account, region, instance)` names); a hold not written is only logged.
pub(crate) async fn hold_if_full(
    quarantine: &QuarantineTable,
    policy: &QuarantinePolicy,
    launched: &Launched,
    candidate: &Candidate,
    ids: (&str, &str, &str),
    saga_id: &str,
) {
    let Launched::NoCapacity(why) = launched else {
        return;
    };
    warn!(pool = %candidate.pool, reason = %why, "no capacity");
    let held = gatekeeper::hold_capacity(
        quarantine,
        &candidate.pool,
        format!("capacity:{saga_id}:{}", candidate.pool),
        ids,
        policy,
        Utc::now(),
    )
    .await;
    if let Err(e) = held {
        warn!(pool = %candidate.pool, error = %e, "capacity hold not recorded");
    }
}

/// One launch request.
enum Order<'a> {
    Instance(LaunchSpec),
    Group(GroupLaunchSpec, Option<&'a LaunchConfiguration>),
}

/// How `workload`'s replacement is launched: for a member, its group as it is now (the dying
/// instance must still be in it: once the group let it go, the group replaces it itself).
async fn recipe(
    account: &AccountClients,
    workload: &Workload,
    source: &SourceInstance,
) -> Result<Recipe, StepError> {
    let Some(name) = workload.group() else {
        return Ok(Recipe::Posture);
    };
    let group = account
        .autoscaling
        .group(name)
        .await?
        .ok_or_else(|| StepError::not_eligible(format!("group {name} no longer exists")))?;
    if group.member(&source.instance_id).is_none() {
        return Err(StepError::not_eligible(format!(
            "{} is no longer a member of {name}: the group replaces it",
            source.instance_id
        )));
    }
    let source = group.launch.clone().ok_or_else(|| {
        StepError::new(
            ErrorName::InvalidData,
            format!("group {name} names no launch template or configuration"),
        )
    })?;
    let configuration = match &source {
        LaunchSource::Configuration { name } => Some(Box::new(
            account.autoscaling.launch_configuration(name).await?,
        )),
        LaunchSource::Template { .. } => None,
    };
    Ok(Recipe::Group {
        source,
        configuration,
        subnet_ids: group.subnet_ids,
    })
}

/// The replacement's tags: the dying instance's own (at most 43, so the optimizer's seven fit
/// EC2's 50), its marks, the workload's origin, and the on-demand hold if there is one.
fn replacement_tags(
    source: &SourceInstance,
    workload: &Workload,
    failover_id: &str,
    hold: Option<&Hold>,
) -> Vec<(String, String)> {
    let mut inherited = tags::inherited(&source.tags);
    inherited.truncate(43);
    let mut tags = tags::launched(
        inherited,
        VIA_FAILOVER,
        &source.instance_id,
        FAILOVER_TAG,
        failover_id,
    );
    if let Some(origin) = workload.origin() {
        tags.push((ORIGIN_TAG.to_owned(), origin.to_owned()));
    }
    if let Some(h) = hold {
        tags.push((ON_DEMAND_UNTIL_TAG.to_owned(), h.until.to_rfc3339()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use spot_domain::testing::source_instance;

    #[test]
    fn a_replacement_carries_the_workload_and_fits_ec2s_tag_limit() {
        let mut source = source_instance();
        source.tags = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let workload = Workload::Switched {
            origin: "i-0aaaaaaaaaaaaaaaa".into(),
        };
        let hold = spot_domain::saga::failover::Hold {
            until: "2026-12-10T00:00:00Z".parse().unwrap(),
            why: "twice".into(),
        };
        let tags = replacement_tags(&source, &workload, "failover-1", Some(&hold));
        assert_eq!(tags.len(), 50);
        let map: spot_domain::tags::Tags = tags.into_iter().collect();
        assert_eq!(
            failover::workload(&map),
            Some(workload),
            "a replacement can fail over again"
        );
        assert_eq!(map[FAILOVER_TAG], "failover-1");
        assert_eq!(map[ON_DEMAND_UNTIL_TAG], "2026-12-10T00:00:00+00:00");
    }

    #[test]
    fn tokens_differ_per_attempt_and_fit_ec2s_limit() {
        let all = tokens(&"f".repeat(80));
        assert_eq!(
            all.len(),
            MAX_SPOT_ATTEMPTS + failover::MAX_ON_DEMAND_ATTEMPTS
        );
        assert!(all.iter().all(|t| t.len() <= 64));
        assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len());
    }
}
