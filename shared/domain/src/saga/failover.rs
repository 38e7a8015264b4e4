//! Emergency failover: an instance the optimizer put on Spot never dies without a replacement.
//!
//! The interruption handler starts the saga (`statemachines/emergency-failover.asl.json`) for a
//! managed instance ([`workload`]) under a name derived from the instance ([`execution_name`]), so
//! a redelivered warning, or the warning that follows a rebalance recommendation, finds the
//! failover already started. Its steps (`functions/failover`) launch a replacement in the fastest
//! allowed pool ([`failover_order`]), fall back to on-demand ([`on_demand_pools`]) and then to the
//! workload's stopped original, keep the dying instance's volumes, wait for 2/2 checks and promote
//! the replacement (address, target groups, roles in the ledger).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::SignalKind;
use crate::error::ErrorName;
use crate::ids::Field;
use crate::instance::{ElasticIp, SourceInstance};
use crate::market::{Candidate, Exclusion, SubnetInfo};
use crate::pool::PoolKey;
use crate::saga::step::{CaughtError, Progress, SagaMode, Settings, SettingsRequest, StepError};
use crate::tags::{
    self, CREATED_VIA, ORIGIN_TAG, SOURCE_TAG, Tags, VIA_FAILOVER, VIA_SWAP, VIA_SWITCH,
};

/// Every failover execution's name starts with this.
pub const EXECUTION_PREFIX: &str = "failover-";

/// How long the ledger keeps an interrupted instance's ZOMBIE role (audit), and how long its kept
/// volumes stay before the waste scanner may flag them (`PRESERVED_RETENTION_DAYS`).
pub const ZOMBIE_RETENTION: TimeDelta = TimeDelta::days(30);
pub const DEFAULT_PRESERVED_RETENTION_DAYS: i64 = 30;

/// At most this many on-demand launches are tried before the last fallback: each refusal costs a
/// second or two of the two minutes.
pub const MAX_ON_DEMAND_ATTEMPTS: usize = 4;

/// The execution name for a failover of `instance_id` in `account`: the same for every signal
/// about that instance, so a repeated or redelivered warning, or a warning after a rebalance
/// recommendation, starts nothing new (Step Functions keeps names unique for 90 days).
pub fn execution_name(account: &str, instance_id: &str) -> String {
    format!("{EXECUTION_PREFIX}{account}-{instance_id}")
}

/// What a managed instance serves: the workload its replacement must keep running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// A standalone instance the atomic switch moved to Spot; `origin` is the on-demand original,
    /// stopped by the switch and kept: the last fallback.
    Switched { origin: String },
    /// A Spot member of an Auto Scaling group (put there by the ASG swap, or by a failover of
    /// one): its replacement is launched from the group's own launch template or configuration,
    /// attached before the member is detached, so the group's capacity never dips.
    Member { group: String },
}

impl Workload {
    /// The workload's stable id: its original instance, or its group.
    pub fn id(&self) -> &str {
        match self {
            Self::Switched { origin } => origin,
            Self::Member { group } => group,
        }
    }

    /// The switched workload's original instance; `None` for a group member.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Self::Switched { origin } => Some(origin),
            Self::Member { .. } => None,
        }
    }

    /// The group of a member; `None` for a switched workload.
    pub fn group(&self) -> Option<&str> {
        match self {
            Self::Switched { .. } => None,
            Self::Member { group } => Some(group),
        }
    }
}

/// The workload an instance serves, if the optimizer put it on Spot: a switch's clone, a swap's
/// replacement still in its group, or a replacement a failover launched for either. `None` for
/// anything else (which the handler only quarantines).
pub fn workload(tags: &Tags) -> Option<Workload> {
    if !tags::is_managed(tags) {
        return None;
    }
    let via = tags.get(CREATED_VIA).map(String::as_str);
    // EC2 Auto Scaling tags its members with their group's name.
    if let Some(group) = tags.get(tags::GROUP_TAG)
        && matches!(via, Some(VIA_SWAP | VIA_FAILOVER))
        && !tags.contains_key(ORIGIN_TAG)
    {
        return valid_group_name(group).then(|| Workload::Member {
            group: group.clone(),
        });
    }
    let origin = match via {
        Some(VIA_SWITCH) => tags.get(SOURCE_TAG)?,
        Some(VIA_FAILOVER) => tags.get(ORIGIN_TAG)?,
        _ => return None,
    };
    if !Field::InstanceId.accepts(origin) {
        return None;
    }
    Some(Workload::Switched {
        origin: origin.clone(),
    })
}

/// An Auto Scaling group name as AWS allows it: 1-255 characters, none of them a control
/// character.
fn valid_group_name(name: &str) -> bool {
    (1..=255).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// What a rebalance recommendation for a managed instance does (`REBALANCE_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum RebalanceAction {
    /// Fail over now, while the instance still runs; retire it once its replacement is healthy.
    #[default]
    Replace,
    /// Only quarantine the pool; the failover starts at the interruption warning.
    Quarantine,
}

