//! The atomic switch: which standalone on-demand instances may move to Spot, how risky the move
//! is, the state its steps pass to each other (under `$.plan`, `$.image`, `$.launch`, `$.health`,
//! `$.cutover`; a caught error under `$.error`), and the decisions its steps take on what they find.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::Environment;
use crate::error::ErrorName;
use crate::ids::Field;
use crate::instance::{ElasticIp, SourceInstance};
use crate::market::{Candidate, Exclusion, LOW_CONFIDENCE_BAND};
use crate::pool::PoolKey;
use crate::saga::ledger::{LedgerRecord, LedgerStatus};
use crate::saga::step::{
    CaughtError, Phase, Progress, Risk, SagaMode, Settings, SettingsRequest, StepError,
};
use crate::tags::{self, CREATED_VIA, EXEMPT_TAG, GROUP_TAG, SOURCE_TAG, VIA_FAILOVER};

/// An explicit choice of target pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetChoice {
    #[serde(default)]
    pub instance_types: Vec<String>,
    #[serde(default)]
    pub az_ids: Vec<String>,
}

/// At most this many instance types and AZ ids in a target choice.
pub const MAX_TARGET_TYPES: usize = 20;
pub const MAX_TARGET_AZS: usize = 10;

/// The saga's input, exactly: an unknown field anywhere is refused (`InvalidRequest`), so nothing
/// a caller adds can reach a later step. The plan step hands the following steps this request,
/// validated and with the mode the live switch allows, in place of the execution's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub mode: SagaMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetChoice>,
    /// Pacing over the stack's (tests use one-second waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsRequest>,
}

impl SwitchRequest {
    /// What serde cannot check: the ids' syntax and the lists' sizes.
    pub fn validate(&self) -> Result<(), StepError> {
        Field::AccountId.check(&self.account_id)?;
        Field::Region.check(&self.region)?;
        Field::InstanceId.check(&self.instance_id)?;
        if let Some(target) = &self.target {
            if target.instance_types.len() > MAX_TARGET_TYPES
                || target.az_ids.len() > MAX_TARGET_AZS
            {
                return Err(StepError::invalid(format!(
                    "target names more than {MAX_TARGET_TYPES} types or {MAX_TARGET_AZS} AZs"
                )));
            }
            for t in &target.instance_types {
                Field::InstanceType.check(t)?;
            }
            for az in &target.az_ids {
                Field::AzId.check(az)?;
            }
        }
        Ok(())
    }
}

/// The per-instance lock key: one live switch at a time per instance.
/// A switch's downtime in milliseconds: from the source's stop request to its address answering
/// on the clone; never negative (clocks of one process, but a sub-millisecond race rounds to 0).
pub fn downtime_ms(stop_requested: DateTime<Utc>, address_answered: DateTime<Utc>) -> u64 {
    (address_answered - stop_requested)
        .num_milliseconds()
        .max(0) as u64
}

pub fn lock_key(request: &SwitchRequest) -> String {
    lock_key_of(&request.account_id, &request.region, &request.instance_id)
}

pub fn lock_key_of(account_id: &str, region: &str, instance_id: &str) -> String {
    format!("lock#{account_id}#{region}#{instance_id}")
}

/// Why an instance is not a switch candidate; empty means eligible.
pub fn ineligibility(source: &SourceInstance) -> Vec<String> {
    let mut reasons = Vec::new();
    if source.lifecycle.as_deref() == Some("spot") {
        reasons.push("already a Spot instance".to_owned());
    }
    if source.state != "running" {
        reasons.push(format!("state is {}, not running", source.state));
    }
    if source.tags.contains_key(GROUP_TAG) {
        reasons.push("member of an Auto Scaling group (the ASG swap handles it)".to_owned());
    }
    if let Some(k) = tags::cluster_tag(&source.tags) {
        reasons.push(format!(
            "Kubernetes node (tag {k}): its cluster autoscaler owns it"
        ));
    }
    if source.root_device_type != "ebs" {
        reasons.push("instance-store root: cannot be imaged".to_owned());
    }
    if source.tags.contains_key(EXEMPT_TAG) {
        reasons.push(format!("tagged {EXEMPT_TAG}"));
    }
    // A failover's on-demand replacement may go back to Spot; a switch's clone is one already.
    if tags::is_managed(&source.tags)
        && source.tags.contains_key(SOURCE_TAG)
        && source.tags.get(CREATED_VIA).map(String::as_str) != Some(VIA_FAILOVER)
    {
        reasons.push("already a clone made by a switch".to_owned());
    }
    // Its owner asked that it never be lost; a Spot clone could carry neither protection.
    if source.termination_protection {
        reasons.push("termination protection is on: a Spot instance cannot carry it".to_owned());
    }
    if source.stop_protection {
        reasons.push("stop protection is on: a Spot instance cannot carry it".to_owned());
    }
    if let Some(why) = source.unpriced_platform() {
        reasons.push(why);
    }
    reasons
}

