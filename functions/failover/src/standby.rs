//! Standby-replica mode: a workload tagged `spot-optimizer:replica=standby` keeps one warm Spot
//! standby in another pool than its primary (another AZ first), booted from the primary's image
//! with its posture, so the warning's promotion only moves the address and the target groups.
//!
//! This step keeps that standby: after a promotion (the standby became the primary: a new one is
//! launched), when the standby itself is taken (a new one, then the taken one retired), and when
//! the router asks (the first standby, or one lost to anything but a signal). It launches only
//! when the workload has no standby in another pool than its primary; a retried step finds what
//! an earlier attempt launched by its client tokens, and standbys beyond one are retired, so the
//! ledger never holds two REPLICA roles for a workload. Retiring is terminating, and only what
//! carries the standby role the optimizer gave it (IAM says the same).

use chrono::Utc;
use serde_json::json;
use spot_aws::{Ec2, LedgerTable, QuarantineTable, Reach};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::instance::{LaunchSpec, SourceInstance};
use spot_domain::market::{self, Catalog};
use spot_domain::saga::failover::{
    self, Role, RoleRecord, StandbyInput, StandbyKept, StandbyRequest,
};
use spot_domain::saga::launch::first_open_pool;
use spot_domain::saga::{SagaMode, StepError};
use spot_domain::tags::{self, FAILOVER_TAG, ORIGIN_TAG, ROLE_STANDBY, ROLE_TAG, VIA_FAILOVER};
use spot_domain::{ErrorName, PoolKey, QuarantinePolicy, metrics};
use tracing::{info, instrument, warn};

use crate::launch;

/// Spot pools tried for a standby: no hurry, but each refusal is a call.
const MAX_STANDBY_ATTEMPTS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub quarantine_table: String,
    pub ledger_table: String,
    /// The sagas' live switch (`MODE`, `LIVE_ACCOUNTS`).
    pub live: LiveSwitch,
    /// `capacity`: how long a pool without capacity is passed over.
    pub policy: QuarantinePolicy,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            quarantine_table: env.required(key::QUARANTINE_TABLE)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            live: config::live_switch(env, env.parsed(key::MODE, SagaMode::Shadow)?.as_mode())?,
            policy: QuarantinePolicy::for_launches(env)?,
        })
    }
}

pub struct Keeper {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub quarantine: QuarantineTable,
    pub ledger: LedgerTable,
    pub catalog: &'static Catalog,
    pub config: Config,
}

/// The idempotency token of standby launch attempt `attempt` of `execution` (never one the
/// launch step uses).
pub fn client_token(execution: &str, attempt: usize) -> String {
    spot_domain::saga::step::client_token(execution, &["standby", &attempt.to_string()])
}

/// The standbys of `workload` that are not terminated or stopping, except `excluded`.
pub(crate) async fn standbys(
    ec2: &Ec2,
    workload: &str,
    excluded: &[&str],
) -> Result<Vec<String>, StepError> {
    Ok(ec2
        .marked(ORIGIN_TAG, workload)
        .await?
        .into_iter()
        .filter(|(id, tags, state)| {
            tags::is_standby(tags)
                && matches!(state.as_str(), "pending" | "running")
                && !excluded.contains(&id.as_str())
        })
        .map(|(id, _, _)| id)
        .collect())
}