/// The saga's input, as the interruption handler starts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    pub account_id: String,
    pub region: String,
    /// The instance the signal names.
    pub instance_id: String,
    #[serde(with = "signal_kind_serde")]
    pub signal: SignalKind,
    /// The EventBridge event that started it.
    pub event_id: String,
    /// When the handler received the signal: the failover's clock starts here.
    pub received_at: DateTime<Utc>,
    /// The signalled pool (quarantined by the handler unless the account is LAB): never a
    /// candidate.
    pub pool: Option<PoolKey>,
    /// A request may lower the mode, never raise it; none: the stack's.
    #[serde(default)]
    pub mode: Option<SagaMode>,
    /// Pacing (tests use one-second waits).
    #[serde(default)]
    pub settings: Option<SettingsRequest>,
}

impl FailoverRequest {
    pub fn validate(&self) -> Result<(), StepError> {
        Field::AccountId
            .check(&self.account_id)
            .and_then(|()| Field::Region.check(&self.region))
            .and_then(|()| Field::InstanceId.check(&self.instance_id))
            .map_err(|e| StepError::invalid(e.to_string()))?;
        if self.signal == SignalKind::CapacityShortage {
            return Err(StepError::invalid(
                "a capacity shortage is no signal to fail over on",
            ));
        }
        Ok(())
    }

    /// Whether the instance still runs after the failover (a rebalance recommendation): the
    /// failover retires it once the replacement is promoted.
    pub fn retires_the_old(&self) -> bool {
        self.signal == SignalKind::RebalanceRecommendation
    }
}

/// Where a replacement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Market {
    Spot,
    OnDemand,
    /// The workload's original on-demand instance, started again.
    Origin,
    /// The replica workload's warm standby (Spot, in another pool), promoted.
    Standby,
}

/// A fallback taken, and why the better option was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub to: Market,
    pub why: String,
}

/// The dying instance, as the promotion and the rollback need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dying {
    pub instance_id: String,
    pub instance_type: String,
    pub az_id: String,
    pub elastic_ip: Option<ElasticIp>,
    /// Its EBS volumes (device, volume id): kept at the warning.
    pub volumes: Vec<(String, String)>,
}

impl Dying {
    pub fn of(source: &SourceInstance) -> Self {
        Self {
            instance_id: source.instance_id.clone(),
            instance_type: source.instance_type.clone(),
            az_id: source.az_id.clone(),
            elastic_ip: source.elastic_ip.clone(),
            volumes: source
                .block_devices
                .iter()
                .map(|b| (b.device_name.clone(), b.volume_id.clone()))
                .collect(),
        }
    }
}

/// The replacement the launch step obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replacement {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub az_name: String,
    pub pool: Option<PoolKey>,
    /// Spot price at planning (Spot only), USD per hour.
    pub spot_price: Option<f64>,
    /// The fallbacks taken to get here, each with why.
    pub fallbacks: Vec<Fallback>,
    /// Spot pools passed over, with why.
    pub skipped: Vec<Exclusion>,
    /// When its launch (or start) call was answered.
    pub launched_at: DateTime<Utc>,
}

/// The launch step's result: what the saga works on from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchStep {
    pub mode: SagaMode,
    pub settings: Settings,
    pub workload: Workload,
    pub dying: Dying,
    /// None in shadow mode: the plan is recorded, nothing launched.
    pub replacement: Option<Replacement>,
    /// Shadow mode: the pools a live failover would try, best first.
    #[serde(default)]
    pub planned: Vec<PoolKey>,
    /// The on-demand hold this failover started (hysteresis), if any.
    #[serde(default)]
    pub hold: Option<Hold>,
    /// The workload is in standby-replica mode: once promoted, a new standby is launched.
    #[serde(default)]
    pub replica: bool,
    /// The signalled instance is a replica workload's standby: this primary's standby is
    /// replaced, nothing is promoted. Absent otherwise (the state machine tests its presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_of: Option<String>,
}

/// The state the failover's steps pass along.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverState {
    pub request: FailoverRequest,
    #[serde(default)]
    pub launch: Option<LaunchStep>,
    #[serde(default)]
    pub preserve: Option<Preserved>,
    #[serde(default)]
    pub health: Option<Progress>,
    #[serde(default)]
    pub promote: Option<Promoted>,
    #[serde(default)]
    pub error: Option<CaughtError>,
    #[serde(default)]
    pub rollback: Option<serde_json::Value>,
}

impl FailoverState {
    pub fn launch(&self, step: &str) -> Result<&LaunchStep, StepError> {
        self.launch
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "launch"))
    }

    /// The replacement, which every step after a live launch needs.
    pub fn replacement(&self, step: &str) -> Result<&Replacement, StepError> {
        self.launch(step)?
            .replacement
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "launch.replacement"))
    }
}

/// A step's payload: the state and the execution it acts for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverInput {
    pub state: FailoverState,
    pub execution: String,
}

/// What the preserve step kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserved {
    /// Volumes now kept past the instance's termination, and tagged.
    pub volumes: Vec<String>,
    /// Why nothing could be kept, if so (the instance was already gone).
    pub note: Option<String>,
}

/// What the promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promoted {
    pub address_moved: bool,
    pub target_groups: Vec<String>,
    /// Seconds from the handler's receipt of the signal to the replacement passing its checks.
    pub seconds_to_healthy: i64,
    /// The old instance was retired (a rebalance recommendation: it still ran).
    pub retired_old: bool,
}