/// The risk of switching `source` to `best`, one level per concern, with the concerns.
pub fn risk(
    environment: Environment,
    source: &SourceInstance,
    best: &Candidate,
) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    if environment == Environment::Prod {
        reasons.push("PROD account".to_owned());
    }
    if source.vcpus >= 16 || source.memory_mib >= 64 * 1024 {
        reasons.push(format!(
            "large instance ({} vCPU, {} GiB)",
            source.vcpus,
            source.memory_mib / 1024
        ));
    }
    if source.vcpus >= 64 {
        reasons.push("very large instance".to_owned());
    }
    if let Some(ip) = &source.elastic_ip {
        reasons.push(format!("Elastic IP {} moves to the clone", ip.public_ip));
    }
    if best.interruption_band >= LOW_CONFIDENCE_BAND {
        reasons.push(format!(
            "low-confidence pool ({} interruptions)",
            best.interruption_label
        ));
    }
    (Risk::of(&reasons), reasons)
}

/// One line for an operator (the approval request): from → to, saving.
pub fn summary(source: &SourceInstance, best: Option<&Candidate>) -> String {
    match best {
        Some(best) => format!(
            "{} {} → Spot {} in {} at ${:.4}/h ({} interruptions), saves ${:.4}/h",
            source.instance_id,
            source.instance_type,
            best.instance_type,
            best.pool.az_id(),
            best.spot_price,
            best.interruption_label,
            best.saving_per_hour
        ),
        None => format!(
            "{} {}: no candidate",
            source.instance_id, source.instance_type
        ),
    }
}

// ---- the state the steps pass on ------------------------------------------------------------------

/// The plan step's output: what the following steps need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub switch_id: String,
    pub source: SourceInstance,
    pub on_demand_price: f64,
    /// Ranked, best first.
    pub candidates: Vec<Candidate>,
    pub exclusions: Vec<Exclusion>,
    pub risk: Risk,
    pub risk_reasons: Vec<String>,
    pub needs_approval: bool,
    /// Best candidate's saving, USD per hour (the counterfactual in shadow mode).
    pub saving_per_hour: f64,
    /// One line for an operator (the approval request): from → to, saving.
    pub summary: String,
    /// The saga's pacing, resolved (the state machine's Wait states read it).
    pub settings: Settings,
}

/// An image's state as the image step reports it; the state machine loops while `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Pending,
    Available,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStep {
    pub image_id: String,
    pub state: ImageState,
    pub checks: u32,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchStep {
    pub instance_id: String,
    pub pool: PoolKey,
    pub instance_type: String,
    pub az_name: String,
    pub spot_price: f64,
    pub saving_per_hour: f64,
    /// Pools passed over before this one, and why.
    #[serde(default)]
    pub skipped: Vec<Exclusion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverStep {
    pub stopped: String,
    pub elastic_ip_moved: bool,
}

/// The plan step's output, which replaces the execution's input as the state every later step
/// reads: the validated request and the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub request: SwitchRequest,
    pub plan: Plan,
}

/// What the plan step receives: the execution's input as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub request: SwitchRequest,
    pub execution: String,
}

/// The whole state after the plan, as Step Functions passes it from step to step; each step adds
/// its output under its own key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchState {
    pub request: SwitchRequest,
    #[serde(default)]
    pub plan: Option<Plan>,
    #[serde(default)]
    pub image: Option<ImageStep>,
    #[serde(default)]
    pub launch: Option<LaunchStep>,
    #[serde(default)]
    pub health: Option<Progress>,
    #[serde(default)]
    pub cutover: Option<CutoverStep>,
    #[serde(default)]
    pub error: Option<CaughtError>,
    /// What the operator's answer carried (the approval step's output); nothing reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
}