impl Keeper {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Failover, "failover-standby").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            quarantine: QuarantineTable::new(dynamodb.clone(), &config.quarantine_table),
            ledger: LedgerTable::new(dynamodb, &config.ledger_table),
            catalog: Catalog::shipped(),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "failover-standby", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "failover-standby", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.request.account_id, region = %input.request.region,
        target = %input.request.primary))]
    pub async fn handle(&self, input: StandbyInput) -> Result<StandbyKept, StepError> {
        let request = &input.request;
        request.validate()?;
        let execution = &input.execution;
        let mode = request
            .mode
            .unwrap_or(SagaMode::Live)
            .gated(&self.config.live, &request.account_id);
        if mode == SagaMode::Live {
            self.guard.check(&request.account_id).await?;
        }
        let kept = |standby: Option<String>, launched, pool, note: String| StandbyKept {
            mode,
            standby,
            launched,
            pool,
            planned: Vec::new(),
            retired: Vec::new(),
            note,
        };
        let account = self
            .reach
            .account(&request.account_id, &request.region, execution)
            .await?;
        let ec2 = &account.ec2;
        let primary = match ec2.source(&request.primary).await? {
            Some(p) if matches!(p.state.as_str(), "pending" | "running") => p,
            other => {
                let state = other.map_or("gone".to_owned(), |p| p.state);
                return Ok(kept(
                    None,
                    false,
                    None,
                    format!(
                        "primary {} is {state}: nothing to stand by",
                        request.primary
                    ),
                ));
            }
        };
        let workload = failover::workload(&primary.tags)
            .filter(|w| w.origin().is_some() && tags::replica_mode(&primary.tags))
            .ok_or_else(|| {
                StepError::not_eligible(format!(
                    "{} is no standalone workload the optimizer put on Spot with {}={}",
                    primary.instance_id,
                    tags::REPLICA_TAG,
                    tags::REPLICA_STANDBY
                ))
            })?;
        let primary_pool = PoolKey::new(&request.region, &primary.az_id, &primary.instance_type)
            .map_err(|e| StepError::new(ErrorName::InvalidData, e.to_string()))?;
        let ids = (request.account_id.as_str(), request.region.as_str());
        let now = Utc::now();

        // What stands by now (and what an earlier attempt launched, by its tokens).
        let tokens: Vec<String> = (0..MAX_STANDBY_ATTEMPTS)
            .map(|i| client_token(execution, i))
            .collect();
        let excluded = request.excluded();
        let (mut found, earlier) =
            tokio::try_join!(standbys(ec2, workload.id(), &excluded), async {
                Ok(ec2.launched_with(&tokens).await?)
            })?;
        // A standby an earlier attempt of this execution launched counts as launched here.
        let ours: Vec<String> = earlier.into_iter().map(|e| e.instance_id).collect();
        for id in &ours {
            if !found.contains(id) {
                found.push(id.clone());
            }
        }
        let mut keep = None;
        let mut extra: Vec<String> = Vec::new();
        for id in found {
            let pool = match ec2.source(&id).await? {
                Some(s) => PoolKey::new(&request.region, &s.az_id, &s.instance_type).ok(),
                None => continue,
            };
            if keep.is_none() && pool.as_ref() != Some(&primary_pool) {
                keep = Some((id, pool));
            } else {
                extra.push(id);
            }
        }
        let retiring: Vec<String> = request.lost.iter().cloned().chain(extra).collect();

        if mode == SagaMode::Shadow {
            let mut planned = Vec::new();
            if keep.is_none() {
                let plan = launch::plan(
                    ec2,
                    &self.quarantine,
                    self.catalog,
                    &request.region,
                    &primary,
                    &[],
                    |c| failover::standby_order(c, &primary_pool),
                )
                .await?;
                planned = plan.candidates.into_iter().map(|c| c.pool).collect();
            }
            info!(
                planned = planned.len(),
                "shadow: a standby planned, nothing launched"
            );
            let (standby, pool) = keep.unzip();
            return Ok(StandbyKept {
                planned,
                ..kept(
                    standby,
                    false,
                    pool.flatten(),
                    "shadow: nothing launched or retired".into(),
                )
            });
        }

        let (standby, pool, launched) = match keep {
            Some((id, pool)) => {
                let launched = ours.contains(&id);
                (id, pool, launched)
            }
            None => match self
                .launch(ec2, request, &primary, workload.id(), execution)
                .await
            {
                Ok((id, pool)) => (id, Some(pool), true),
                Err(e) => {
                    // A taken standby is retired all the same: no role left on what is going.
                    for id in &retiring {
                        self.retire(ec2, ids, workload.id(), id, execution).await?;
                    }
                    return Err(e);
                }
            },
        };
        // The roles: the lost and the extra ones go first, so the ledger never holds two
        // standbys; then the standby and the primary it stands by.
        let mut retired = Vec::new();
        for id in &retiring {
            if self.retire(ec2, ids, workload.id(), id, execution).await? {
                retired.push(id.clone());
            }
        }
        self.ledger
            .record(&RoleRecord::of(
                ids,
                workload.id(),
                &standby,
                Role::Replica,
                execution,
                now,
            ))
            .await?;
        self.ledger
            .record(&RoleRecord::of(
                ids,
                workload.id(),
                &primary.instance_id,
                Role::Primary,
                execution,
                now,
            ))
            .await?;
        if launched {
            println!(
                "{}",
                metrics::count(
                    metrics::name::STANDBY_LAUNCHED,
                    1,
                    &[],
                    &[
                        ("execution", json!(execution)),
                        ("primary", json!(primary.instance_id)),
                        ("standby", json!(standby)),
                    ],
                    now,
                )
            );
        }
        let note = match launched {
            true => format!("standby {standby} launched beside {}", primary.instance_id),
            false => format!(
                "standby {standby} already stands by {}",
                primary.instance_id
            ),
        };
        info!(standby = %standby, launched, retired = retired.len(), "standby kept");
        Ok(StandbyKept {
            retired,
            ..kept(Some(standby), launched, pool, note)
        })
    }

    /// Launches a standby for `primary` on Spot, in the best pool other than the primary's and
    /// the `lost` standby's.
    async fn launch(
        &self,
        ec2: &Ec2,
        request: &StandbyRequest,
        primary: &SourceInstance,
        workload: &str,
        execution: &str,
    ) -> Result<(String, PoolKey), StepError> {
        let region = &request.region;
        let lost_pool = match &request.lost {
            Some(id) => ec2
                .source(id)
                .await?
                .and_then(|s| PoolKey::new(region, &s.az_id, &s.instance_type).ok()),
            None => None,
        };
        let primary_pool = PoolKey::new(region, &primary.az_id, &primary.instance_type)
            .map_err(|e| StepError::new(ErrorName::InvalidData, e.to_string()))?;
        let plan = launch::plan(
            ec2,
            &self.quarantine,
            self.catalog,
            region,
            primary,
            lost_pool.as_slice(),
            |c| failover::standby_order(c, &primary_pool),
        )
        .await?;
        let mut candidates = plan.candidates;
        candidates.truncate(MAX_STANDBY_ATTEMPTS);
        let image_id = primary.image_id.clone().ok_or_else(|| {
            StepError::new(
                ErrorName::InvalidData,
                format!(
                    "{} names no image to boot a standby from",
                    primary.instance_id
                ),
            )
        })?;
        let tags = standby_tags(primary, workload, execution);
        let ids = (
            request.account_id.as_str(),
            region.as_str(),
            primary.instance_id.as_str(),
        );
        let taken = first_open_pool(
            &candidates,
            |c| launch::quarantined(&self.quarantine, &c.pool),
            |index, c| {
                let spec = LaunchSpec::with_posture_of(
                    primary,
                    &image_id,
                    &c.instance_type,
                    &c.subnet_id,
                    plan.user_data.clone(),
                    tags.clone(),
                    client_token(execution, index),
                );
                async move {
                    let launched = ec2.launch_instance(&spec, true).await?;
                    launch::hold_if_full(
                        &self.quarantine,
                        &self.config.policy,
                        &launched,
                        c,
                        ids,
                        execution,
                    )
                    .await;
                    Ok(launched)
                }
            },
        )
        .await?;
        match taken {
            Ok(t) => {
                let pool = candidates[t.index].pool.clone();
                info!(standby = %t.instance_id, pool = %pool, "standby launched");
                Ok((t.instance_id, pool))
            }
            Err(refused) => {
                let mut why = refused;
                why.extend(plan.skipped);
                Err(StepError::new(
                    ErrorName::InsufficientCapacity,
                    format!(
                        "no Spot pool took a standby for {}: {}",
                        primary.instance_id,
                        if why.is_empty() {
                            "no other pool to try".to_owned()
                        } else {
                            market::explain(&why, 5)
                        }
                    ),
                ))
            }
        }
    }

    /// Retires a standby that is no longer wanted (taken by a signal, or one too many): its
    /// role becomes ZOMBIE, then it is terminated, only if it carries the standby role and this
    /// workload. `false`: left alone (not ours, or already gone).
    async fn retire(
        &self,
        ec2: &Ec2,
        ids: (&str, &str),
        workload: &str,
        id: &str,
        execution: &str,
    ) -> Result<bool, StepError> {
        let marks = ec2.tags(id).await?;
        if !tags::is_standby(&marks) || marks.get(ORIGIN_TAG).map(String::as_str) != Some(workload)
        {
            warn!(id, "not this workload's standby: left alone");
            return Ok(false);
        }
        let now = Utc::now();
        self.ledger
            .record(&RoleRecord::of(ids, workload, id, Role::Replica, execution, now).retired(now))
            .await?;
        if matches!(
            ec2.state(id).await?.as_deref(),
            Some("pending" | "running" | "stopped")
        ) {
            ec2.terminate(id).await?;
            info!(id, "standby retired");
        }
        Ok(true)
    }
}