/// Sorts Spot candidates for an emergency: the dying instance's AZ first (its subnet, and its
/// volumes if they are to be reattached), then the likeliest capacity (advisor band), then price.
/// A few cents an hour matter less than a launch that succeeds at the first try.
pub fn failover_order(candidates: &mut [Candidate], dying_az_id: &str) {
    candidates.sort_by(|a, b| {
        (a.pool.az_id() != dying_az_id)
            .cmp(&(b.pool.az_id() != dying_az_id))
            .then(a.interruption_band.cmp(&b.interruption_band))
            .then(a.spot_price.total_cmp(&b.spot_price))
            .then(a.pool.cmp(&b.pool))
    });
}

/// One on-demand launch to try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemandPool {
    pub instance_type: String,
    pub az_name: String,
    pub subnet_id: String,
}

/// The on-demand launches to try when no Spot pool took the replacement, best first: the dying
/// instance's own type before other compatible ones, its own subnet (then AZ) before others; at
/// most [`MAX_ON_DEMAND_ATTEMPTS`].
pub fn on_demand_pools(
    source: &SourceInstance,
    types: &[String],
    subnets: &[SubnetInfo],
) -> Vec<OnDemandPool> {
    let mut ordered_types: Vec<&String> = types.iter().collect();
    ordered_types.sort_by_key(|t| **t != source.instance_type);
    if !types.contains(&source.instance_type) {
        ordered_types.insert(0, &source.instance_type);
    }
    let mut ordered_subnets: Vec<&SubnetInfo> = subnets
        .iter()
        .filter(|s| s.vpc_id == source.vpc_id)
        .collect();
    ordered_subnets.sort_by_key(|s| {
        (
            s.subnet_id != source.subnet_id,
            s.az_id != source.az_id,
            std::cmp::Reverse(s.available_ips),
        )
    });
    if !ordered_subnets
        .iter()
        .any(|s| s.subnet_id == source.subnet_id)
    {
        // The dying instance's subnet is always a choice, described or not.
        let own = SubnetInfo {
            subnet_id: source.subnet_id.clone(),
            az_name: source.az_name.clone(),
            az_id: source.az_id.clone(),
            vpc_id: source.vpc_id.clone(),
            available_ips: 0,
        };
        let mut pools = vec![OnDemandPool {
            instance_type: source.instance_type.clone(),
            az_name: own.az_name.clone(),
            subnet_id: own.subnet_id.clone(),
        }];
        pools.extend(pairs(&ordered_types, &ordered_subnets));
        pools.dedup();
        pools.truncate(MAX_ON_DEMAND_ATTEMPTS);
        return pools;
    }
    let mut pools = pairs(&ordered_types, &ordered_subnets);
    pools.truncate(MAX_ON_DEMAND_ATTEMPTS);
    pools
}

/// Types across one subnet per AZ, AZ by AZ (the best AZ's every type first).
fn pairs(types: &[&String], subnets: &[&SubnetInfo]) -> Vec<OnDemandPool> {
    let mut seen_azs = Vec::new();
    let mut pools = Vec::new();
    for s in subnets {
        if seen_azs.contains(&&s.az_id) {
            continue;
        }
        seen_azs.push(&s.az_id);
        for t in types {
            pools.push(OnDemandPool {
                instance_type: (*t).clone(),
                az_name: s.az_name.clone(),
                subnet_id: s.subnet_id.clone(),
            });
        }
    }
    pools
}

/// The role of an instance in its workload, as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Serves the workload; exactly one per workload.
    Primary,
    /// A replica workload's warm standby, in another pool; at most one per workload.
    Replica,
    /// Interrupted and replaced; kept for audit for [`ZOMBIE_RETENTION`].
    Zombie,
}

/// One instance's role, keyed `role#<account>#<region>#<instance>` in the ledger table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// The ledger's key.
    pub switch_id: String,
    pub account_id: String,
    pub region: String,
    pub workload: String,
    pub instance_id: String,
    pub role: Role,
    /// The failover that gave it this role.
    pub failover: String,
    pub since: DateTime<Utc>,
    /// A zombie's (expected) termination time.
    pub terminated_at: Option<DateTime<Utc>>,
    /// DynamoDB's expiry (epoch seconds): a zombie's record goes after [`ZOMBIE_RETENTION`].
    pub ttl: Option<i64>,
}

impl RoleRecord {
    pub fn key(account: &str, region: &str, instance_id: &str) -> String {
        format!("role#{account}#{region}#{instance_id}")
    }

    pub fn primary(
        request: &FailoverRequest,
        workload: &Workload,
        instance_id: &str,
        failover: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self::of(
            (&request.account_id, &request.region),
            workload.id(),
            instance_id,
            Role::Primary,
            failover,
            now,
        )
    }

    /// `instance`'s role in `workload` of (account, region), given by `failover` at `now`; a
    /// zombie's times are set by [`RoleRecord::zombie`].
    pub fn of(
        (account, region): (&str, &str),
        workload: &str,
        instance_id: &str,
        role: Role,
        failover: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            switch_id: Self::key(account, region, instance_id),
            account_id: account.to_owned(),
            region: region.to_owned(),
            workload: workload.to_owned(),
            instance_id: instance_id.to_owned(),
            role,
            failover: failover.to_owned(),
            since: now,
            terminated_at: None,
            ttl: None,
        }
    }

    /// With the role of an instance that went (or goes) at `terminated_at`.
    pub fn retired(mut self, terminated_at: DateTime<Utc>) -> Self {
        self.role = Role::Zombie;
        self.terminated_at = Some(terminated_at);
        self.ttl = Some((terminated_at + ZOMBIE_RETENTION).timestamp());
        self
    }

    /// The interrupted instance: terminated at `terminated_at` (the warning's two minutes, or the
    /// retirement), forgotten [`ZOMBIE_RETENTION`] later.
    pub fn zombie(
        request: &FailoverRequest,
        workload: &Workload,
        failover: &str,
        terminated_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        Self::primary(request, workload, &request.instance_id, failover, now).retired(terminated_at)
    }
}