/// What every switch step after the plan receives: the state, the execution's name (the switch id,
/// stable across retries) and, for the image step, the phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchInput {
    pub state: SwitchState,
    pub execution: String,
    #[serde(default)]
    pub phase: Option<Phase>,
}

impl SwitchState {
    pub fn plan(&self, step: &str) -> Result<&Plan, StepError> {
        self.plan
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "plan"))
    }

    pub fn image(&self, step: &str) -> Result<&ImageStep, StepError> {
        self.image
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "image"))
    }

    pub fn launch(&self, step: &str) -> Result<&LaunchStep, StepError> {
        self.launch
            .as_ref()
            .ok_or_else(|| StepError::missing(step, "launch"))
    }
}

// ---- decisions --------------------------------------------------------------------------------------

/// How long the first snapshot of a volume may take, in seconds per GiB (about 100 MiB/s; a
/// first snapshot copies every written block, later ones only changes).
pub const IMAGE_SECONDS_PER_GIB: u64 = 10;
/// The image wait's fixed part, in seconds (registering the image, small volumes).
pub const IMAGE_BASE_SECONDS: u64 = 1800;

/// The image checks a switch of `source` may wait: the stack's count, raised to cover the first
/// snapshot of the source's EBS volumes (30 min plus 10 s per GiB), within the settings' bounds
/// (at most 1000 checks, about 4 h at 15 s). A request that names `image_checks` keeps its own.
pub fn image_checks(settings: &Settings, requested: Option<u32>, source: &SourceInstance) -> u32 {
    if let Some(checks) = requested {
        return checks;
    }
    let gib: u64 = source
        .block_devices
        .iter()
        .map(|b| u64::from(b.size_gb))
        .sum();
    let seconds = IMAGE_BASE_SECONDS + gib * IMAGE_SECONDS_PER_GIB;
    let needed = seconds.div_ceil(u64::from(settings.wait_seconds.max(1)));
    let needed = u32::try_from(needed).unwrap_or(u32::MAX);
    settings.image_checks.max(needed).min(Settings::CHECKS.1)
}

/// The image step's verdict on the image's state at its `checks`-th check of at most `limit`
/// (`None`: not found, which right after `CreateImage` may only mean not yet visible).
pub fn image_verdict(
    image_id: &str,
    state: Option<&str>,
    checks: u32,
    limit: u32,
) -> Result<ImageState, StepError> {
    let failed =
        |why: String| StepError::new(ErrorName::ImageFailed, format!("image {image_id}: {why}"));
    match state {
        None if super::step::may_be_unseen(checks, limit) => Ok(ImageState::Pending),
        None => Err(failed(format!(
            "no longer exists (not found at check {checks})"
        ))),
        Some("available") => Ok(ImageState::Available),
        Some("pending") if checks < limit => Ok(ImageState::Pending),
        Some("pending") => Err(failed(format!("still pending after {checks} checks"))),
        Some(other) => Err(failed(format!("state {other}"))),
    }
}

/// The cut-over stops the source only after its clone passed 2/2 status checks.
pub fn ready_to_cut_over(state: &SwitchState) -> Result<(), StepError> {
    if state.health.as_ref().is_some_and(Progress::is_ok) {
        Ok(())
    } else {
        Err(StepError::invalid(
            "the clone has not passed its status checks",
        ))
    }
}

/// What the rollback receives: the state when a step failed, which is the execution's raw input
/// when the plan refused it. It is read leniently ([`RollbackView`]) and trusted for nothing that
/// names a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackInput {
    pub state: serde_json::Value,
    pub execution: String,
    /// `restore` (the default) or `finish`.
    #[serde(default)]
    pub phase: Option<Phase>,
}

/// The request's identity, as far as the rollback reads it (unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestIds {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    #[serde(default)]
    pub mode: Option<SagaMode>,
}

