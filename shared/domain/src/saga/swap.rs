//! The ASG swap: which Auto Scaling groups and members may move to Spot, how many at a time, what
//! keeps the group's in-service capacity at or above its starting level (attach N → N+1, then
//! detach with decrement N+1 → N), and the data the saga's steps pass to each other.

use serde::{Deserialize, Serialize};

use crate::account::Environment;
use crate::error::ErrorName;
use crate::market::{Candidate, Exclusion, ExclusionReason, LOW_CONFIDENCE_BAND};
use crate::pool::PoolKey;
use crate::saga::step::{
    CaughtError, Phase, Progress, Risk, SagaMode, Settings, SettingsRequest, StepError,
};
use crate::tags::{ENABLED_TAG, EXEMPT_TAG, Tags};
/// The one process the swap suspends: rebalancing could terminate an instance mid-swap.
pub const AZ_REBALANCE: &str = "AZRebalance";
/// Processes whose suspension means someone else is operating the group: a swap would fight them.
const BUSY_PROCESSES: [&str; 4] = ["Launch", "Terminate", "HealthCheck", "AddToLoadBalancer"];

/// The saga's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRequest {
    pub account_id: String,
    pub region: String,
    pub asg_name: String,
    pub mode: SagaMode,
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
    /// The member's own tags, which its replacement carries too.
    pub tags: Vec<(String, String)>,
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

/// An idempotency token per swap, member and pool (EC2 accepts 64 characters).
pub fn client_token(swap_id: &str, old: &str, candidate: usize) -> String {
    let id: String = swap_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(36)
        .collect();
    format!(
        "{id}-{}-{candidate}",
        old.chars().take(20).collect::<String>()
    )
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapState {
    #[serde(flatten)]
    pub request: SwapRequest,
    #[serde(default)]
    pub settings: Option<SettingsRequest>,
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
}

/// What every swap step Lambda receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapInput {
    pub state: SwapState,
    pub execution: String,
    #[serde(default)]
    pub phase: Option<Phase>,
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

/// A change the restore (or the rollback) makes to put the group back as the owner had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    SetMaxSize { from: u32, to: u32 },
    ResumeAzRebalance,
}

/// What puts the group back, compared with `before` (the discovery's snapshot): MaxSize (never
/// below the current desired capacity) and `AZRebalance` when the swap suspended it.
pub fn restore(before: &Group, now: &Group) -> Vec<GroupChange> {
    let mut changes = Vec::new();
    let max = before.max_size.max(now.desired);
    if now.max_size != max {
        changes.push(GroupChange::SetMaxSize {
            from: now.max_size,
            to: max,
        });
    }
    let suspended_by_swap = !before.suspended.iter().any(|p| p == AZ_REBALANCE);
    if suspended_by_swap && now.suspended.iter().any(|p| p == AZ_REBALANCE) {
        changes.push(GroupChange::ResumeAzRebalance);
    }
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

/// What the rollback does for one member whose replacement it found, from what the group shows
/// now (a crashed step may have left more, or less, than the state says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberUndo {
    /// The replacement never joined: terminate it.
    TerminateReplacement,
    /// Both are in the group: detach the replacement with decrement (N+1 → N), terminate it.
    DetachAndTerminateReplacement,
    /// The predecessor left and its replacement serves: that member's swap is done; terminate the
    /// leftover predecessor.
    KeepReplacement,
    /// The predecessor left but its replacement is not InService: attach the predecessor back (if
    /// it still runs), then detach and terminate the replacement.
    RestorePredecessor { reattach: bool },
}

/// The rollback's table: never terminates a predecessor unless its replacement is InService.
pub fn member_undo(
    replacement: Option<&Member>,
    predecessor: Option<&Member>,
    predecessor_running: bool,
) -> MemberUndo {
    match (replacement, predecessor) {
        (None, _) => MemberUndo::TerminateReplacement,
        (Some(_), Some(_)) => MemberUndo::DetachAndTerminateReplacement,
        (Some(n), None) if n.in_service() => MemberUndo::KeepReplacement,
        (Some(_), None) => MemberUndo::RestorePredecessor {
            reattach: predecessor_running,
        },
    }
}

/// The per-group lock key: one swap at a time per group.
pub fn lock_key(request: &SwapRequest) -> String {
    format!(
        "lock#{}#{}#asg/{}",
        request.account_id, request.region, request.asg_name
    )
}

/// The ledger key of one member's swap.
pub fn record_id(swap_id: &str, old: &str) -> String {
    format!("{swap_id}#{old}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "account_id": "123456789012", "region": "us-east-1", "asg_name": "web", "mode": "live",
            "settings": {"wait_seconds": 1},
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

    #[test]
    fn the_restore_puts_back_only_what_the_swap_changed() {
        let before = group(); // max 4, nothing suspended
        let mut now = group();
        now.max_size = 5;
        now.suspended = vec![AZ_REBALANCE.into()];
        assert_eq!(
            restore(&before, &now),
            [
                GroupChange::SetMaxSize { from: 5, to: 4 },
                GroupChange::ResumeAzRebalance
            ]
        );
        // The owner had suspended AZRebalance before the swap: it stays suspended.
        let mut owned = group();
        owned.suspended = vec![AZ_REBALANCE.into()];
        assert!(restore(&owned, &owned).is_empty());
        // Never below the desired capacity the group has now.
        now.desired = 5;
        assert_eq!(restore(&before, &now), [GroupChange::ResumeAzRebalance]);
    }

    #[test]
    fn the_rollback_never_terminates_a_predecessor_whose_replacement_does_not_serve() {
        let serving = member("i-9");
        let starting = Member {
            lifecycle_state: "Pending".into(),
            ..member("i-9")
        };
        let old = member("i-1");
        assert_eq!(
            member_undo(None, Some(&old), true),
            MemberUndo::TerminateReplacement
        );
        assert_eq!(
            member_undo(Some(&serving), Some(&old), true),
            MemberUndo::DetachAndTerminateReplacement
        );
        assert_eq!(
            member_undo(Some(&serving), None, true),
            MemberUndo::KeepReplacement
        );
        assert_eq!(
            member_undo(Some(&starting), None, true),
            MemberUndo::RestorePredecessor { reattach: true }
        );
        assert_eq!(
            member_undo(Some(&starting), None, false),
            MemberUndo::RestorePredecessor { reattach: false }
        );
    }
}