/// What is wrong with a workload's roles, if anything: exactly one PRIMARY, at most one REPLICA,
/// and no instance in two roles. `records` are one workload's.
pub fn role_violations(records: &[RoleRecord]) -> Vec<String> {
    let count = |role: Role| records.iter().filter(|r| r.role == role).count();
    let mut wrong = Vec::new();
    match count(Role::Primary) {
        1 => {}
        n => wrong.push(format!("{n} PRIMARY instances (exactly one serves)")),
    }
    if count(Role::Replica) > 1 {
        wrong.push(format!(
            "{} REPLICA instances (at most one standby)",
            count(Role::Replica)
        ));
    }
    let mut ids: Vec<&str> = records.iter().map(|r| r.instance_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        wrong.push("an instance holds two roles".to_owned());
    }
    wrong
}

/// Sorts Spot candidates for a standby: never the primary's pool, another AZ than the primary's
/// first (one AZ's reclaim should not take both), then the likeliest capacity, then price.
pub fn standby_order(candidates: &mut Vec<Candidate>, primary: &PoolKey) {
    candidates.retain(|c| c.pool != *primary);
    candidates.sort_by(|a, b| {
        (a.pool.az_id() == primary.az_id())
            .cmp(&(b.pool.az_id() == primary.az_id()))
            .then(a.interruption_band.cmp(&b.interruption_band))
            .then(a.spot_price.total_cmp(&b.spot_price))
            .then(a.pool.cmp(&b.pool))
    });
}

/// Asks the standby step to keep one warm standby for `primary`: after a promotion (`replaced`:
/// the instance it replaced), when the standby itself is taken (`lost`), or from the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyRequest {
    pub account_id: String,
    pub region: String,
    /// The instance that serves the workload now.
    pub primary: String,
    /// The former primary a promotion just replaced: never a standby.
    #[serde(default)]
    pub replaced: Option<String>,
    /// The standby a signal named: replaced, then retired.
    #[serde(default)]
    pub lost: Option<String>,
    /// A request may lower the mode, never raise it; none: the stack's.
    #[serde(default)]
    pub mode: Option<SagaMode>,
}

impl StandbyRequest {
    pub fn validate(&self) -> Result<(), StepError> {
        Field::AccountId
            .check(&self.account_id)
            .and_then(|()| Field::Region.check(&self.region))
            .and_then(|()| Field::InstanceId.check(&self.primary))
            .and_then(|()| {
                [&self.replaced, &self.lost]
                    .into_iter()
                    .flatten()
                    .try_for_each(|id| Field::InstanceId.check(id))
            })
            .map_err(|e| StepError::invalid(e.to_string()))
    }

    /// Instances that are never the standby: the primary, the one it replaced, the lost one.
    pub fn excluded(&self) -> Vec<&str> {
        [
            Some(&self.primary),
            self.replaced.as_ref(),
            self.lost.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

/// The standby step's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyInput {
    pub request: StandbyRequest,
    pub execution: String,
}

/// What the standby step left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyKept {
    pub mode: SagaMode,
    /// The workload's standby now (shadow: the one it has, if any).
    pub standby: Option<String>,
    /// Whether this step launched it.
    pub launched: bool,
    pub pool: Option<PoolKey>,
    /// Shadow mode: the pools a live step would try, best first.
    #[serde(default)]
    pub planned: Vec<PoolKey>,
    /// Standbys retired (the lost one, any beyond one).
    #[serde(default)]
    pub retired: Vec<String>,
    pub note: String,
}

/// When AWS takes an instance after an interruption warning.
pub const WARNING_NOTICE: TimeDelta = TimeDelta::minutes(2);

/// How a failover ended, as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum FailoverStatus {
    /// Shadow mode: what a live failover would have done.
    Shadow,
    /// The replacement passed its checks and was promoted.
    Promoted,
    /// No replacement was promoted; the cause says why.
    Failed,
}

/// One failover, keyed by its execution name in the ledger table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// The execution name (the ledger's key).
    pub switch_id: String,
    pub account_id: String,
    pub region: String,
    pub workload: Option<String>,
    pub old_instance_id: String,
    pub new_instance_id: Option<String>,
    pub market: Option<Market>,
    pub pool: Option<PoolKey>,
    pub instance_type: Option<String>,
    pub fallbacks: Vec<Fallback>,
    /// The on-demand hold this failover started (hysteresis), if any.
    #[serde(default)]
    pub on_demand_until: Option<DateTime<Utc>>,
    pub mode: SagaMode,
    pub status: FailoverStatus,
    pub signal: String,
    pub received_at: DateTime<Utc>,
    /// Seconds from the signal's receipt to the replacement's checks passing.
    pub seconds_to_healthy: Option<i64>,
    /// Seconds the workload had no running instance: from the old instance's termination (the
    /// warning's two minutes) to the replacement's health, if the replacement came later.
    pub downtime_seconds: Option<i64>,
    pub error: Option<ErrorName>,
    pub cause: Option<String>,
    pub at: DateTime<Utc>,
}