/// What the rollback reads of whatever state it is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RollbackView {
    /// `None` when the state names no request the rollback can read: nothing can have been done.
    pub request: Option<RequestIds>,
    pub plan: Option<Plan>,
    pub launch: Option<LaunchStep>,
    pub error: Option<CaughtError>,
    /// The first phase's last answer, when the state machine loops on it.
    pub progress: Option<RestoreProgress>,
}

impl RollbackView {
    /// The request under `request` (the state after the plan), else the state itself (the raw
    /// input the plan refused); each step's output only if it reads as one.
    pub fn read(state: &serde_json::Value) -> Self {
        fn part<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
            serde_json::from_value(v.clone()).ok()
        }
        let request = state
            .get("request")
            .and_then(part::<RequestIds>)
            .or_else(|| part::<RequestIds>(state));
        Self {
            request,
            plan: state.get("plan").and_then(part),
            launch: state.get("launch").and_then(part),
            error: state.get("error").and_then(part),
            progress: state.get("rollback").and_then(part),
        }
    }
}

/// What the rollback found in the account, each resource checked to carry this execution's mark
/// before it counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// Clones of this switch (tagged with its id), whatever the state says.
    pub clones: Vec<String>,
    /// The source's address, as the plan read it, and the instance it is associated with now.
    pub address: Option<(ElasticIp, Option<String>)>,
    /// The source carries this switch's mark (the cut-over marks it before stopping it).
    pub source_marked: bool,
    /// The source's state (`None`: gone).
    pub source_state: Option<String>,
    /// This switch's image (tagged with its id), if it still exists.
    pub image: Option<String>,
    /// This switch's snapshots: the image's, and any tagged with its id that an earlier attempt
    /// left when it deregistered the image.
    pub snapshots: Vec<String>,
}

/// Where the rollback's first phase left the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceRestore {
    /// This switch never stopped it (no mark): nothing to bring back.
    Untouched,
    /// It runs again.
    Running,
    /// Asked to start (or still stopping, or refused for capacity): the state machine waits and
    /// asks again.
    Starting,
    /// It no longer exists; nothing can bring it back.
    Gone,
}

/// The first phase's answer, read by the state machine's wait loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreProgress {
    pub source: SourceRestore,
    /// Rounds of the loop so far.
    pub checks: u32,
    /// How long the state machine waits between rounds.
    pub wait_seconds: u32,
}

/// What the first phase does to the source, from what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAction {
    Report(SourceRestore),
    /// Stopped by this switch: start it (again, if an earlier start did not take).
    Start,
    /// Stopping or pending: wait for it.
    Wait,
}

pub fn source_action(found: &Found) -> SourceAction {
    if !found.source_marked {
        return SourceAction::Report(SourceRestore::Untouched);
    }
    match found.source_state.as_deref() {
        Some("running") => SourceAction::Report(SourceRestore::Running),
        Some("stopped") => SourceAction::Start,
        None | Some("terminated" | "shutting-down") => SourceAction::Report(SourceRestore::Gone),
        Some(_) => SourceAction::Wait,
    }
}

/// The loop's verdict after `checks` rounds of at most `limit`: go on waiting, or give up with
/// `RollbackIncomplete` (the clone is kept running; an alarm watches this name).
pub fn restore_verdict(
    source: SourceRestore,
    checks: u32,
    limit: u32,
    source_id: &str,
) -> Result<SourceRestore, StepError> {
    if source == SourceRestore::Starting && checks >= limit {
        Err(StepError::new(
            ErrorName::RollbackIncomplete,
            format!(
                "{source_id} did not run again after {checks} checks; its Spot clone is kept running"
            ),
        ))
    } else {
        Ok(source)
    }
}

/// One compensating action of the second phase, in the order it takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    MoveAddressBack(ElasticIp),
    TerminateClone(String),
    /// Remove the switch's mark from the source, so no later step mistakes it for one it stopped.
    Unmark,
    RemoveImage {
        image_id: Option<String>,
        snapshot_ids: Vec<String>,
    },
    KeepImage(String),
}

