//! The ASG swap: which Auto Scaling groups and members may move to Spot, how many at a time, what
//! keeps the group's in-service capacity at or above its starting level (attach N → N+1, then
//! detach with decrement N+1 → N), and the data the saga's steps pass to each other.

use serde::{Deserialize, Serialize};

use crate::account::Environment;
use crate::error::ErrorName;
use crate::ids::Field;
use crate::market::{Candidate, Exclusion, ExclusionReason, LOW_CONFIDENCE_BAND};
use crate::pool::PoolKey;
use crate::saga::step::{
    CaughtError, Phase, Progress, Risk, SagaMode, Settings, SettingsRequest, StepError,
};
use crate::tags::{ENABLED_TAG, EXEMPT_TAG, RESTORE_TAG, SWAP_TAG, Tags};
/// The one process the swap suspends: rebalancing could terminate an instance mid-swap.
pub const AZ_REBALANCE: &str = "AZRebalance";
/// Processes whose suspension means someone else is operating the group: a swap would fight them.
const BUSY_PROCESSES: [&str; 4] = ["Launch", "Terminate", "HealthCheck", "AddToLoadBalancer"];

/// The saga's input, exactly: an unknown field is refused (`InvalidRequest`). The discover step
/// hands the following steps this request, validated and with the mode the live switch allows, in
/// place of the execution's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    pub account_id: String,
    pub region: String,
    pub asg_name: String,
    pub mode: SagaMode,
    /// Pacing over the stack's (tests use one-second waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsRequest>,
}

impl SwapRequest {
    /// What serde cannot check: the ids' syntax and the group name's length.
    pub fn validate(&self) -> Result<(), StepError> {
        Field::AccountId.check(&self.account_id)?;
        Field::Region.check(&self.region)?;
        Field::AsgName.check(&self.asg_name)?;
        Ok(())
    }
}

/// What the group launches from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchSource {
    Template {
        id: Option<String>,
        name: Option<String>,
        /// `$Default`, `$Latest` or a number.
        version: Option<String>,
    },
    Configuration {
        name: String,
    },
}

/// A MixedInstancesPolicy, as far as the swap cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixedPolicy {
    pub on_demand_base: u32,
    /// 100 means no Spot above the base.
    pub on_demand_above_base_pct: u32,
    pub override_types: Vec<String>,
}