/// Seconds without a running instance: a replacement healthy before the old one goes costs none.
pub fn downtime_seconds(request: &FailoverRequest, healthy_at: DateTime<Utc>) -> i64 {
    if request.signal != SignalKind::InterruptionWarning {
        return 0;
    }
    (healthy_at - (request.received_at + WARNING_NOTICE))
        .num_seconds()
        .max(0)
}

/// When a workload is interrupted too often for Spot: `interruptions` failovers within `window`
/// (this one included) give it an on-demand replacement, which the router then leaves on-demand
/// for `hold` (`HYSTERESIS_INTERRUPTIONS`, `HYSTERESIS_WINDOW_DAYS`, `ON_DEMAND_HOLD_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    pub interruptions: u32,
    pub window: TimeDelta,
    pub hold: TimeDelta,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            interruptions: 2,
            window: TimeDelta::days(7),
            hold: TimeDelta::days(7),
        }
    }
}

/// An on-demand hold: until when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub until: DateTime<Utc>,
    pub why: String,
}

impl Hysteresis {
    /// The hold failover `execution` (at `at`) puts the workload under, given its history: the
    /// failovers within the window, this one counted once however often its step is retried,
    /// reach the count; or a hold still in force.
    pub fn hold(
        &self,
        history: &WorkloadHistory,
        execution: &str,
        at: DateTime<Utc>,
    ) -> Option<Hold> {
        if let Some(until) = history.on_demand_until.filter(|u| *u > at) {
            return Some(Hold {
                until,
                why: format!("the workload is held on-demand until {until}"),
            });
        }
        let since = at - self.window;
        let earlier = history
            .failovers
            .iter()
            .filter(|(name, t)| name.as_str() != execution && **t > since && **t <= at)
            .count();
        let count = earlier + 1;
        if self.interruptions == 0 || count < self.interruptions as usize {
            return None;
        }
        let until = at + self.hold;
        Some(Hold {
            until,
            why: format!(
                "interrupted {count} times in {} days (limit {}): on-demand until {until}",
                self.window.num_days(),
                self.interruptions
            ),
        })
    }
}

/// A group's maximum size before a member's failover raised it by one to attach the replacement
/// (N → N+1 needs room), keyed `groupmax#<failover>` in the ledger: written before the raise, so
/// a retried promotion or the rollback puts back the original, never its own raised value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMaxNote {
    /// The ledger's key.
    pub switch_id: String,
    pub group: String,
    pub max_size: u32,
    /// DynamoDB's expiry (epoch seconds).
    pub ttl: i64,
}

impl GroupMaxNote {
    pub fn key(failover_id: &str) -> String {
        format!("groupmax#{failover_id}")
    }

    pub fn new(failover_id: &str, group: &str, max_size: u32, now: DateTime<Utc>) -> Self {
        Self {
            switch_id: Self::key(failover_id),
            group: group.to_owned(),
            max_size,
            ttl: (now + TimeDelta::days(1)).timestamp(),
        }
    }
}

/// The maximum size a group needs so `members` members plus the replacement fit, when `max`
/// does not already allow it.
pub fn max_for_attach(members: usize, max: u32) -> Option<u32> {
    let needed = u32::try_from(members).unwrap_or(u32::MAX).saturating_add(1);
    (needed > max).then_some(needed)
}

/// The fallbacks a launch took before starting the workload's original, keyed
/// `fallbacks#<failover>` in the ledger: a retried step that finds the original marked (its first
/// attempt failed while starting it) still records every fallback's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackNote {
    /// The ledger's key.
    pub switch_id: String,
    pub fallbacks: Vec<Fallback>,
    /// DynamoDB's expiry (epoch seconds): the failover record keeps them after that.
    pub ttl: i64,
}

impl FallbackNote {
    pub fn key(failover_id: &str) -> String {
        format!("fallbacks#{failover_id}")
    }

    pub fn new(failover_id: &str, fallbacks: &[Fallback], now: DateTime<Utc>) -> Self {
        Self {
            switch_id: Self::key(failover_id),
            fallbacks: fallbacks.to_vec(),
            ttl: (now + TimeDelta::days(1)).timestamp(),
        }
    }
}

/// A workload's failovers, keyed `history#<account>#<region>#<workload>` in the ledger table: what
/// the hysteresis counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadHistory {
    /// The ledger's key.
    pub switch_id: String,
    pub account_id: String,
    pub region: String,
    pub workload: String,
    /// Failover execution → when its signal was received.
    #[serde(default)]
    pub failovers: BTreeMap<String, DateTime<Utc>>,
    /// The hold in force, if any.
    #[serde(default)]
    pub on_demand_until: Option<DateTime<Utc>>,
}

impl WorkloadHistory {
    pub fn key(account: &str, region: &str, workload: &str) -> String {
        format!("history#{account}#{region}#{workload}")
    }

    pub fn empty(account: &str, region: &str, workload: &str) -> Self {
        Self {
            switch_id: Self::key(account, region, workload),
            account_id: account.to_owned(),
            region: region.to_owned(),
            workload: workload.to_owned(),
            failovers: BTreeMap::new(),
            on_demand_until: None,
        }
    }