/// A standby's tags: the primary's own (the replica opt-in among them), the optimizer's marks
/// (this execution's, so the promotion may later move an address onto it), the workload's
/// origin, and its role.
fn standby_tags(
    primary: &SourceInstance,
    workload: &str,
    execution: &str,
) -> Vec<(String, String)> {
    let mut inherited = tags::inherited(&primary.tags);
    inherited.truncate(43);
    let mut tags = tags::launched(
        inherited,
        VIA_FAILOVER,
        &primary.instance_id,
        FAILOVER_TAG,
        execution,
    );
    tags.push((ORIGIN_TAG.to_owned(), workload.to_owned()));
    tags.push((ROLE_TAG.to_owned(), ROLE_STANDBY.to_owned()));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use spot_domain::testing::source_instance;

    #[test]
    fn a_standby_is_the_workloads_own_and_says_it_stands_by() {
        let mut primary = source_instance();
        primary.tags = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        primary
            .tags
            .insert(tags::REPLICA_TAG.into(), tags::REPLICA_STANDBY.into());
        let all = standby_tags(&primary, "i-0aaaaaaaaaaaaaaaa", "failover-1");
        assert_eq!(all.len(), 50, "EC2's limit");
        let map: tags::Tags = all.into_iter().collect();
        assert!(tags::is_standby(&map));
        assert!(
            tags::replica_mode(&map),
            "the opt-in survives the truncation"
        );
        assert_eq!(
            failover::workload(&map)
                .map(|w| w.id().to_owned())
                .as_deref(),
            Some("i-0aaaaaaaaaaaaaaaa"),
            "a standby taken is a managed instance: its signal starts a failover"
        );
        assert_eq!(map[tags::SOURCE_TAG], primary.instance_id);
    }

    #[test]
    fn standby_tokens_never_collide_with_the_launch_steps() {
        let standby: Vec<String> = (0..MAX_STANDBY_ATTEMPTS)
            .map(|i| client_token("failover-1", i))
            .collect();
        for i in 0..16 {
            assert!(!standby.contains(&launch::client_token("failover-1", i)));
        }
        assert!(standby.iter().all(|t| t.len() <= 64));
    }
}