/// The second phase, once the source runs again (or was never stopped): the address comes back
/// (only from this switch's clone), then the clone goes, the mark and the image go (unless kept).
/// Refused while a source this switch stopped is not running: the clone stays until it is.
pub fn finish(found: &Found, keep_image: bool) -> Result<Vec<Undo>, StepError> {
    match source_action(found) {
        SourceAction::Report(
            SourceRestore::Untouched | SourceRestore::Running | SourceRestore::Gone,
        ) => {}
        SourceAction::Report(SourceRestore::Starting)
        | SourceAction::Start
        | SourceAction::Wait => {
            return Err(StepError::new(
                ErrorName::Transient,
                "the source does not run yet; the clone stays until it does",
            ));
        }
    }
    let mut actions = Vec::new();
    if let Some((ip, Some(holder))) = &found.address
        && found.clones.contains(holder)
    {
        actions.push(Undo::MoveAddressBack(ip.clone()));
    }
    actions.extend(found.clones.iter().map(|c| Undo::TerminateClone(c.clone())));
    if found.source_marked {
        actions.push(Undo::Unmark);
    }
    match (&found.image, keep_image) {
        (Some(image), true) => actions.push(Undo::KeepImage(image.clone())),
        (None, true) => {}
        (image, false) if image.is_some() || !found.snapshots.is_empty() => {
            let mut snapshot_ids = found.snapshots.clone();
            snapshot_ids.sort();
            snapshot_ids.dedup();
            actions.push(Undo::RemoveImage {
                image_id: image.clone(),
                snapshot_ids,
            });
        }
        _ => {}
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {

    #[test]
    fn downtime_runs_from_the_stop_request_to_the_address_and_is_never_negative() {
        use chrono::TimeZone;
        let stop = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        assert_eq!(
            downtime_ms(stop, stop + chrono::TimeDelta::milliseconds(2_350)),
            2_350
        );
        assert_eq!(
            downtime_ms(stop, stop - chrono::TimeDelta::milliseconds(1)),
            0
        );
    }

    use super::*;
    use serde_json::json;

    fn source() -> SourceInstance {
        crate::testing::source_instance()
    }

    #[test]
    fn spot_asg_kubernetes_instance_store_exempt_protected_and_clones_are_not_eligible() {
        assert!(ineligibility(&source()).is_empty());
        type Change = fn(&mut SourceInstance);
        let cases: [(&str, Change); 9] = [
            ("Spot", |s| s.lifecycle = Some("spot".into())),
            ("Auto Scaling", |s| {
                s.tags.insert(GROUP_TAG.into(), "web".into());
            }),
            ("Kubernetes", |s| {
                s.tags
                    .insert("karpenter.sh/nodepool".into(), "default".into());
            }),
            ("Kubernetes", |s| {
                s.tags
                    .insert("kubernetes.io/cluster/prod".into(), "owned".into());
            }),
            ("instance-store", |s| {
                s.root_device_type = "instance-store".into()
            }),
            ("exempt", |s| {
                s.tags.insert(EXEMPT_TAG.into(), "".into());
            }),
            ("clone", |s| {
                s.tags.insert("ManagedBy".into(), "SpotOptimizer".into());
                s.tags.insert(SOURCE_TAG.into(), "i-0older".into());
            }),
            ("termination protection", |s| {
                s.termination_protection = true
            }),
            ("stop protection", |s| s.stop_protection = true),
        ];
        for (what, change) in cases {
            let mut s = source();
            change(&mut s);
            let reasons = ineligibility(&s);
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains(what) || r.contains(&what.to_lowercase())),
                "{what}: {reasons:?}"
            );
        }
    }

    fn candidate(band: u8) -> Candidate {
        Candidate {
            pool: PoolKey::new("us-east-1", "use1-az6", "c5.xlarge").unwrap(),
            instance_type: "c5.xlarge".into(),
            az_name: "us-east-1a".into(),
            subnet_id: "subnet-a".into(),
            spot_price: 0.04,
            interruption_band: band,
            interruption_label: if band >= 4 { ">20%" } else { "<5%" }.into(),
            saving_per_hour: 0.05,
            score: 0.04,
        }
    }

    #[test]
    fn risk_grows_with_each_concern() {
        assert_eq!(
            risk(Environment::Lab, &source(), &candidate(0)).0,
            Risk::Low
        );
        assert_eq!(
            risk(Environment::Prod, &source(), &candidate(0)).0,
            Risk::Medium
        );
        let mut big = source();
        big.vcpus = 64;
        big.elastic_ip = Some(ElasticIp {
            allocation_id: "eipalloc-1".into(),
            public_ip: "1.2.3.4".into(),
        });
        let (level, reasons) = risk(Environment::Prod, &big, &candidate(4));
        assert_eq!(level, Risk::Critical);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
    }

    #[test]
    fn the_image_wait_grows_with_the_sources_volumes_unless_the_request_names_it() {
        let mut source: SourceInstance = serde_json::from_value(json!({
            "instance_id": "i-1", "instance_type": "m5.large", "state": "running",
            "architecture": "x86_64", "vcpus": 2, "memory_mib": 8192, "az_name": "us-east-1a",
            "az_id": "use1-az1", "vpc_id": "vpc-1", "subnet_id": "subnet-1",
            "security_group_ids": [], "ebs_optimized": true, "root_device_type": "ebs",
            "block_devices": [], "tags": {}
        }))
        .unwrap();
        let settings = Settings::default(); // 120 checks, 15 s apart: 30 min
        assert_eq!(image_checks(&settings, None, &source), 120);
        let volume = |size_gb| crate::instance::BlockDevice {
            device_name: "/dev/xvda".into(),
            volume_id: "vol-1".into(),
            size_gb,
            volume_type: "gp3".into(),
            delete_on_termination: true,
        };
        source.block_devices = vec![volume(8)];
        assert_eq!(image_checks(&settings, None, &source), 126); // 1880 s
        source.block_devices = vec![volume(100), volume(1024)];
        assert_eq!(image_checks(&settings, None, &source), 870); // 13040 s
        source.block_devices = vec![volume(16_384)];
        assert_eq!(image_checks(&settings, None, &source), 1000);
        assert_eq!(image_checks(&settings, Some(3), &source), 3);
    }

    #[test]
    fn the_image_is_waited_for_until_available_and_failed_otherwise() {
        assert_eq!(
            image_verdict("ami-1", Some("available"), 1, 3),
            Ok(ImageState::Available)
        );
        assert_eq!(
            image_verdict("ami-1", Some("pending"), 2, 3),
            Ok(ImageState::Pending)
        );
        assert_eq!(
            image_verdict("ami-1", None, 1, 120),
            Ok(ImageState::Pending)
        );
        for (state, checks) in [
            (Some("pending"), 3),
            (Some("failed"), 1),
            (None, super::super::step::UNSEEN_GRACE_CHECKS + 1),
        ] {
            let e = image_verdict("ami-1", state, checks, 3).unwrap_err();
            assert_eq!(e.name, ErrorName::ImageFailed, "{state:?}");
        }
    }

    #[test]
    fn the_source_is_never_stopped_before_the_clone_passed_its_checks() {
        let mut state: SwitchState = serde_json::from_value(json!({"request": {
            "account_id": "123456789012", "region": "us-east-1", "instance_id": "i-0abc1234",
            "mode": "live"
        }}))
        .unwrap();
        assert_eq!(
            ready_to_cut_over(&state).unwrap_err().name,
            ErrorName::InvalidRequest
        );
        state.health = Some(Progress::pending(3));
        assert!(ready_to_cut_over(&state).is_err());
        state.health = Some(Progress::ok(4));
        assert!(ready_to_cut_over(&state).is_ok());
    }

    fn address(holder: Option<&str>) -> Option<(ElasticIp, Option<String>)> {
        Some((
            ElasticIp {
                allocation_id: "eipalloc-1".into(),
                public_ip: "1.2.3.4".into(),
            },
            holder.map(str::to_owned),
        ))
    }

    #[test]
    fn a_failure_before_the_cut_over_removes_the_clone_and_the_image_and_leaves_the_source() {
        let found = Found {
            clones: vec!["i-clone".into()],
            address: address(Some("i-source")),
            source_marked: false,
            source_state: None,
            image: Some("ami-1".into()),
            snapshots: vec!["snap-2".into(), "snap-1".into(), "snap-2".into()],
        };
        assert_eq!(
            source_action(&found),
            SourceAction::Report(SourceRestore::Untouched)
        );
        assert_eq!(
            finish(&found, false).unwrap(),
            [
                Undo::TerminateClone("i-clone".into()),
                Undo::RemoveImage {
                    image_id: Some("ami-1".into()),
                    snapshot_ids: vec!["snap-1".into(), "snap-2".into()]
                }
            ]
        );
        assert_eq!(
            finish(&found, true).unwrap().last(),
            Some(&Undo::KeepImage("ami-1".into()))
        );
        // The image was deregistered by an earlier attempt; its snapshots are still removed.
        let leftovers = Found {
            image: None,
            ..found
        };
        assert!(matches!(
            finish(&leftovers, false).unwrap().last(),
            Some(Undo::RemoveImage { image_id: None, .. })
        ));
    }

    #[test]
    fn after_the_cut_over_the_source_runs_again_before_the_address_moves_and_the_clone_goes() {
        let stopped = Found {
            clones: vec!["i-clone".into()],
            address: address(Some("i-clone")),
            source_marked: true,
            source_state: Some("stopped".into()),
            ..Found::default()
        };
        // First phase: start it; the clone is not touched while the source does not run.
        assert_eq!(source_action(&stopped), SourceAction::Start);
        assert_eq!(
            finish(&stopped, false).unwrap_err().name,
            ErrorName::Transient
        );
        for state in ["pending", "stopping"] {
            let moving = Found {
                source_state: Some(state.into()),
                ..stopped.clone()
            };
            assert_eq!(source_action(&moving), SourceAction::Wait, "{state}");
            assert!(finish(&moving, false).is_err(), "{state}");
        }
        // Second phase, once it runs: address back first, then the clone, then the mark.
        let running = Found {
            source_state: Some("running".into()),
            ..stopped
        };
        assert_eq!(
            finish(&running, false).unwrap(),
            [
                Undo::MoveAddressBack(address(None).unwrap().0),
                Undo::TerminateClone("i-clone".into()),
                Undo::Unmark,
            ]
        );
        assert!(finish(&Found::default(), false).unwrap().is_empty());
    }

    #[test]
    fn a_source_that_never_runs_again_keeps_its_clone_and_names_the_failure() {
        assert_eq!(
            restore_verdict(SourceRestore::Starting, 3, 40, "i-src"),
            Ok(SourceRestore::Starting)
        );
        let e = restore_verdict(SourceRestore::Starting, 40, 40, "i-src").unwrap_err();
        assert_eq!(e.name, ErrorName::RollbackIncomplete);
        assert!(e.message.contains("kept running"), "{e}");
        assert_eq!(
            restore_verdict(SourceRestore::Running, 99, 40, "i-src"),
            Ok(SourceRestore::Running)
        );
    }

    #[test]
    fn the_rollback_moves_an_address_only_away_from_this_switchs_own_clone() {
        // The address is on some other instance (another switch's clone, or the owner moved it):
        // it stays where it is.
        let found = Found {
            clones: vec!["i-clone".into()],
            address: address(Some("i-someone-else")),
            ..Found::default()
        };
        assert!(
            !finish(&found, false)
                .unwrap()
                .iter()
                .any(|a| matches!(a, Undo::MoveAddressBack(_)))
        );
    }

    #[test]
    fn the_rollback_reads_the_state_after_the_plan_or_the_raw_input_it_refused() {
        let after_plan = json!({"request": {"account_id": "123456789012", "region": "us-east-1",
            "instance_id": "i-0abc1234", "mode": "live"}, "error": {"Error": "ImageFailed"}});
        let view = RollbackView::read(&after_plan);
        assert_eq!(view.request.unwrap().instance_id, "i-0abc1234");
        assert_eq!(view.error.unwrap().error, "ImageFailed");
        let refused = json!({"account_id": "123456789012", "region": "us-east-1",
            "instance_id": "i-0abc1234", "mode": "live",
            "launch": {"instance_id": "i-0fffffffffffffff0"},
            "error": {"Error": "InvalidRequest", "Cause": null}});
        let view = RollbackView::read(&refused);
        assert_eq!(view.request.unwrap().instance_id, "i-0abc1234");
        assert!(view.launch.is_none(), "a half-written launch is not one");
        assert!(RollbackView::read(&json!("nonsense")).request.is_none());
    }

    #[test]
    fn a_request_is_exactly_a_request() {
        let ok = json!({"account_id": "123456789012", "region": "us-east-1",
            "instance_id": "i-0123456789abcdef0", "mode": "live",
            "target": {"instance_types": ["m5.large"]}, "settings": {"wait_seconds": 1}});
        let request: SwitchRequest = serde_json::from_value(ok.clone()).unwrap();
        assert!(request.validate().is_ok());
        // Anything a later step would read, injected into the input, is refused up front.
        for (key, value) in [
            ("launch", json!({"instance_id": "i-0fffffffffffffff0"})),
            ("image", json!({"image_id": "ami-1"})),
            ("plan", json!({})),
        ] {
            let mut injected = ok.clone();
            injected[key] = value;
            assert!(
                serde_json::from_value::<SwitchRequest>(injected).is_err(),
                "{key}"
            );
        }
        let mut typo = ok.clone();
        typo["target"]["azs"] = json!(["use1-az1"]);
        assert!(serde_json::from_value::<SwitchRequest>(typo).is_err());
        for (key, value) in [
            ("account_id", json!("12345")),
            ("region", json!("x".repeat(5000))),
            ("instance_id", json!(format!("i-{}", "0".repeat(100_000)))),
            ("instance_id", json!("i-zzzz")),
        ] {
            let mut bad = ok.clone();
            bad[key] = value;
            let request: SwitchRequest = serde_json::from_value(bad).unwrap();
            assert_eq!(
                request.validate().unwrap_err().name,
                ErrorName::InvalidRequest
            );
        }
        let mut many = ok;
        many["target"]["instance_types"] = json!(vec!["m5.large"; 21]);
        let request: SwitchRequest = serde_json::from_value(many).unwrap();
        assert!(request.validate().is_err());
    }
}