    /// With failover `execution` counted (once) and `hold` kept; failovers older than the window
    /// forgotten, so the item stays small.
    pub fn with(
        mut self,
        execution: &str,
        at: DateTime<Utc>,
        hold: Option<&Hold>,
        rules: &Hysteresis,
    ) -> Self {
        self.failovers.insert(execution.to_owned(), at);
        let since = at - rules.window;
        self.failovers.retain(|_, t| *t > since);
        if let Some(h) = hold {
            self.on_demand_until = Some(self.on_demand_until.map_or(h.until, |u| u.max(h.until)));
        }
        self
    }
}

/// Until when an instance is held on-demand by its [`ON_DEMAND_UNTIL_TAG`](tags::ON_DEMAND_UNTIL_TAG),
/// if it is at `now`. A tag that cannot be read holds it (the router leaves it alone).
pub fn held_until(tags: &Tags, now: DateTime<Utc>) -> Option<Result<DateTime<Utc>, String>> {
    let text = tags.get(tags::ON_DEMAND_UNTIL_TAG)?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(Ok(t.with_timezone(&Utc))).filter(|_| t > now),
        Err(_) => Some(Err(text.clone())),
    }
}

/// What the interruption handler does beyond its quarantine: start failovers, publish decisions.
pub trait Reactions: Send + Sync {
    /// Starts failover `name` with `request`; `Ok(false)` when an execution of that name exists
    /// (this instance's failover is under way or done): nothing new started.
    fn start_failover(
        &self,
        name: &str,
        request: &FailoverRequest,
    ) -> impl std::future::Future<Output = Result<bool, crate::AwsError>> + Send;

    /// Publishes events (detail-type, detail) on the optimizer's bus, source `spot-optimizer`.
    fn publish(
        &self,
        events: &[(String, serde_json::Value)],
    ) -> impl std::future::Future<Output = Result<(), crate::AwsError>> + Send;
}

/// The `source` of every event the optimizer publishes.
pub const EVENT_SOURCE: &str = "spot-optimizer";
/// The detail-type of the event published when a failover starts.
pub const FAILOVER_STARTED: &str = "Spot Failover Started";