/// A group member, from Auto Scaling (lifecycle, health, protection) and EC2 (market, tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub instance_type: String,
    pub az_name: String,
    /// `InService`, `Pending`, `Detaching`...
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`.
    pub health_status: String,
    pub protected_from_scale_in: bool,
    /// Read by `GroupFleet::inspect` (EC2); `false` from `GroupFleet::group`.
    pub spot: bool,
    /// Read by `GroupFleet::inspect` (EC2); `false` from `GroupFleet::group`.
    pub exempt: bool,
}

impl Member {
    pub fn in_service(&self) -> bool {
        self.lifecycle_state == "InService" && self.health_status == "Healthy"
    }
}

/// An Auto Scaling group as the swap sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    pub launch: Option<LaunchSource>,
    pub mixed: Option<MixedPolicy>,
    /// VPCZoneIdentifier.
    pub subnet_ids: Vec<String>,
    pub target_groups: Vec<String>,
    pub classic_load_balancers: Vec<String>,
    pub suspended: Vec<String>,
    /// Names of lifecycle hooks on `autoscaling:EC2_INSTANCE_LAUNCHING` (read by
    /// `GroupFleet::inspect`).
    pub launch_hooks: Vec<String>,
    pub tags: Tags,
    pub members: Vec<Member>,
}

impl Group {
    /// Members in service: the capacity the swap must never go below.
    pub fn in_service(&self) -> usize {
        self.members.iter().filter(|m| m.in_service()).count()
    }

    pub fn member(&self, instance_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.instance_id == instance_id)
    }
}

/// How groups opt in, and what the swap may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptIn {
    /// Group names swapped without the tag.
    pub allowlist: Vec<String>,
    /// Swap members protected from scale-in too.
    pub allow_protected: bool,
}

impl OptIn {
    pub fn opted_in(&self, group: &Group) -> bool {
        group
            .tags
            .get(ENABLED_TAG)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || self.allowlist.contains(&group.name)
    }
}

/// Why a whole group is not swapped; empty means it may be.
pub fn refusals(group: &Group, opt_in: &OptIn) -> Vec<String> {
    let mut reasons = Vec::new();
    if !opt_in.opted_in(group) {
        reasons.push(format!(
            "not opted in (tag {ENABLED_TAG}=true, or ASG_ALLOWLIST)"
        ));
    }
    if group.tags.contains_key(EXEMPT_TAG) {
        reasons.push(format!("tagged {EXEMPT_TAG}"));
    }
    if let Some(mixed) = &group.mixed
        && mixed.on_demand_above_base_pct < 100
    {
        reasons.push(format!(
            "its MixedInstancesPolicy already runs Spot ({} % on-demand above a base of {})",
            mixed.on_demand_above_base_pct, mixed.on_demand_base
        ));
    }
    if !group.launch_hooks.is_empty() {
        reasons.push(format!(
            "launch lifecycle hook {} would not run for attached instances",
            group.launch_hooks.join(", ")
        ));
    }
    if !group.classic_load_balancers.is_empty() {
        reasons.push(format!(
            "classic load balancer {} attached: its deregistration is not tracked",
            group.classic_load_balancers.join(", ")
        ));
    }
    let busy: Vec<&str> = BUSY_PROCESSES
        .into_iter()
        .filter(|p| group.suspended.iter().any(|s| s == p))
        .collect();
    if !busy.is_empty() {
        reasons.push(format!(
            "processes {} are suspended: someone else is operating the group",
            busy.join(", ")
        ));
    }
    if group.launch.is_none() {
        reasons.push("no launch template or launch configuration".to_owned());
    }
    reasons
}

/// The members to replace, in order, and those passed over with their reason.
pub fn candidates(group: &Group, opt_in: &OptIn) -> (Vec<Member>, Vec<Exclusion>) {
    let mut ok = Vec::new();
    let mut excluded = Vec::new();
    for m in &group.members {
        use ExclusionReason as R;
        let reason = if m.spot {
            Some((R::AlreadySpot, "already Spot"))
        } else if !m.in_service() {
            Some((R::NotInService, "not InService and Healthy"))
        } else if m.exempt {
            Some((R::Exempt, "tagged spot-optimizer:exempt"))
        } else if m.protected_from_scale_in && !opt_in.allow_protected {
            Some((
                R::ProtectedFromScaleIn,
                "protected from scale-in (ALLOW_PROTECTED=true swaps it)",
            ))
        } else {
            None
        };
        match reason {
            Some((reason, detail)) => {
                excluded.push(Exclusion::new(&m.instance_id, reason, detail));
            }
            None => ok.push(m.clone()),
        }
    }
    // Oldest first would need launch times; by id keeps the order stable across retries.
    ok.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    (ok, excluded)
}

/// The most members one execution replaces may be set to: with five candidate pools per member,
/// the plan stays far below Step Functions' 256 KiB state limit, and the batches' states far
/// below its 25,000 history events (a 60-member group measured in `tests/integration/swap.rs`).
pub const MAX_MEMBERS_LIMIT: usize = 40;

/// The first `max` members to replace go to this execution; the rest are deferred, with the
/// reason, to the next run (the router starts at most one swap per group a day).
pub fn defer(mut members: Vec<Member>, max: usize) -> (Vec<Member>, Vec<Exclusion>) {
    let later = members.split_off(members.len().min(max));
    let deferred = later
        .iter()
        .map(|m| {
            Exclusion::new(
                &m.instance_id,
                ExclusionReason::Deferred,
                format!("at most {max} members per swap; the next run replaces it"),
            )
        })
        .collect();
    (members, deferred)
}

/// How many members are replaced at once: one, or `percent` of the group's desired capacity
/// (at least one), never more than there are candidates.
pub fn batch_size(desired: u32, candidates: usize, percent: Option<u32>) -> usize {
    let size = match percent {
        None | Some(0) => 1,
        Some(p) => ((u64::from(desired) * u64::from(p.min(100))) / 100).max(1) as usize,
    };
    size.min(candidates.max(1))
}

/// The MaxSize that lets `batch` replacements be attached before their predecessors leave, when
/// the group's current one does not.
pub fn raised_max(group: &Group, batch: usize) -> Option<u32> {
    let needed = group.desired + u32::try_from(batch).unwrap_or(u32::MAX);
    (needed > group.max_size).then_some(needed)
}

/// Types a replacement may be: the mixed policy's overrides when it lists some, else whatever the
/// ranking finds compatible with the member.
pub fn allowed_types(group: &Group) -> Vec<String> {
    group
        .mixed
        .as_ref()
        .map(|m| m.override_types.clone())
        .unwrap_or_default()
}

/// The risk of swapping a group, one level per concern.
pub fn risk(
    environment: Environment,
    group: &Group,
    batch: usize,
    plans: &[MemberPlan],
) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    if environment == Environment::Prod {
        reasons.push("PROD account".to_owned());
    }
    if !group.target_groups.is_empty() {
        reasons.push(format!(
            "serves traffic ({} target group(s))",
            group.target_groups.len()
        ));
    }
    if batch > 1 {
        reasons.push(format!("{batch} instances at a time"));
    }
    if plans.iter().any(|p| {
        p.candidates
            .first()
            .is_some_and(|c| c.interruption_band >= LOW_CONFIDENCE_BAND)
    }) {
        reasons.push("low-confidence pool for some member (> 15 % interruptions)".to_owned());
    }
    (Risk::of(&reasons), reasons)
}

// ---- the saga's state ---------------------------------------------------------------------------

/// One member's replacement plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberPlan {
    pub instance_id: String,
    pub instance_type: String,
    pub az_name: String,
    pub on_demand_price: f64,
    /// Ranked, best first; all in the member's AZ and the group's subnets.
    pub candidates: Vec<Candidate>,
    pub exclusions: Vec<Exclusion>,
}

impl MemberPlan {
    pub fn saving_per_hour(&self) -> f64 {
        self.candidates.first().map_or(0.0, |c| c.saving_per_hour)
    }
}

/// The discover step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    pub group: Group,
    /// Members to replace, in order.
    pub candidates: Vec<Member>,
    pub excluded: Vec<Exclusion>,
    /// In-service members at the start: the floor of the group's capacity.
    pub start_in_service: usize,
    pub batch_size: usize,
    pub environment: Environment,
    pub settings: Settings,
}

/// The plan step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapPlan {
    pub members: Vec<MemberPlan>,
    /// Members that have no pool to go to, with why (they stay on-demand).
    pub skipped: Vec<Exclusion>,
    pub risk: Risk,
    pub risk_reasons: Vec<String>,
    pub needs_approval: bool,
    /// One line, for the approval request.
    pub summary: String,
    pub saving_per_hour: f64,
}

/// What the prepare step changed, so the restore (or the rollback) can put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub original_max: u32,
    /// Set when the group was at its MaxSize.
    pub raised_max: Option<u32>,
    /// `AZRebalance` was suspended by the swap (not by the owner before it).
    pub suspended_by_swap: bool,
}

/// One member being replaced in the current batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replacement {
    pub old: String,
    pub new: String,
    pub pool: PoolKey,
    pub instance_type: String,
    pub spot_price: f64,
    pub saving_per_hour: f64,
    pub on_demand_price: f64,
}

/// The launch step's output: the batch under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchLaunch {
    /// Index of the batch's first member in the plan.
    pub first: usize,
    pub replacements: Vec<Replacement>,
    /// Members of the batch that could not be replaced (no capacity in any pool, or they left the
    /// group), left as they are.
    #[serde(default)]
    pub not_replaced: Vec<Exclusion>,
    /// Index of the member after the batch: where the next batch starts.
    pub next: usize,
}

/// An idempotency token per swap, member and pool.
pub fn client_token(swap_id: &str, old: &str, candidate: usize) -> String {
    crate::saga::step::client_token(swap_id, &[old, &candidate.to_string()])
}

/// Where the saga is in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Index of the next member to replace.
    pub next: usize,
    pub done: bool,
    /// Old → new, for every member replaced so far.
    pub swapped: Vec<(String, String)>,
}

/// The discover step's output, which replaces the execution's input as the state every later
/// step reads: the validated request and the discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoverOutput {
    pub request: SwapRequest,
    pub discover: Discovered,
}

/// What the discover step receives: the execution's input as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverInput {
    pub request: SwapRequest,
    pub execution: String,
}

/// The whole state after the discovery; each step adds its output under its own key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapState {
    pub request: SwapRequest,
    #[serde(default)]
    pub discover: Option<Discovered>,
    #[serde(default)]
    pub plan: Option<SwapPlan>,
    #[serde(default)]
    pub prepare: Option<Prepared>,
    #[serde(default)]
    pub launch: Option<BatchLaunch>,
    #[serde(default)]
    pub health: Option<Progress>,
    #[serde(default)]
    pub attach: Option<Progress>,
    #[serde(default)]
    pub detach: Option<Progress>,
    #[serde(default)]
    pub cursor: Option<Cursor>,
    #[serde(default)]
    pub error: Option<CaughtError>,
    /// What the operator's answer carried (the approval step's output); nothing reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
}

/// What every swap step after the discovery receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapInput {
    pub state: SwapState,
    pub execution: String,
    #[serde(default)]
    pub phase: Option<Phase>,
}

/// What the rollback receives: the state when a step failed, which is the execution's raw input
/// when the discovery refused it. Read leniently ([`SwapRollbackView`]); trusted for nothing that
/// names a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRollbackInput {
    pub state: serde_json::Value,
    pub execution: String,
    /// `restore` (the default) or `finish`.
    #[serde(default)]
    pub phase: Option<Phase>,
}

/// The request's identity, as far as the rollback reads it (unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupIds {
    pub account_id: String,
    pub region: String,
    pub asg_name: String,
    #[serde(default)]
    pub mode: Option<SagaMode>,
}

/// What the swap's rollback reads of whatever state it is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SwapRollbackView {
    /// `None`: the state names no request; nothing can have been done.
    pub request: Option<GroupIds>,
    pub discover: Option<Discovered>,
    pub plan: Option<SwapPlan>,
    pub launch: Option<BatchLaunch>,
    pub cursor: Option<Cursor>,
    pub error: Option<CaughtError>,
    /// Set when the rollback's first phase failed for good (the state machine caught it).
    pub failure: Option<CaughtError>,
}

impl SwapRollbackView {
    pub fn read(state: &serde_json::Value) -> Self {
        fn part<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
            serde_json::from_value(v.clone()).ok()
        }
        Self {
            request: state
                .get("request")
                .and_then(part::<GroupIds>)
                .or_else(|| part::<GroupIds>(state)),
            discover: state.get("discover").and_then(part),
            plan: state.get("plan").and_then(part),
            launch: state.get("launch").and_then(part),
            cursor: state.get("cursor").and_then(part),
            error: state.get("error").and_then(part),
            failure: state.get("rollback_failure").and_then(part),
        }
    }
}

impl SwapState {
    pub fn swapped(&self) -> &[(String, String)] {
        self.cursor.as_ref().map_or(&[], |c| c.swapped.as_slice())
    }

    pub fn discovery(&self, step: &str) -> Result<&Discovered, StepError> {
        self.discover
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "discovery"))
    }

    pub fn plan(&self, step: &str) -> Result<&SwapPlan, StepError> {
        self.plan
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "plan"))
    }

    pub fn batch(&self, step: &str) -> Result<&BatchLaunch, StepError> {
        self.launch
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "batch"))
    }
}

impl Prepared {
    /// What the swap is about to change on the group, decided from the discovery's snapshot.
    pub fn of(before: &Group, batch: usize) -> Self {
        Self {
            original_max: before.max_size,
            raised_max: raised_max(before, batch),
            suspended_by_swap: !before.suspended.iter().any(|p| p == AZ_REBALANCE),
        }
    }

    /// The value of [`RESTORE_TAG`], written on the group with the swap's mark before anything is
    /// changed, so a rollback knows what to put back even if the state lost it.
    pub fn to_tag(&self) -> String {
        format!(
            "max={};raised={};az={}",
            self.original_max,
            self.raised_max
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
            u8::from(self.suspended_by_swap)
        )
    }

    pub fn from_tag(value: &str) -> Option<Self> {
        let mut original_max = None;
        let mut raised_max = None;
        let mut suspended_by_swap = None;
        for part in value.split(';') {
            match part.split_once('=')? {
                ("max", v) => original_max = Some(v.parse().ok()?),
                ("raised", "-") => raised_max = Some(None),
                ("raised", v) => raised_max = Some(Some(v.parse().ok()?)),
                ("az", "1") => suspended_by_swap = Some(true),
                ("az", "0") => suspended_by_swap = Some(false),
                _ => return None,
            }
        }
        Some(Self {
            original_max: original_max?,
            raised_max: raised_max?,
            suspended_by_swap: suspended_by_swap?,
        })
    }
}

/// A change the restore (or the rollback) makes to put the group back as the owner had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    SetMaxSize {
        from: u32,
        to: u32,
    },
    ResumeAzRebalance,
    /// Remove the swap's mark and what it recorded from the group.
    Unmark,
}

/// What puts the group back: nothing unless the group carries this swap's mark (the prepare step
/// writes it, with what it is about to change, before changing anything). MaxSize goes back only
/// if it is still the value the swap set (an owner's change during the swap wins), never below the
/// desired capacity; `AZRebalance` resumes only if the swap suspended it and it still is.
pub fn restore(swap_id: &str, now: &Group) -> Vec<GroupChange> {
    if now.tags.get(SWAP_TAG).map(String::as_str) != Some(swap_id) {
        return Vec::new();
    }
    let mut changes = Vec::new();
    if let Some(prepared) = now
        .tags
        .get(RESTORE_TAG)
        .and_then(|v| Prepared::from_tag(v))
    {
        if let Some(raised) = prepared.raised_max
            && now.max_size == raised
        {
            let to = prepared.original_max.max(now.desired);
            if to != now.max_size {
                changes.push(GroupChange::SetMaxSize {
                    from: now.max_size,
                    to,
                });
            }
        }
        if prepared.suspended_by_swap && now.suspended.iter().any(|p| p == AZ_REBALANCE) {
            changes.push(GroupChange::ResumeAzRebalance);
        }
    }
    changes.push(GroupChange::Unmark);
    changes
}

/// The invariant, checked before every destructive action on a batch: each replacement is
/// InService in the group.
pub fn replacements_in_service(group: &Group, launch: &BatchLaunch) -> Result<(), StepError> {
    match launch
        .replacements
        .iter()
        .find(|r| !group.member(&r.new).is_some_and(Member::in_service))
    {
        Some(r) => Err(StepError::new(
            ErrorName::AttachFailed,
            format!("{} is not InService: {} stays", r.new, r.old),
        )),
        None => Ok(()),
    }
}

/// Target-group states of an instance that is gone from it.
const OUT_OF_TARGET_GROUP: [&str; 2] = ["unused", "unavailable"];

/// The attach check at its `checks`-th try of at most `limit`: every replacement InService and
/// Healthy in the group and `healthy` in each target group (`states`: replacement, target group,
/// state).
pub fn attach_progress(
    group: &Group,
    launch: &BatchLaunch,
    states: &[(String, String, String)],
    checks: u32,
    limit: u32,
) -> Result<Progress, StepError> {
    let mut waiting = Vec::new();
    for r in &launch.replacements {
        match group.member(&r.new) {
            Some(m) if m.in_service() => {}
            Some(m) => waiting.push(format!(
                "{} is {} / {}",
                r.new, m.lifecycle_state, m.health_status
            )),
            None => waiting.push(format!("{} is not in the group", r.new)),
        }
    }
    for (instance, tg, state) in states {
        if state != "healthy" {
            waiting.push(format!("{instance} is {state} in {tg}"));
        }
    }
    progress(waiting, checks, limit, ErrorName::AttachFailed)
}

/// The detach check: every replaced member out of the group and of each target group.
/// ELB's longest deregistration delay, in seconds.
pub const LONGEST_DEREGISTRATION_DELAY: u32 = 3600;

/// How many checks the detach may wait: the settings' checks, plus the longest deregistration
/// delay of the group's target groups (up to an hour: connections drain that long before a
/// target leaves) in check intervals.
pub fn detach_checks(settings: &Settings, deregistration_delay_seconds: u32) -> u32 {
    let delay = deregistration_delay_seconds.min(LONGEST_DEREGISTRATION_DELAY);
    settings
        .health_checks
        .saturating_add(delay.div_ceil(settings.wait_seconds.max(1)))
}

pub fn detach_progress(
    group: &Group,
    launch: &BatchLaunch,
    states: &[(String, String, String)],
    checks: u32,
    limit: u32,
) -> Result<Progress, StepError> {
    let mut waiting = Vec::new();
    for r in &launch.replacements {
        if let Some(m) = group.member(&r.old) {
            waiting.push(format!(
                "{} is still {} in the group",
                r.old, m.lifecycle_state
            ));
        }
    }
    for (instance, tg, state) in states {
        if !OUT_OF_TARGET_GROUP.contains(&state.as_str()) {
            waiting.push(format!("{instance} is {state} in {tg}"));
        }
    }
    progress(waiting, checks, limit, ErrorName::DetachFailed)
}

fn progress(
    waiting: Vec<String>,
    checks: u32,
    limit: u32,
    failure: ErrorName,
) -> Result<Progress, StepError> {
    if waiting.is_empty() {
        Ok(Progress::ok(checks))
    } else if checks >= limit {
        Err(StepError::new(
            failure,
            format!("after {checks} checks: {}", waiting.join("; ")),
        ))
    } else {
        Ok(Progress::pending(checks))
    }
}

/// An instance carrying a swap's mark, as the rollback finds it: a replacement the swap launched
/// (for `old`), or a predecessor the swap marked before detaching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub instance_id: String,
    /// `Some(old)`: a replacement (`CreatedVia=AsgSwap`, `SourceInstance=old`).
    pub replaces: Option<String>,
    pub running: bool,
}

/// One member the rollback looks at: its predecessor and, if one exists, its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPair {
    pub old: String,
    pub new: Option<String>,
    /// The predecessor still runs (outside the group, if it was detached).
    pub old_running: bool,
}

/// Every member the swap touched, from the instances carrying its mark alone (never from the
/// state): each replacement with its predecessor, and each marked predecessor whose replacement
/// is gone.
pub fn members_touched(marked: &[Marked]) -> Vec<MemberPair> {
    let running = |id: &str| marked.iter().any(|m| m.instance_id == id && m.running);
    let mut pairs: Vec<MemberPair> = marked
        .iter()
        .filter_map(|m| {
            let old = m.replaces.as_ref()?;
            Some(MemberPair {
                old: old.clone(),
                new: Some(m.instance_id.clone()),
                old_running: running(old),
            })
        })
        .collect();
    for m in marked.iter().filter(|m| m.replaces.is_none()) {
        if !pairs.iter().any(|p| p.old == m.instance_id) {
            pairs.push(MemberPair {
                old: m.instance_id.clone(),
                new: None,
                old_running: m.running,
            });
        }
    }
    pairs.sort_by(|a, b| a.old.cmp(&b.old));
    pairs
}

/// What the rollback does for one member, from what the group shows now (a crashed step may have
/// left more, or less, than the state says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberUndo {
    /// Nothing to do: the member is where it was and nothing replaced it.
    Nothing,
    /// The replacement never joined: terminate it.
    TerminateReplacement,
    /// Both are in the group: detach the replacement with decrement (N+1 → N), terminate it.
    DetachAndTerminateReplacement,
    /// The predecessor left and its replacement serves: that member's swap is done; terminate the
    /// leftover predecessor.
    KeepReplacement,
    /// The predecessor left but its replacement is not InService (or is gone): attach the
    /// predecessor back if it still runs, then remove the replacement if there is one.
    RestorePredecessor { reattach: bool },
}

/// The rollback's table: never terminates a predecessor unless its replacement is InService, and
/// never leaves a detached predecessor outside the group while it runs.
pub fn member_undo(pair: &MemberPair, group: Option<&Group>) -> MemberUndo {
    let member = |id: &str| group.and_then(|g| g.member(id));
    let predecessor = member(&pair.old);
    match (&pair.new, predecessor) {
        (None, Some(_)) => MemberUndo::Nothing,
        (None, None) => MemberUndo::RestorePredecessor {
            reattach: pair.old_running,
        },
        (Some(new), _) => match (member(new), predecessor) {
            (None, _) => MemberUndo::TerminateReplacement,
            (Some(_), Some(_)) => MemberUndo::DetachAndTerminateReplacement,
            (Some(n), None) if n.in_service() => MemberUndo::KeepReplacement,
            (Some(_), None) => MemberUndo::RestorePredecessor {
                reattach: pair.old_running,
            },
        },
    }
}

/// The per-group lock key: one swap at a time per group.
pub fn lock_key(request: &SwapRequest) -> String {
    lock_key_of(&request.account_id, &request.region, &request.asg_name)
}

pub fn lock_key_of(account_id: &str, region: &str, asg_name: &str) -> String {
    format!("lock#{account_id}#{region}#asg/{asg_name}")
}

/// The ledger key of one member's swap.
pub fn record_id(swap_id: &str, old: &str) -> String {
    format!("{swap_id}#{old}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_waits_as_long_as_the_target_groups_drain_up_to_an_hour() {
        let settings = Settings::default(); // 40 checks, 15 s apart
        assert_eq!(detach_checks(&settings, 0), 40);
        assert_eq!(detach_checks(&settings, 300), 60);
        assert_eq!(detach_checks(&settings, 301), 61);
        assert_eq!(detach_checks(&settings, 3600), 280);
        assert_eq!(detach_checks(&settings, u32::MAX), 280);
    }

    fn member(id: &str) -> Member {
        Member {
            instance_id: id.into(),
            instance_type: "m5.large".into(),
            az_name: "us-east-1a".into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            protected_from_scale_in: false,
            spot: false,
            exempt: false,
        }
    }

    fn group() -> Group {
        Group {
            name: "web".into(),
            min_size: 1,
            max_size: 4,
            desired: 3,
            launch: Some(LaunchSource::Template {
                id: Some("lt-1".into()),
                name: None,
                version: Some("$Default".into()),
            }),
            mixed: None,
            subnet_ids: vec!["subnet-a".into()],
            target_groups: vec![],
            classic_load_balancers: vec![],
            suspended: vec![],
            launch_hooks: vec![],
            tags: Tags::from([(ENABLED_TAG.to_owned(), "true".to_owned())]),
            members: vec![member("i-3"), member("i-1"), member("i-2")],
        }
    }

    #[test]
    fn an_opted_in_plain_group_is_swapped_and_each_obstacle_is_named() {
        let opt_in = OptIn::default();
        assert!(refusals(&group(), &opt_in).is_empty());
        type Change = fn(&mut Group);
        let cases: [(&str, Change); 7] = [
            ("not opted in", |g| {
                g.tags.clear();
            }),
            ("exempt", |g| {
                g.tags.insert(EXEMPT_TAG.into(), "".into());
            }),
            ("MixedInstancesPolicy", |g| {
                g.mixed = Some(MixedPolicy {
                    on_demand_base: 1,
                    on_demand_above_base_pct: 50,
                    override_types: vec![],
                })
            }),
            ("lifecycle hook", |g| {
                g.launch_hooks = vec!["warm-up".into()]
            }),
            ("classic load balancer", |g| {
                g.classic_load_balancers = vec!["web-elb".into()]
            }),
            ("suspended", |g| g.suspended = vec!["Launch".into()]),
            ("no launch template", |g| g.launch = None),
        ];
        for (what, change) in cases {
            let mut g = group();
            change(&mut g);
            let reasons = refusals(&g, &opt_in);
            assert!(
                reasons.iter().any(|r| r.contains(what)),
                "{what}: {reasons:?}"
            );
        }
        // An allowlisted group needs no tag; an on-demand-only mixed policy is fine.
        let mut g = group();
        g.tags.clear();
        g.mixed = Some(MixedPolicy {
            on_demand_base: 0,
            on_demand_above_base_pct: 100,
            override_types: vec!["m5.large".into(), "m6i.large".into()],
        });
        g.suspended = vec![AZ_REBALANCE.into()];
        let allow = OptIn {
            allowlist: vec!["web".into()],
            allow_protected: false,
        };
        assert!(refusals(&g, &allow).is_empty());
        assert_eq!(allowed_types(&g), ["m5.large", "m6i.large"]);
    }

    #[test]
    fn only_in_service_healthy_on_demand_unprotected_members_are_replaced_in_a_stable_order() {
        let mut g = group();
        g.members[0].spot = true; // i-3
        g.members.push(Member {
            protected_from_scale_in: true,
            ..member("i-4")
        });
        g.members.push(Member {
            lifecycle_state: "Pending".into(),
            ..member("i-5")
        });
        g.members.push(Member {
            exempt: true,
            ..member("i-6")
        });
        let (ok, excluded) = candidates(&g, &OptIn::default());
        let ids: Vec<&str> = ok.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        assert_eq!(excluded.len(), 4);
        let protected = OptIn {
            allowlist: vec![],
            allow_protected: true,
        };
        assert_eq!(candidates(&g, &protected).0.len(), 3);
    }

    #[test]
    fn members_beyond_the_cap_are_deferred_to_the_next_run_in_order() {
        let members: Vec<Member> = (1..=5).map(|i| member(&format!("i-{i}"))).collect();
        let (now, later) = defer(members.clone(), 3);
        let ids: Vec<&str> = now.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2", "i-3"]);
        assert_eq!(
            later.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(),
            ["i-4", "i-5"]
        );
        assert!(later.iter().all(|e| e.reason == ExclusionReason::Deferred));
        assert!(later[0].detail.contains("at most 3"), "{}", later[0].detail);
        let (all, none) = defer(members, 40);
        assert_eq!((all.len(), none.len()), (5, 0));
    }

    #[test]
    fn one_at_a_time_by_default_or_a_percentage_of_the_group() {
        assert_eq!(batch_size(10, 10, None), 1);
        assert_eq!(batch_size(10, 10, Some(10)), 1);
        assert_eq!(batch_size(10, 10, Some(25)), 2);
        assert_eq!(batch_size(3, 3, Some(10)), 1, "at least one");
        assert_eq!(
            batch_size(10, 2, Some(50)),
            2,
            "no more than the candidates"
        );
    }

    #[test]
    fn max_size_is_raised_only_when_the_batch_would_not_fit() {
        let mut g = group(); // desired 3, max 4
        assert_eq!(raised_max(&g, 1), None);
        assert_eq!(raised_max(&g, 2), Some(5));
        g.max_size = 3;
        assert_eq!(raised_max(&g, 1), Some(4));
    }

    #[test]
    fn the_state_round_trips() {
        let state = serde_json::json!({
            "request": {"account_id": "123456789012", "region": "us-east-1", "asg_name": "web",
                "mode": "live", "settings": {"wait_seconds": 1}},
            "cursor": {"next": 1, "done": false, "swapped": [["i-1", "i-9"]]}
        });
        let parsed: SwapState = serde_json::from_value(state).unwrap();
        assert_eq!(parsed.swapped(), [("i-1".to_owned(), "i-9".to_owned())]);
        assert_eq!(
            lock_key(&parsed.request),
            "lock#123456789012#us-east-1#asg/web"
        );
    }

    fn batch(pairs: &[(&str, &str)]) -> BatchLaunch {
        BatchLaunch {
            first: 0,
            replacements: pairs
                .iter()
                .map(|(old, new)| Replacement {
                    old: (*old).into(),
                    new: (*new).into(),
                    pool: PoolKey::new("us-east-1", "use1-az6", "m6i.large").unwrap(),
                    instance_type: "m6i.large".into(),
                    spot_price: 0.03,
                    saving_per_hour: 0.06,
                    on_demand_price: 0.096,
                })
                .collect(),
            not_replaced: vec![],
            next: pairs.len(),
        }
    }

    fn state(instance: &str, tg: &str, state: &str) -> (String, String, String) {
        (instance.into(), tg.into(), state.into())
    }

    #[test]
    fn the_detach_refuses_while_a_replacement_is_not_in_service() {
        let mut g = group();
        let launch = batch(&[("i-1", "i-9")]);
        let e = replacements_in_service(&g, &launch).unwrap_err();
        assert_eq!(e.name, ErrorName::AttachFailed, "not in the group yet");
        g.members.push(Member {
            lifecycle_state: "Pending".into(),
            ..member("i-9")
        });
        assert!(
            replacements_in_service(&g, &launch).is_err(),
            "not InService"
        );
        g.members.pop();
        g.members.push(member("i-9"));
        assert!(replacements_in_service(&g, &launch).is_ok());
    }

    #[test]
    fn attach_waits_for_in_service_and_healthy_targets_then_fails_at_the_limit() {
        let mut g = group();
        let launch = batch(&[("i-1", "i-9")]);
        g.members.push(member("i-9"));
        let initial = [state("i-9", "tg-web", "initial")];
        assert_eq!(
            attach_progress(&g, &launch, &initial, 1, 3).unwrap(),
            Progress::pending(1)
        );
        let e = attach_progress(&g, &launch, &initial, 3, 3).unwrap_err();
        assert_eq!(e.name, ErrorName::AttachFailed);
        assert!(e.message.contains("initial in tg-web"), "{e}");
        let healthy = [state("i-9", "tg-web", "healthy")];
        assert!(
            attach_progress(&g, &launch, &healthy, 2, 3)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn detach_waits_until_the_member_left_the_group_and_drained() {
        let mut g = group();
        let launch = batch(&[("i-1", "i-9")]);
        let draining = [state("i-1", "tg-web", "draining")];
        assert!(
            !detach_progress(&g, &launch, &[], 1, 3).unwrap().is_ok(),
            "still a member"
        );
        g.members.retain(|m| m.instance_id != "i-1");
        assert!(
            !detach_progress(&g, &launch, &draining, 1, 3)
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            detach_progress(&g, &launch, &draining, 3, 3)
                .unwrap_err()
                .name,
            ErrorName::DetachFailed
        );
        let gone = [state("i-1", "tg-web", "unused")];
        assert!(detach_progress(&g, &launch, &gone, 1, 3).unwrap().is_ok());
    }

    fn marked(mut g: Group, swap: &str, prepared: &Prepared) -> Group {
        g.tags.insert(SWAP_TAG.into(), swap.into());
        g.tags.insert(RESTORE_TAG.into(), prepared.to_tag());
        g
    }

    #[test]
    fn the_restore_puts_back_only_what_the_swap_changed_and_only_on_its_own_mark() {
        let before = group(); // max 4, desired 3, nothing suspended
        let prepared = Prepared::of(&before, 2); // needs 5
        assert_eq!(
            Prepared::from_tag(&prepared.to_tag()),
            Some(prepared.clone())
        );
        let mut now = marked(group(), "swap-1", &prepared);
        now.max_size = 5;
        now.suspended = vec![AZ_REBALANCE.into()];
        assert_eq!(
            restore("swap-1", &now),
            [
                GroupChange::SetMaxSize { from: 5, to: 4 },
                GroupChange::ResumeAzRebalance,
                GroupChange::Unmark
            ]
        );
        // Another swap's mark, or none: nothing is touched, whatever the state claims.
        assert!(restore("swap-2", &now).is_empty());
        assert!(restore("swap-1", &group()).is_empty());
        // The owner changed MaxSize during the swap: theirs stays.
        let mut owned = now.clone();
        owned.max_size = 8;
        assert_eq!(
            restore("swap-1", &owned),
            [GroupChange::ResumeAzRebalance, GroupChange::Unmark]
        );
        // The owner had suspended AZRebalance before the swap: it stays suspended.
        let mut theirs = group();
        theirs.suspended = vec![AZ_REBALANCE.into()];
        let prepared = Prepared::of(&theirs, 1);
        let now = marked(theirs, "swap-1", &prepared);
        assert_eq!(restore("swap-1", &now), [GroupChange::Unmark]);
        // Never below the desired capacity the group has now.
        let prepared = Prepared::of(&group(), 2);
        let mut grown = marked(group(), "swap-1", &prepared);
        grown.max_size = 5;
        grown.desired = 5;
        assert_eq!(restore("swap-1", &grown), [GroupChange::Unmark]);
    }

    #[test]
    fn the_rollback_finds_every_member_it_touched_by_its_mark() {
        let m = |id: &str, replaces: Option<&str>, running: bool| Marked {
            instance_id: id.into(),
            replaces: replaces.map(str::to_owned),
            running,
        };
        let pairs = members_touched(&[
            m("i-9", Some("i-1"), true),
            m("i-1", None, true),
            // A predecessor detached, whose replacement is gone (terminated by Spot).
            m("i-2", None, true),
        ]);
        assert_eq!(
            pairs,
            [
                MemberPair {
                    old: "i-1".into(),
                    new: Some("i-9".into()),
                    old_running: true
                },
                MemberPair {
                    old: "i-2".into(),
                    new: None,
                    old_running: true
                },
            ]
        );
    }

    #[test]
    fn the_rollback_never_terminates_a_predecessor_whose_replacement_does_not_serve() {
        let mut g = group(); // i-1, i-2, i-3 in service
        let pair = |old: &str, new: Option<&str>, running: bool| MemberPair {
            old: old.into(),
            new: new.map(str::to_owned),
            old_running: running,
        };
        // Nothing replaced it, it is still in the group.
        assert_eq!(
            member_undo(&pair("i-1", None, true), Some(&g)),
            MemberUndo::Nothing
        );
        // Its replacement never joined.
        assert_eq!(
            member_undo(&pair("i-1", Some("i-9"), true), Some(&g)),
            MemberUndo::TerminateReplacement
        );
        // Both in the group.
        g.members.push(member("i-9"));
        assert_eq!(
            member_undo(&pair("i-1", Some("i-9"), true), Some(&g)),
            MemberUndo::DetachAndTerminateReplacement
        );
        // The predecessor left; the replacement serves.
        g.members.retain(|m| m.instance_id != "i-1");
        assert_eq!(
            member_undo(&pair("i-1", Some("i-9"), true), Some(&g)),
            MemberUndo::KeepReplacement
        );
        // The predecessor left; the replacement does not serve yet.
        g.members.last_mut().unwrap().lifecycle_state = "Pending".into();
        assert_eq!(
            member_undo(&pair("i-1", Some("i-9"), true), Some(&g)),
            MemberUndo::RestorePredecessor { reattach: true }
        );
        // The predecessor left and its replacement is gone: it goes back if it still runs.
        assert_eq!(
            member_undo(&pair("i-2", None, true), Some(&group_without("i-2"))),
            MemberUndo::RestorePredecessor { reattach: true }
        );
        assert_eq!(
            member_undo(&pair("i-2", None, false), Some(&group_without("i-2"))),
            MemberUndo::RestorePredecessor { reattach: false }
        );
    }

    fn group_without(id: &str) -> Group {
        let mut g = group();
        g.members.retain(|m| m.instance_id != id);
        g
    }
}
