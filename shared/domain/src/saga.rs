//! The atomic-switch saga's state, as Step Functions passes it from step to step: the request, the
//! settings, and what each step added (under `$.plan`, `$.image`, `$.launch`, `$.health`,
//! `$.cutover`; a caught error under `$.error`). Each step reads the whole state and returns only
//! what it adds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pool::PoolKey;
use crate::switch::{Plan, Risk, SwitchMode, SwitchRequest};

/// Error names the state machine routes on (Lambda's `errorType`). The ASL names exactly these.
pub mod errors {
    pub const NOT_ELIGIBLE: &str = "NotEligible";
    pub const POOL_QUARANTINED: &str = "PoolQuarantined";
    pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacity";
    pub const IMAGE_FAILED: &str = "ImageFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    pub const APPROVAL_REJECTED: &str = "ApprovalRejected";
    pub const TRANSIENT: &str = "Transient";
    /// A replacement attached to its group did not become InService (and healthy in its target
    /// groups) in time.
    pub const ATTACH_FAILED: &str = "AttachFailed";
    /// A detached member did not leave its group or its target groups in time.
    pub const DETACH_FAILED: &str = "DetachFailed";
    /// The names the atomic switch's ASL routes on.
    pub const SWITCH: [&str; 7] = [
        NOT_ELIGIBLE,
        POOL_QUARANTINED,
        INSUFFICIENT_CAPACITY,
        IMAGE_FAILED,
        HEALTH_CHECK_FAILED,
        APPROVAL_REJECTED,
        TRANSIENT,
    ];
    /// The names the ASG swap's ASL routes on.
    pub const SWAP: [&str; 8] = [
        NOT_ELIGIBLE,
        POOL_QUARANTINED,
        INSUFFICIENT_CAPACITY,
        HEALTH_CHECK_FAILED,
        ATTACH_FAILED,
        DETACH_FAILED,
        APPROVAL_REJECTED,
        TRANSIENT,
    ];
}

/// Pacing of the saga's waits and loops; the plan step resolves them (input over defaults) so the
/// state machine's Wait states read `$.plan.settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub wait_seconds: u32,
    /// Image state checks before giving up.
    pub image_checks: u32,
    /// Status checks before giving up.
    pub health_checks: u32,
    pub approval_timeout_seconds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            wait_seconds: 15,
            image_checks: 120,
            health_checks: 40,
            approval_timeout_seconds: 86_400,
        }
    }
}

impl Settings {
    /// The stack's pacing: `WAIT_SECONDS`, `IMAGE_CHECKS`, `HEALTH_CHECKS`,
    /// `APPROVAL_TIMEOUT_SECONDS` (each at least 1), defaults otherwise.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &crate::settings::Env<F>,
    ) -> Result<Self, crate::settings::ConfigError> {
        let d = Self::default();
        let second = chrono::TimeDelta::seconds(1);
        let number = |key: &str, default: u32| -> Result<u32, crate::settings::ConfigError> {
            env.duration(key, second * default as i32, second, 1)
                .map(|t| u32::try_from(t.num_seconds()).unwrap_or(u32::MAX))
        };
        Ok(Self {
            wait_seconds: number("WAIT_SECONDS", d.wait_seconds)?,
            image_checks: number("IMAGE_CHECKS", d.image_checks)?,
            health_checks: number("HEALTH_CHECKS", d.health_checks)?,
            approval_timeout_seconds: number(
                "APPROVAL_TIMEOUT_SECONDS",
                d.approval_timeout_seconds,
            )?,
        })
    }

    /// The longest a switch can take with these settings (approval, image and health loops, plus
    /// an hour for the tasks and their retries): how long its per-instance lock lasts at most.
    pub fn longest_run(&self) -> chrono::TimeDelta {
        let loops =
            u64::from(self.image_checks + self.health_checks) * u64::from(self.wait_seconds);
        chrono::TimeDelta::seconds(
            i64::from(self.approval_timeout_seconds)
                + i64::try_from(loops).unwrap_or(i64::MAX / 2)
                + 3600,
        )
    }
}

/// The per-instance lock key: one live switch at a time per instance.
pub fn lock_key(request: &SwitchRequest) -> String {
    format!(
        "lock#{}#{}#{}",
        request.account_id, request.region, request.instance_id
    )
}