/// A signal as its EventBridge `detail-type`, as the handler and operators read it.
mod signal_kind_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::SignalKind;

    pub fn serialize<S: Serializer>(kind: &SignalKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.detail_type())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignalKind, D::Error> {
        let text = String::deserialize(d)?;
        SignalKind::from_detail_type(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is no EC2 Spot signal")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::source_instance;

    fn tagged(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_group_is_raised_only_when_the_replacement_would_not_fit() {
        assert_eq!(max_for_attach(2, 4), None);
        assert_eq!(max_for_attach(3, 4), None);
        assert_eq!(max_for_attach(4, 4), Some(5));
        assert_eq!(max_for_attach(0, 0), Some(1));
    }

    #[test]
    fn only_what_the_optimizer_put_on_spot_is_a_workload() {
        let clone = tagged(&[
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "AtomicSwitch"),
            ("SourceInstance", "i-0aaaaaaaaaaaaaaaa"),
        ]);
        assert_eq!(
            workload(&clone),
            Some(Workload::Switched {
                origin: "i-0aaaaaaaaaaaaaaaa".into()
            })
        );
        let replacement = tagged(&[
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "EmergencyFailover"),
            ("SourceInstance", "i-0bbbbbbbbbbbbbbbb"),
            (ORIGIN_TAG, "i-0aaaaaaaaaaaaaaaa"),
        ]);
        assert_eq!(workload(&replacement).unwrap().id(), "i-0aaaaaaaaaaaaaaaa");
        // Someone else's "ManagedBy", an unmarked instance, a swap member, a made-up origin.
        assert_eq!(workload(&tagged(&[("ManagedBy", "Terraform")])), None);
        assert_eq!(workload(&Tags::new()), None);
        let mut detached = clone.clone();
        detached.insert("CreatedVia".into(), "AsgSwap".into());
        assert_eq!(
            workload(&detached),
            None,
            "a swap replacement out of its group"
        );
        let mut member = detached.clone();
        member.insert("aws:autoscaling:groupName".into(), "web".into());
        assert_eq!(
            workload(&member),
            Some(Workload::Member {
                group: "web".into()
            })
        );
        let mut failed_over = member.clone();
        failed_over.insert("CreatedVia".into(), "EmergencyFailover".into());
        assert_eq!(workload(&failed_over).unwrap().group(), Some("web"));
        member.insert("aws:autoscaling:groupName".into(), "bad\nname".into());
        assert_eq!(workload(&member), None);
        // A switch's clone someone attached to a group stays the switch's workload.
        let mut attached = replacement.clone();
        attached.insert("aws:autoscaling:groupName".into(), "web".into());
        assert_eq!(
            workload(&attached).unwrap().origin(),
            Some("i-0aaaaaaaaaaaaaaaa")
        );
        let mut forged = clone;
        forged.insert("SourceInstance".into(), "not-an-instance".into());
        assert_eq!(workload(&forged), None);
    }

    #[test]
    fn every_signal_about_one_instance_names_one_execution() {
        let name = execution_name("123456789012", "i-0123456789abcdef0");
        assert_eq!(name, "failover-123456789012-i-0123456789abcdef0");
        assert!(name.len() <= 80, "Step Functions' limit");
        assert_ne!(name, execution_name("123456789012", "i-0123456789abcdef1"));
    }

    fn candidate(az: &str, t: &str, band: u8, price: f64) -> Candidate {
        Candidate {
            pool: PoolKey::new("us-east-1", az, t).unwrap(),
            instance_type: t.into(),
            az_name: "us-east-1x".into(),
            subnet_id: "subnet-1".into(),
            spot_price: price,
            interruption_band: band,
            interruption_label: String::new(),
            saving_per_hour: 0.1,
            score: price,
        }
    }

    #[test]
    fn the_dying_az_comes_first_then_capacity_then_price() {
        let mut c = vec![
            candidate("use1-az2", "m5.large", 0, 0.01),
            candidate("use1-az1", "m6i.large", 3, 0.02),
            candidate("use1-az1", "m5.large", 1, 0.05),
            candidate("use1-az1", "m5a.large", 1, 0.04),
        ];
        failover_order(&mut c, "use1-az1");
        let order: Vec<String> = c.iter().map(|c| c.pool.to_string()).collect();
        assert_eq!(
            order,
            [
                "us-east-1#use1-az1#m5a.large",
                "us-east-1#use1-az1#m5.large",
                "us-east-1#use1-az1#m6i.large",
                "us-east-1#use1-az2#m5.large",
            ]
        );
    }

    fn subnet(id: &str, az: &str, ips: u32) -> SubnetInfo {
        SubnetInfo {
            subnet_id: id.into(),
            az_name: format!("name-{az}"),
            az_id: az.into(),
            vpc_id: "vpc-1".into(),
            available_ips: ips,
        }
    }

    #[test]
    fn on_demand_tries_the_dying_type_in_its_own_subnet_first_and_stops_at_the_cap() {
        let mut source = source_instance();
        source.instance_type = "m5.large".into();
        source.subnet_id = "subnet-own".into();
        source.az_id = "use1-az1".into();
        source.vpc_id = "vpc-1".into();
        let subnets = [
            subnet("subnet-other", "use1-az2", 500),
            subnet("subnet-big", "use1-az1", 900),
            subnet("subnet-own", "use1-az1", 10),
        ];
        let types = ["m6i.large".to_owned(), "m5.large".to_owned()];
        let pools = on_demand_pools(&source, &types, &subnets);
        let got: Vec<(&str, &str)> = pools
            .iter()
            .map(|p| (p.instance_type.as_str(), p.subnet_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("m5.large", "subnet-own"),
                ("m6i.large", "subnet-own"),
                ("m5.large", "subnet-other"),
                ("m6i.large", "subnet-other"),
            ]
        );
        assert!(pools.len() <= MAX_ON_DEMAND_ATTEMPTS);
        // No compatible type described, the subnet unknown: the dying type in its own subnet.
        let alone = on_demand_pools(&source, &[], &[]);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].instance_type, "m5.large");
        assert_eq!(alone[0].subnet_id, "subnet-own");
    }

    fn request(signal: SignalKind) -> FailoverRequest {
        FailoverRequest {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            instance_id: "i-0123456789abcdef0".into(),
            signal,
            event_id: "e-1".into(),
            received_at: "2026-12-03T10:00:00Z".parse().unwrap(),
            pool: None,
            mode: None,
            settings: None,
        }
    }

    #[test]
    fn downtime_counts_only_past_the_warnings_two_minutes() {
        let r = request(SignalKind::InterruptionWarning);
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(downtime_seconds(&r, at("2026-12-03T10:01:30Z")), 0);
        assert_eq!(downtime_seconds(&r, at("2026-12-03T10:02:45Z")), 45);
        let early = request(SignalKind::RebalanceRecommendation);
        assert_eq!(downtime_seconds(&early, at("2026-12-03T10:09:00Z")), 0);
        assert!(early.retires_the_old());
        assert!(!r.retires_the_old());
    }

    #[test]
    fn requests_are_checked_and_read_as_the_handler_writes_them() {
        let r = request(SignalKind::InterruptionWarning);
        r.validate().unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["signal"], "EC2 Spot Instance Interruption Warning");
        assert_eq!(serde_json::from_value::<FailoverRequest>(json).unwrap(), r);
        let mut bad = r.clone();
        bad.instance_id = "i-nope".into();
        assert!(bad.validate().is_err());
        let mut shortage = r;
        shortage.signal = SignalKind::CapacityShortage;
        assert!(shortage.validate().is_err());
    }

    #[test]
    fn a_zombie_is_forgotten_thirty_days_after_its_termination() {
        let r = request(SignalKind::InterruptionWarning);
        let w = Workload::Switched {
            origin: "i-0aaaaaaaaaaaaaaaa".into(),
        };
        let end = r.received_at + WARNING_NOTICE;
        let z = RoleRecord::zombie(&r, &w, "f", end, r.received_at);
        assert_eq!(z.role, Role::Zombie);
        assert_eq!(z.ttl, Some((end + TimeDelta::days(30)).timestamp()));
        assert_eq!(
            z.switch_id,
            "role#123456789012#us-east-1#i-0123456789abcdef0"
        );
        let p = RoleRecord::primary(&r, &w, "i-0bbbbbbbbbbbbbbbb", "f", r.received_at);
        assert_eq!((p.role, p.ttl), (Role::Primary, None));
    }

    #[test]
    fn a_workload_interrupted_twice_in_a_week_is_held_on_demand_for_a_week() {
        let rules = Hysteresis::default();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let empty = WorkloadHistory::empty("123456789012", "us-east-1", "i-0aaaaaaaaaaaaaaaa");
        // The first interruption: no hold, however often its step is retried.
        let first = at("2026-12-01T10:00:00Z");
        assert_eq!(rules.hold(&empty, "f-1", first), None);
        let h1 = empty.with("f-1", first, None, &rules);
        assert_eq!(rules.hold(&h1, "f-1", first), None, "a retry counts once");
        // The second within 7 days: on-demand for 7 days from now.
        let second = at("2026-12-06T10:00:00Z");
        let hold = rules.hold(&h1, "f-2", second).unwrap();
        assert_eq!(hold.until, second + TimeDelta::days(7));
        assert!(
            hold.why.contains("interrupted 2 times in 7 days"),
            "{}",
            hold.why
        );
        let h2 = h1.clone().with("f-2", second, Some(&hold), &rules);
        assert_eq!(h2.on_demand_until, Some(hold.until));
        // A hold in force holds; once over, only the window counts.
        assert!(rules.hold(&h2, "f-3", at("2026-12-10T00:00:00Z")).is_some());
        let later = at("2026-12-20T00:00:00Z");
        assert_eq!(
            rules.hold(&h2, "f-3", later),
            None,
            "both older than the window"
        );
        assert!(
            h2.with("f-3", later, None, &rules).failovers.len() == 1,
            "old ones forgotten"
        );
        // Exactly at the window's edge the earlier one no longer counts.
        assert_eq!(rules.hold(&h1, "f-2", first + TimeDelta::days(7)), None);
        // A count of 0 turns hysteresis off.
        let off = Hysteresis {
            interruptions: 0,
            ..rules
        };
        assert_eq!(off.hold(&h1, "f-2", second), None);
    }

    #[test]
    fn a_standby_never_shares_the_primarys_pool_and_prefers_another_az() {
        let primary = PoolKey::new("us-east-1", "use1-az1", "m5.large").unwrap();
        let mut c = vec![
            candidate("use1-az1", "m5.large", 0, 0.01),
            candidate("use1-az1", "m5a.large", 0, 0.02),
            candidate("use1-az2", "m6i.large", 2, 0.03),
            candidate("use1-az4", "m5.large", 1, 0.05),
        ];
        standby_order(&mut c, &primary);
        let order: Vec<String> = c.iter().map(|c| c.pool.to_string()).collect();
        assert_eq!(
            order,
            [
                "us-east-1#use1-az4#m5.large",
                "us-east-1#use1-az2#m6i.large",
                "us-east-1#use1-az1#m5a.large",
            ]
        );
    }

    #[test]
    fn a_workload_has_exactly_one_primary_and_at_most_one_replica() {
        let r = request(SignalKind::InterruptionWarning);
        let at = r.received_at;
        let role = |id: &str, role| {
            RoleRecord::of(
                ("123456789012", "us-east-1"),
                "i-0aaaaaaaaaaaaaaaa",
                id,
                role,
                "f",
                at,
            )
        };
        let primary = role("i-01", Role::Primary);
        let standby = role("i-02", Role::Replica);
        let zombie = role("i-03", Role::Primary).retired(at);
        assert_eq!(zombie.role, Role::Zombie);
        assert!(role_violations(&[primary.clone(), standby.clone(), zombie.clone()]).is_empty());
        assert!(
            role_violations(std::slice::from_ref(&primary)).is_empty(),
            "no standby is allowed"
        );
        assert_eq!(
            role_violations(&[standby.clone(), zombie]).len(),
            1,
            "no primary"
        );
        let second = role("i-04", Role::Replica);
        assert!(
            role_violations(&[primary.clone(), standby.clone(), second])[0].contains("REPLICA")
        );
        let twice = role("i-02", Role::Primary);
        assert_eq!(role_violations(&[twice, standby]).len(), 1);
    }

    #[test]
    fn a_standby_request_names_instances_only() {
        let mut r = StandbyRequest {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            primary: "i-0123456789abcdef0".into(),
            replaced: Some("i-0123456789abcdef1".into()),
            lost: None,
            mode: None,
        };
        r.validate().unwrap();
        assert_eq!(r.excluded(), ["i-0123456789abcdef0", "i-0123456789abcdef1"]);
        r.lost = Some("vol-1".into());
        assert!(r.validate().is_err());
        let unknown = serde_json::json!({"account_id": "123456789012", "region": "us-east-1",
            "primary": "i-0123456789abcdef0", "extra": 1});
        assert!(serde_json::from_value::<StandbyRequest>(unknown).is_err());
    }

    #[test]
    fn the_hold_tag_holds_until_its_time_and_an_unreadable_one_holds() {
        let now: DateTime<Utc> = "2026-12-04T00:00:00Z".parse().unwrap();
        let tag = |v: &str| tagged(&[(tags::ON_DEMAND_UNTIL_TAG, v)]);
        assert_eq!(
            held_until(&tag("2026-12-05T00:00:00Z"), now),
            Some(Ok("2026-12-05T00:00:00Z".parse().unwrap()))
        );
        assert_eq!(held_until(&tag("2026-12-03T00:00:00Z"), now), None);
        assert_eq!(held_until(&tag("soon"), now), Some(Err("soon".into())));
        assert_eq!(held_until(&Tags::new(), now), None);
    }
}
