//! The atomic switch: which standalone on-demand instances may move to Spot, how risky the move
//! is, the state its steps pass to each other (under `$.plan`, `$.image`, `$.launch`, `$.health`,
//! `$.cutover`; a caught error under `$.error`), and the decisions its steps take on what they find.

use serde::{Deserialize, Serialize};

use crate::account::Environment;
use crate::error::ErrorName;
use crate::instance::{ElasticIp, SourceInstance};
use crate::market::{Candidate, Exclusion, LOW_CONFIDENCE_BAND};
use crate::pool::PoolKey;
use crate::saga::step::{
    CaughtError, Phase, Progress, Risk, SagaMode, Settings, SettingsRequest, StepError,
};
use crate::tags::{self, EXEMPT_TAG, GROUP_TAG, SOURCE_TAG};

/// An explicit choice of target pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetChoice {
    #[serde(default)]
    pub instance_types: Vec<String>,
    #[serde(default)]
    pub az_ids: Vec<String>,
}

/// The saga's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRequest {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub mode: SagaMode,
    #[serde(default)]
    pub target: Option<TargetChoice>,
}

/// The per-instance lock key: one live switch at a time per instance.
pub fn lock_key(request: &SwitchRequest) -> String {
    format!(
        "lock#{}#{}#{}",
        request.account_id, request.region, request.instance_id
    )
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
    if tags::is_managed(&source.tags) && source.tags.contains_key(SOURCE_TAG) {
        reasons.push("already a clone made by a switch".to_owned());
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

/// The whole state, as Step Functions passes it from step to step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchState {
    #[serde(flatten)]
    pub request: SwitchRequest,
    #[serde(default)]
    pub settings: Option<SettingsRequest>,
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
}

/// What every switch step Lambda receives: the state, the execution's name (the switch id, stable
/// across retries) and, for the image step, the phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The image step's verdict on the image's state at its `checks`-th check of at most `limit`
/// (`None`: the image no longer exists).
pub fn image_verdict(
    image_id: &str,
    state: Option<&str>,
    checks: u32,
    limit: u32,
) -> Result<ImageState, StepError> {
    let failed =
        |why: String| StepError::new(ErrorName::ImageFailed, format!("image {image_id}: {why}"));
    match state {
        None => Err(failed("no longer exists".into())),
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

/// What the rollback found in the account, before it acts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// The clone: the launch step's, or one a crashed launch left behind (found by tag).
    pub clone: Option<String>,
    /// The source's address and the instance it is associated with now.
    pub address: Option<(ElasticIp, Option<String>)>,
    /// The source carries this switch's mark (the cut-over marks it before stopping it).
    pub source_marked: bool,
    /// The source's state (`None`: gone).
    pub source_state: Option<String>,
    /// The switch's image and every snapshot known of it.
    pub image: Option<(String, Vec<String>)>,
}

/// One compensating action, in the order the rollback takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    TerminateClone(String),
    MoveAddressBack(ElasticIp),
    StartSource,
    /// The source is still stopping: fail with `Transient` so the state machine retries later.
    WaitForSource,
    /// Remove the switch's mark from the source, so no later step mistakes it for one it stopped.
    Unmark,
    RemoveImage {
        image_id: String,
        snapshot_ids: Vec<String>,
    },
    KeepImage(String),
}

/// The compensation of a failed switch, from what the rollback found: the clone goes, the address
/// comes back, the source runs again if the saga stopped it, the image goes (unless kept).
pub fn undo(found: &Found, source: &str, keep_image: bool) -> Vec<Undo> {
    let mut actions = Vec::new();
    if let Some(clone) = &found.clone {
        actions.push(Undo::TerminateClone(clone.clone()));
    }
    if let Some((ip, holder)) = &found.address
        && holder.as_deref() != Some(source)
    {
        actions.push(Undo::MoveAddressBack(ip.clone()));
    }
    if found.source_marked {
        match found.source_state.as_deref() {
            Some("stopped") => actions.push(Undo::StartSource),
            Some("stopping") => {
                actions.push(Undo::WaitForSource);
                return actions;
            }
            _ => {}
        }
        actions.push(Undo::Unmark);
    }
    if let Some((image_id, snapshot_ids)) = &found.image {
        actions.push(if keep_image {
            Undo::KeepImage(image_id.clone())
        } else {
            let mut snapshot_ids = snapshot_ids.clone();
            snapshot_ids.sort();
            snapshot_ids.dedup();
            Undo::RemoveImage {
                image_id: image_id.clone(),
                snapshot_ids,
            }
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> SourceInstance {
        crate::testing::source_instance()
    }

    #[test]
    fn spot_asg_kubernetes_instance_store_exempt_and_clones_are_not_eligible() {
        assert!(ineligibility(&source()).is_empty());
        type Change = fn(&mut SourceInstance);
        let cases: [(&str, Change); 7] = [
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
    fn the_image_is_waited_for_until_available_and_failed_otherwise() {
        assert_eq!(
            image_verdict("ami-1", Some("available"), 1, 3),
            Ok(ImageState::Available)
        );
        assert_eq!(
            image_verdict("ami-1", Some("pending"), 2, 3),
            Ok(ImageState::Pending)
        );
        for (state, checks) in [(Some("pending"), 3), (Some("failed"), 1), (None, 1)] {
            let e = image_verdict("ami-1", state, checks, 3).unwrap_err();
            assert_eq!(e.name, ErrorName::ImageFailed, "{state:?}");
        }
    }

    #[test]
    fn the_source_is_never_stopped_before_the_clone_passed_its_checks() {
        let mut state: SwitchState = serde_json::from_value(json!({
            "account_id": "123456789012", "region": "us-east-1", "instance_id": "i-0abc",
            "mode": "live"
        }))
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
            clone: Some("i-clone".into()),
            address: address(Some("i-source")),
            source_marked: false,
            source_state: Some("running".into()),
            image: Some((
                "ami-1".into(),
                vec!["snap-2".into(), "snap-1".into(), "snap-2".into()],
            )),
        };
        assert_eq!(
            undo(&found, "i-source", false),
            [
                Undo::TerminateClone("i-clone".into()),
                Undo::RemoveImage {
                    image_id: "ami-1".into(),
                    snapshot_ids: vec!["snap-1".into(), "snap-2".into()]
                }
            ]
        );
        assert_eq!(
            undo(&found, "i-source", true).last(),
            Some(&Undo::KeepImage("ami-1".into()))
        );
    }

    #[test]
    fn a_failure_after_the_cut_over_brings_the_source_and_its_address_back() {
        let found = Found {
            clone: Some("i-clone".into()),
            address: address(Some("i-clone")),
            source_marked: true,
            source_state: Some("stopped".into()),
            image: None,
        };
        let actions = undo(&found, "i-source", false);
        assert_eq!(
            actions,
            [
                Undo::TerminateClone("i-clone".into()),
                Undo::MoveAddressBack(address(None).unwrap().0),
                Undo::StartSource,
                Undo::Unmark,
            ]
        );
        // Still stopping: nothing after the wait, the retried rollback does the rest.
        let stopping = Found {
            source_state: Some("stopping".into()),
            ..found
        };
        assert_eq!(
            undo(&stopping, "i-source", false).last(),
            Some(&Undo::WaitForSource)
        );
        // Nothing found, nothing done.
        assert!(undo(&Found::default(), "i-source", false).is_empty());
    }
}