/// Optional pacing in the request (tests use one-second waits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    pub wait_seconds: Option<u32>,
    pub image_checks: Option<u32>,
    pub health_checks: Option<u32>,
    pub approval_timeout_seconds: Option<u32>,
}

impl SettingsRequest {
    pub fn resolve(&self, defaults: Settings) -> Settings {
        Settings {
            wait_seconds: self
                .wait_seconds
                .unwrap_or(defaults.wait_seconds)
                .clamp(1, 300),
            image_checks: self.image_checks.unwrap_or(defaults.image_checks).max(1),
            health_checks: self.health_checks.unwrap_or(defaults.health_checks).max(1),
            approval_timeout_seconds: self
                .approval_timeout_seconds
                .unwrap_or(defaults.approval_timeout_seconds)
                .max(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStep {
    pub image_id: String,
    /// `pending` or `available` (a failed image is an `ImageFailed` error).
    pub state: String,
    pub checks: u32,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
}

/// A pool the launch step passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub pool: PoolKey,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchStep {
    pub instance_id: String,
    pub pool: PoolKey,
    pub instance_type: String,
    pub az_name: String,
    pub spot_price: f64,
    pub saving_per_hour: f64,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStep {
    /// `ok` (2/2 checks passed) or `pending`.
    pub status: String,
    pub checks: u32,
    /// The ASG swap's batch (index of its first member): a new batch counts its checks afresh.
    #[serde(default)]
    pub batch: Option<usize>,
}

/// What a launched instance's status checks say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Running, system and instance checks `ok`.
    Ok,
    /// Not there yet; check again.
    Pending,
    /// Impaired, gone, stopping, or not ok after `limit` checks.
    Failed(String),
}

/// The verdict on `instance` at its `checks`-th check (1-based) of at most `limit`.
pub fn health_verdict(
    instance: &str,
    health: Option<&crate::ports::InstanceHealth>,
    checks: u32,
    limit: u32,
) -> HealthVerdict {
    let Some(h) = health else {
        return HealthVerdict::Failed(format!("{instance} no longer exists"));
    };
    if matches!(
        h.state.as_str(),
        "shutting-down" | "terminated" | "stopping" | "stopped"
    ) {
        return HealthVerdict::Failed(format!("{instance} is {}", h.state));
    }
    if h.system == "impaired" || h.instance == "impaired" {
        return HealthVerdict::Failed(format!(
            "{instance}: status checks impaired (system {}, instance {})",
            h.system, h.instance
        ));
    }
    if h.state == "running" && h.system == "ok" && h.instance == "ok" {
        return HealthVerdict::Ok;
    }
    if checks >= limit {
        return HealthVerdict::Failed(format!(
            "{instance}: checks not passed after {checks} tries (system {}, instance {})",
            h.system, h.instance
        ));
    }
    HealthVerdict::Pending
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverStep {
    pub stopped: String,
    pub elastic_ip_moved: bool,
}

/// An error a `Catch` put in the state. Either field may be missing or null (a task failed
/// without a cause): the rollback must read whatever it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default, deserialize_with = "null_as_empty")]
    pub error: String,
    #[serde(rename = "Cause", default, deserialize_with = "null_as_empty")]
    pub cause: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
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
    pub health: Option<HealthStep>,
    #[serde(default)]
    pub cutover: Option<CutoverStep>,
    #[serde(default)]
    pub error: Option<CaughtError>,
}

/// What every step Lambda receives: the state, the execution's name (the switch id, stable across
/// retries) and, for some steps, a phase or a task token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInput {
    pub state: SagaState,
    pub execution: String,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SwitchStatus {
    /// Shadow mode: what would have happened.
    Shadow,
    Switched,
    RolledBack,
    Rejected,
    NotEligible,
}

/// One switch in the ledger (`SWITCH_TABLE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub switch_id: String,
    pub account_id: String,
    pub region: String,
    pub source_instance_id: String,
    pub mode: SwitchMode,
    pub status: SwitchStatus,
    pub new_instance_id: Option<String>,
    pub pool: Option<PoolKey>,
    pub instance_type: Option<String>,
    pub on_demand_price: Option<f64>,
    pub spot_price: Option<f64>,
    /// Realised (switched) or counterfactual (shadow) saving, USD per hour.
    pub saving_per_hour: Option<f64>,
    pub risk: Option<Risk>,
    pub cause: Option<String>,
    pub at: DateTime<Utc>,
    /// The Auto Scaling group, for a member replaced by an ASG swap.
    #[serde(default)]
    pub group: Option<String>,
}

/// What the approval step is given: built by the state machine's `Parameters`, so every saga
/// shares one approval function and table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// The execution name (the switch or swap id).
    pub execution: String,
    pub token: String,
    /// `AtomicSwitch` or `AsgSwap`.
    pub saga: String,
    pub account_id: String,
    pub region: String,
    /// What would change: an instance id, or `asg/<name>`.
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub summary: String,
    pub timeout_seconds: u32,
}

/// A pending approval (`APPROVALS_TABLE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The execution name (the switch or swap id).
    pub saga_id: String,
    pub saga: String,
    pub task_token: String,
    pub account_id: String,
    pub region: String,
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// One line: from → to, saving.
    pub summary: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `PENDING`, `APPROVED` or `REJECTED`.
    pub status: String,
    pub answered_by: Option<String>,
    /// Why it was answered so (an operator's reason, or `timed out`).
    #[serde(default)]
    pub answer_note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_state_round_trips_with_what_step_functions_adds() {
        let input = json!({
            "account_id": "123456789012", "region": "us-east-1", "instance_id": "i-0abc", "mode": "live",
            "settings": {"wait_seconds": 1},
            "error": {"Error": "HealthCheckFailed", "Cause": "{\"errorMessage\":\"impaired\"}"}
        });
        let state: SagaState = serde_json::from_value(input).unwrap();
        assert_eq!(state.request.mode, SwitchMode::Live);
        assert_eq!(state.error.as_ref().unwrap().error, "HealthCheckFailed");
        let settings = state
            .settings
            .as_ref()
            .unwrap()
            .resolve(Settings::default());
        assert_eq!(settings.wait_seconds, 1);
        assert_eq!(settings.health_checks, Settings::default().health_checks);
        let unexplained: SagaState = serde_json::from_value(json!({
            "account_id": "123456789012", "region": "us-east-1", "instance_id": "i-0abc", "mode": "live",
            "error": {"Error": "ApprovalRejected", "Cause": null}
        }))
        .unwrap();
        assert_eq!(unexplained.error.unwrap().cause, "");
        let back = serde_json::to_value(&state).unwrap();
        assert_eq!(back["instance_id"], "i-0abc");
        assert_eq!(back["error"]["Error"], "HealthCheckFailed");
    }