// ---- revert: an operator switches a completed switch back --------------------------------------

/// What `spotctl switch revert` asks of the `switch-revert` function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    pub switch_id: String,
    /// Who asks (recorded in the audit trail and the ledger).
    pub by: String,
    pub reason: String,
}

impl RevertRequest {
    /// A request with every field present, printable and bounded; anything else is refused.
    pub fn check(&self) -> Result<(), StepError> {
        let id_ok = !self.switch_id.is_empty()
            && self.switch_id.len() <= 128
            && self
                .switch_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '#'));
        if !id_ok {
            return Err(StepError::invalid(format!(
                "switch_id `{}` is not a switch id (1-128 of A-Z a-z 0-9 - _ #)",
                self.switch_id
            )));
        }
        for (field, value) in [("by", &self.by), ("reason", &self.reason)] {
            if value.trim().is_empty()
                || value.chars().count() > 256
                || value.chars().any(char::is_control)
            {
                return Err(StepError::invalid(format!(
                    "{field} must be 1-256 printable characters"
                )));
            }
        }
        Ok(())
    }
}

/// Whether the switch `record` can be switched back at `now`: a live switch (not a swap's
/// member) that completed, within `retention` of it. `Ok(true)`: already reverted (nothing to do).
pub fn revertible(
    record: &LedgerRecord,
    now: DateTime<Utc>,
    retention: chrono::TimeDelta,
) -> Result<bool, StepError> {
    if record.status == LedgerStatus::Reverted {
        return Ok(true);
    }
    if record.group.is_some() {
        return Err(StepError::not_eligible(
            "a group member is not reverted: scale the group or let it replace the member",
        ));
    }
    if record.mode != SagaMode::Live || record.status != LedgerStatus::Switched {
        return Err(StepError::not_eligible(format!(
            "only a live switch that completed can be reverted; this one is {:?} ({:?})",
            record.status, record.mode
        )));
    }
    if now > record.at + retention {
        return Err(StepError::not_eligible(format!(
            "switched {}, more than {} days ago: its source may be gone (SOURCE_RETENTION_DAYS)",
            record.at.format("%Y-%m-%d"),
            retention.num_days()
        )));
    }
    Ok(false)
}

/// What a revert did (or found done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverted {
    pub switch_id: String,
    pub source: String,
    pub clone: String,
    /// The address moved back to the source, if the clone held one.
    pub address: Option<String>,
    pub clone_terminated: bool,
    /// It was reverted before; this request changed nothing.
    pub already: bool,
}