    #[test]
    fn settings_are_bounded() {
        let s = SettingsRequest {
            wait_seconds: Some(0),
            image_checks: Some(0),
            ..Default::default()
        }
        .resolve(Settings::default());
        assert_eq!((s.wait_seconds, s.image_checks), (1, 1));
        assert!(
            serde_json::from_value::<SettingsRequest>(json!({"wait": 1})).is_err(),
            "typos are refused"
        );
    }
}

/// Takes an idempotent action under an audit item: records the intent, skips the action if an
/// earlier attempt recorded it done, otherwise acts and records how it ended. A failed action
/// fails the step with its own error (the outcome write is best effort then).
pub async fn audited<A: crate::ports::AuditLog>(
    audit: &A,
    entry: &crate::ports::AuditEntry,
    act: impl std::future::Future<Output = Result<(), crate::AwsError>>,
) -> Result<(), StepError> {
    if audit.begin(entry).await? == crate::ports::AuditBegin::AlreadyDone {
        return Ok(());
    }
    match act.await {
        Ok(()) => {
            audit.finish(&entry.action_id, "done").await?;
            Ok(())
        }
        Err(e) => {
            let _ = audit
                .finish(&entry.action_id, &format!("failed: {e}"))
                .await;
            Err(e.into())
        }
    }
}

/// How a caught failure is recorded, and named on the failed execution (never a reserved
/// `States.` name: a timed-out approval is a rejection, any other `States.*` a `SwitchFailed`).
pub fn rollback_outcome(error: &CaughtError) -> (SwitchStatus, String) {
    match error.error.as_str() {
        errors::APPROVAL_REJECTED | "States.Timeout" => {
            (SwitchStatus::Rejected, errors::APPROVAL_REJECTED.into())
        }
        errors::NOT_ELIGIBLE | errors::POOL_QUARANTINED | "InvalidRequest" => {
            (SwitchStatus::NotEligible, error.error.clone())
        }
        name if name.starts_with("States.") => (SwitchStatus::RolledBack, "SwitchFailed".into()),
        name => (SwitchStatus::RolledBack, name.into()),
    }
}

/// A step's failure, with the stable name the state machine routes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub name: &'static str,
    pub message: String,
}

impl StepError {
    pub fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
}

impl From<crate::ports::AwsError> for StepError {
    fn from(e: crate::ports::AwsError) -> Self {
        Self::new(e.error_type(), e.to_string())
    }
}

impl From<crate::account::AccountError> for StepError {
    fn from(e: crate::account::AccountError) -> Self {
        Self::new(e.error_type(), e.to_string())
    }
}

/// How to act in `account_id` (own credentials or its member role), after checking the account
/// and region are well-formed and the account may be acted on.
pub async fn access_for<R: crate::ports::AccountRegistry>(
    registry: &R,
    home_account: &str,
    account_id: &str,
    region: &str,
) -> Result<(crate::account::Access, crate::account::AccountView), StepError> {
    if !crate::scope::is_account_id(account_id) || !crate::scope::is_region(region) {
        return Err(StepError::new(
            "InvalidRequest",
            format!("account `{account_id}` or region `{region}` is malformed"),
        ));
    }
    let item = registry.account(account_id).await?;
    if item.is_none() && account_id != home_account {
        // Own credentials would act on the home account under another account's name.
        return Err(StepError::new(
            errors::NOT_ELIGIBLE,
            format!("account {account_id} is not in the accounts table"),
        ));
    }
    let view =
        crate::account::AccountView::new(account_id, item, crate::account::Environment::Prod);
    let access = view.access(home_account)?;
    Ok((access, view))
}

/// The request's account and region as a fleet, after checking the account may be acted on.
pub async fn fleet_for<R, F>(
    registry: &R,
    fleets: &F,
    home_account: &str,
    request: &SwitchRequest,
) -> Result<(F::Fleet, crate::account::AccountView), StepError>
where
    R: crate::ports::AccountRegistry,
    F: crate::ports::SwitchFleets,
{
    let (access, view) =
        access_for(registry, home_account, &request.account_id, &request.region).await?;
    Ok((fleets.switch_fleet(&access, &request.region).await, view))
}

/// How a step reaches the request's account and region.
pub struct Reach<R, F> {
    pub registry: R,
    pub fleets: F,
    pub home_account: String,
}

impl<R: crate::ports::AccountRegistry, F: crate::ports::SwitchFleets> Reach<R, F> {
    pub async fn fleet(
        &self,
        request: &SwitchRequest,
    ) -> Result<(F::Fleet, crate::account::AccountView), StepError> {
        fleet_for(&self.registry, &self.fleets, &self.home_account, request).await
    }
}

/// The EC2 and Auto Scaling sides of one account and region, for the ASG swap's steps.
pub struct GroupReach<S, G> {
    pub ec2: S,
    pub groups: G,
    pub view: crate::account::AccountView,
}

impl<R, F> Reach<R, F>
where
    R: crate::ports::AccountRegistry,
    F: crate::ports::SwitchFleets + crate::ports::GroupFleets,
{
    pub async fn group(
        &self,
        request: &crate::asg::SwapRequest,
    ) -> Result<
        GroupReach<
            <F as crate::ports::SwitchFleets>::Fleet,
            <F as crate::ports::GroupFleets>::Fleet,
        >,
        StepError,
    > {
        let (access, view) = access_for(
            &self.registry,
            &self.home_account,
            &request.account_id,
            &request.region,
        )
        .await?;
        Ok(GroupReach {
            ec2: self.fleets.switch_fleet(&access, &request.region).await,
            groups: self.fleets.group_fleet(&access, &request.region).await,
            view,
        })
    }
}
