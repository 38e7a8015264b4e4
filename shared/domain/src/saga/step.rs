//! What every saga step shares: the mode, the risk scale, the pacing settings, the names a step
//! fails with ([`StepError`]), the phases and statuses the state machines read, the error a
//! `Catch` hands the rollback, and the audited-action helper.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer, Serialize};

use crate::account::{Access, AccountError, AccountRegistry, AccountView, Environment};
use crate::audit::{AuditBegin, AuditEntry, AuditLog};
use crate::config::{ConfigError, Env, key};
use crate::error::{AwsError, ErrorName};
use crate::governance::mode::{LiveSwitch, Mode};
use crate::ids::Field;
use crate::instance::InstanceHealth;

/// Shadow or live: the request's, lowered by the deployment's live switch in the first step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaMode {
    /// Plan and record the counterfactual saving; change nothing.
    Shadow,
    Live,
}

impl SagaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Live => "live",
        }
    }

    /// The saga mode of a deployment mode: audit is shadow.
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::Live => Self::Live,
            Mode::Audit => Self::Shadow,
        }
    }

    /// The deployment mode this saga mode asks for.
    pub fn as_mode(self) -> Mode {
        match self {
            Self::Live => Mode::Live,
            Self::Shadow => Mode::Audit,
        }
    }

    /// The mode a saga runs in: live only if the request asks for it, the deployment is live and
    /// the account is on its allowlist. A request may lower the mode, never raise it.
    pub fn gated(self, switch: &LiveSwitch, account: &str) -> Self {
        Self::of(switch.effective(Some(self.as_mode()), account))
    }
}

impl FromStr for SagaMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shadow" => Ok(Self::Shadow),
            "live" => Ok(Self::Live),
            _ => Err(format!("mode `{s}` is neither shadow nor live")),
        }
    }
}

/// How risky a change is: one level per concern. Changes at or above `APPROVAL_THRESHOLD` wait
/// for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    /// One level per concern: none is low, four or more critical.
    pub fn of(concerns: &[String]) -> Self {
        match concerns.len() {
            0 => Self::Low,
            1 => Self::Medium,
            2 => Self::High,
            _ => Self::Critical,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        })
    }
}

impl FromStr for Risk {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LOW" => Ok(Self::Low),
            "MEDIUM" => Ok(Self::Medium),
            "HIGH" => Ok(Self::High),
            "CRITICAL" => Ok(Self::Critical),
            _ => Err(format!("risk `{s}` is not LOW, MEDIUM, HIGH or CRITICAL")),
        }
    }
}

/// The part of a step a Task asks for, when one Lambda serves several states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Create,
    Check,
    Attach,
    Detach,
    Terminate,
    /// The rollback's first phase: bring back what the saga stopped.
    Restore,
    /// The rollback's second phase: remove what the saga made.
    Finish,
}

/// Where a polled step stands; the state machine's Choice loops while it is `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Pending,
}

/// A polled step's progress (health checks, attach, detach).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub status: StepStatus,
    pub checks: u32,
    /// The ASG swap's batch (index of its first member): a new batch counts its checks afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Checks this wait may take, when the step sized it from the resource (the detach's wait
    /// from its target groups' deregistration delay) rather than from the settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl Progress {
    pub fn pending(checks: u32) -> Self {
        Self {
            status: StepStatus::Pending,
            checks,
            batch: None,
            limit: None,
        }
    }

    pub fn ok(checks: u32) -> Self {
        Self {
            status: StepStatus::Ok,
            checks,
            batch: None,
            limit: None,
        }
    }

    pub fn limited(self, limit: u32) -> Self {
        Self {
            limit: Some(limit),
            ..self
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == StepStatus::Ok
    }
}

/// Pacing of the saga's waits and loops; the first step resolves them (request over the stack's
/// settings) so the state machine's Wait states read them from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub wait_seconds: u32,
    /// Image state checks before giving up.
    pub image_checks: u32,
    /// Status checks (and attach/detach checks) before giving up.
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
    /// Bounds of each setting, whoever sets it (the stack or a request).
    pub const WAIT_SECONDS: (u32, u32) = (1, 300);
    pub const CHECKS: (u32, u32) = (1, 1000);
    /// At most a week: Step Functions' task token outlives it, a forgotten approval should not.
    /// (The stack's parameter starts at a minute; a request may ask for less, as tests do.)
    pub const APPROVAL_TIMEOUT_SECONDS: (u32, u32) = (1, 604_800);

    /// The stack's pacing: `WAIT_SECONDS`, `IMAGE_CHECKS`, `HEALTH_CHECKS`,
    /// `APPROVAL_TIMEOUT_SECONDS`, each within its bounds, defaults otherwise.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let (w0, w1) = Self::WAIT_SECONDS;
        let (c0, c1) = Self::CHECKS;
        let (a0, a1) = Self::APPROVAL_TIMEOUT_SECONDS;
        Ok(Self {
            wait_seconds: env.bounded(key::WAIT_SECONDS, d.wait_seconds, w0, w1)?,
            image_checks: env.bounded(key::IMAGE_CHECKS, d.image_checks, c0, c1)?,
            health_checks: env.bounded(key::HEALTH_CHECKS, d.health_checks, c0, c1)?,
            approval_timeout_seconds: env.bounded(
                key::APPROVAL_TIMEOUT_SECONDS,
                d.approval_timeout_seconds,
                a0,
                a1,
            )?,
        })
    }

    /// The longest a saga's loops can take with these settings (approval, image and health loops,
    /// plus an hour for the tasks and their retries): how long its lock lasts at most.
    pub fn longest_run(&self) -> TimeDelta {
        let loops = (u64::from(self.image_checks) + u64::from(self.health_checks))
            * u64::from(self.wait_seconds);
        TimeDelta::seconds(
            i64::from(self.approval_timeout_seconds)
                + i64::try_from(loops).unwrap_or(i64::MAX / 4)
                + 3600,
        )
    }
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
    /// The request's pacing over `defaults`; a value outside its bounds is refused, naming them.
    pub fn resolve(&self, defaults: Settings) -> Result<Settings, StepError> {
        let check = |name: &str, v: Option<u32>, d: u32, (lo, hi): (u32, u32)| match v {
            None => Ok(d),
            Some(v) if (lo..=hi).contains(&v) => Ok(v),
            Some(v) => Err(StepError::invalid(format!(
                "settings.{name} = {v} is not within {lo}..={hi}"
            ))),
        };
        Ok(Settings {
            wait_seconds: check(
                "wait_seconds",
                self.wait_seconds,
                defaults.wait_seconds,
                Settings::WAIT_SECONDS,
            )?,
            image_checks: check(
                "image_checks",
                self.image_checks,
                defaults.image_checks,
                Settings::CHECKS,
            )?,
            health_checks: check(
                "health_checks",
                self.health_checks,
                defaults.health_checks,
                Settings::CHECKS,
            )?,
            approval_timeout_seconds: check(
                "approval_timeout_seconds",
                self.approval_timeout_seconds,
                defaults.approval_timeout_seconds,
                Settings::APPROVAL_TIMEOUT_SECONDS,
            )?,
        })
    }
}

/// A step's failure, with the stable name the state machine routes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct StepError {
    pub name: ErrorName,
    pub message: String,
}

impl StepError {
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }

    /// The step was given a state it cannot work from (a missing earlier step's output, a phase
    /// it does not serve).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorName::InvalidRequest, message)
    }

    /// A step ran without the output of an earlier one.
    pub fn missing(step: &str, what: &str) -> Self {
        Self::invalid(format!("the {step} step needs the {what}"))
    }

    pub fn not_eligible(message: impl Into<String>) -> Self {
        Self::new(ErrorName::NotEligible, message)
    }
}

impl From<AwsError> for StepError {
    fn from(e: AwsError) -> Self {
        Self::new(e.error_name(), e.to_string())
    }
}

impl From<crate::ids::FieldError> for StepError {
    fn from(e: crate::ids::FieldError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<AccountError> for StepError {
    fn from(e: AccountError) -> Self {
        Self::new(e.error_name(), e.to_string())
    }
}

/// An EC2 idempotency token (`ClientToken`) for one launch attempt: a SHA-256 of the whole
/// execution name and what the attempt is for (member, candidate pool), so no two executions or
/// attempts share one however long their names, and a retry of the same attempt reuses it. 64 hex
/// characters, EC2's limit.
pub fn client_token(execution: &str, attempt: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(execution.as_bytes());
    for part in attempt {
        // A separator no name contains, so ("a", "bc") and ("ab", "c") differ.
        hash.update([0]);
        hash.update(part.as_bytes());
    }
    format!("{:x}", hash.finalize())
}

/// The session name a saga step's calls carry in a member account's CloudTrail: the function and
/// the execution (`switch-rollback@switch-i-0abc-20261128-live`). STS allows 64 characters: a longer
/// execution name keeps its start and ends with 8 hex digits of its SHA-256, so two executions never
/// share a session name by truncation.
pub fn session_name(function: &str, execution: &str) -> String {
    let full = format!("{function}@{execution}");
    if full.len() <= 64 {
        return full;
    }
    let digest = &client_token(execution, &[])[..8];
    let keep = 64 - function.len().min(40) - 1 - 1 - digest.len();
    let start: String = execution.chars().take(keep).collect();
    format!("{}@{start}.{digest}", &function[..function.len().min(40)])
}

/// Step Functions' own name for a task that timed out (an unanswered approval).
pub const STATES_TIMEOUT: &str = "States.Timeout";

/// An error a `Catch` put in the state. Either field may be missing or null (a task failed
/// without a cause): the rollback must read whatever it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default, deserialize_with = "null_as_empty")]
    pub error: String,
    #[serde(rename = "Cause", default, deserialize_with = "null_as_empty")]
    pub cause: String,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// What a caught error means for the ledger and the failed execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An operator said no, or nobody answered in time: nothing was changed.
    Rejected,
    /// The target must not move (or could not be reached): nothing was changed.
    NotEligible,
    /// The saga failed after it may have changed something, and was compensated.
    RolledBack,
}

impl CaughtError {
    /// Our name for the error, when it is one of ours.
    pub fn name(&self) -> Option<ErrorName> {
        self.error.parse().ok()
    }

    /// How the failure is recorded, and the name the failed execution carries (never a reserved
    /// `States.` name: a timed-out approval is a rejection, any other `States.*` a
    /// `SwitchFailed`).
    pub fn outcome(&self) -> (Outcome, ErrorName) {
        if self.error == STATES_TIMEOUT {
            return (Outcome::Rejected, ErrorName::ApprovalRejected);
        }
        match self.name() {
            Some(ErrorName::ApprovalRejected) => (Outcome::Rejected, ErrorName::ApprovalRejected),
            Some(
                name @ (ErrorName::NotEligible
                | ErrorName::PoolQuarantined
                | ErrorName::InvalidRequest),
            ) => (Outcome::NotEligible, name),
            Some(name) => (Outcome::RolledBack, name),
            None => (Outcome::RolledBack, ErrorName::SwitchFailed),
        }
    }

    /// The failure happened before the target's account was reached, so nothing there changed.
    pub fn before_reaching_the_account(name: ErrorName) -> bool {
        matches!(
            name,
            ErrorName::InvalidRequest | ErrorName::NotEligible | ErrorName::AccountMisconfigured
        )
    }
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

/// How many checks a resource the saga just created may go unseen: EC2's describe calls are
/// eventually consistent, and right after `RunInstances` or `CreateImage` they may answer
/// NotFound for a while (with the 15 s check interval, the first minute).
pub const UNSEEN_GRACE_CHECKS: u32 = 4;

/// Whether a resource the saga created, not found at its `checks`-th check of at most `limit`,
/// may still be on its way rather than gone.
pub fn may_be_unseen(checks: u32, limit: u32) -> bool {
    checks <= UNSEEN_GRACE_CHECKS && checks < limit
}

/// The verdict on `instance` at its `checks`-th check (1-based) of at most `limit`.
pub fn health_verdict(
    instance: &str,
    health: Option<&InstanceHealth>,
    checks: u32,
    limit: u32,
) -> HealthVerdict {
    let Some(h) = health else {
        if may_be_unseen(checks, limit) {
            return HealthVerdict::Pending;
        }
        return HealthVerdict::Failed(format!(
            "{instance} no longer exists (not found at check {checks})"
        ));
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

/// Takes an idempotent action under an audit item: records the intent, skips the action if an
/// earlier attempt recorded it done, otherwise acts and records how it ended. A failed action
/// fails the step with its own error (the outcome write is best effort then).
pub async fn audited<A: AuditLog>(
    audit: &A,
    entry: &AuditEntry,
    act: impl std::future::Future<Output = Result<(), AwsError>>,
) -> Result<(), StepError> {
    if audit.begin(entry).await? == AuditBegin::AlreadyDone {
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

/// How to act in `account_id` (own credentials or its member role), after checking the account
/// and region are well-formed and the account may be acted on.
pub async fn access_for<R: AccountRegistry>(
    registry: &R,
    home_account: &str,
    account_id: &str,
    region: &str,
) -> Result<(Access, AccountView), StepError> {
    if !Field::AccountId.accepts(account_id) || !Field::Region.accepts(region) {
        return Err(StepError::invalid(format!(
            "account `{account_id}` or region `{region}` is malformed"
        )));
    }
    let item = registry.account(account_id).await?;
    if item.is_none() && account_id != home_account {
        // Own credentials would act on the home account under another account's name.
        return Err(StepError::not_eligible(format!(
            "account {account_id} is not in the accounts table"
        )));
    }
    let view = AccountView::new(account_id, item, Environment::Prod);
    let access = view.access(home_account)?;
    Ok((access, view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caught(error: &str) -> CaughtError {
        CaughtError {
            error: error.into(),
            cause: String::new(),
        }
    }

    #[test]
    fn failures_are_named_without_reserved_prefixes() {
        assert_eq!(
            caught(STATES_TIMEOUT).outcome(),
            (Outcome::Rejected, ErrorName::ApprovalRejected)
        );
        assert_eq!(
            caught(ErrorName::ApprovalRejected.as_str()).outcome().0,
            Outcome::Rejected
        );
        assert_eq!(
            caught(ErrorName::NotEligible.as_str()).outcome().0,
            Outcome::NotEligible
        );
        assert_eq!(
            caught(ErrorName::PoolQuarantined.as_str()).outcome(),
            (Outcome::NotEligible, ErrorName::PoolQuarantined)
        );
        assert_eq!(
            caught(ErrorName::HealthCheckFailed.as_str()).outcome(),
            (Outcome::RolledBack, ErrorName::HealthCheckFailed)
        );
        assert_eq!(
            caught("States.TaskFailed").outcome(),
            (Outcome::RolledBack, ErrorName::SwitchFailed)
        );
        assert_eq!(
            caught("Sandbox.Timedout").outcome(),
            (Outcome::RolledBack, ErrorName::SwitchFailed)
        );
    }

    #[test]
    fn a_caught_error_reads_whatever_step_functions_gives() {
        let e: CaughtError = serde_json::from_value(json!({"Error": "X", "Cause": null})).unwrap();
        assert_eq!((e.error.as_str(), e.cause.as_str()), ("X", ""));
        let e: CaughtError = serde_json::from_value(json!({})).unwrap();
        assert_eq!(e.name(), None);
    }

    #[test]
    fn settings_out_of_bounds_are_refused_whoever_sets_them() {
        let ok = SettingsRequest {
            wait_seconds: Some(1),
            image_checks: Some(1000),
            ..Default::default()
        }
        .resolve(Settings::default())
        .unwrap();
        assert_eq!((ok.wait_seconds, ok.image_checks), (1, 1000));
        assert_eq!(ok.health_checks, Settings::default().health_checks);
        for bad in [
            SettingsRequest {
                wait_seconds: Some(0),
                ..Default::default()
            },
            SettingsRequest {
                health_checks: Some(u32::MAX),
                ..Default::default()
            },
            SettingsRequest {
                approval_timeout_seconds: Some(0),
                ..Default::default()
            },
        ] {
            let e = bad.resolve(Settings::default()).unwrap_err();
            assert_eq!(e.name, ErrorName::InvalidRequest, "{bad:?}");
        }
        let most = Settings {
            wait_seconds: 300,
            image_checks: 1000,
            health_checks: 1000,
            approval_timeout_seconds: 604_800,
        };
        assert!(most.longest_run() < TimeDelta::days(30), "no overflow");
        assert!(
            serde_json::from_value::<SettingsRequest>(json!({"wait": 1})).is_err(),
            "typos are refused"
        );
        let env = Env(|k: &str| (k == key::WAIT_SECONDS).then(|| "0".to_owned()));
        assert!(Settings::from_env(&env).is_err());
    }

    #[test]
    fn a_request_can_lower_the_saga_mode_never_raise_it() {
        let switch = LiveSwitch {
            mode: Mode::Live,
            live_accounts: ["111111111111".to_owned()].into(),
        };
        assert_eq!(
            SagaMode::Live.gated(&switch, "111111111111"),
            SagaMode::Live
        );
        assert_eq!(
            SagaMode::Shadow.gated(&switch, "111111111111"),
            SagaMode::Shadow
        );
        assert_eq!(
            SagaMode::Live.gated(&switch, "222222222222"),
            SagaMode::Shadow,
            "not allowlisted"
        );
        let off = LiveSwitch {
            mode: Mode::Audit,
            ..switch
        };
        assert_eq!(SagaMode::Live.gated(&off, "111111111111"), SagaMode::Shadow);
    }

    #[test]
    fn session_names_carry_function_and_execution_and_fit_sts() {
        assert_eq!(
            session_name("switch-rollback", "switch-i-0abc-20261128"),
            "switch-rollback@switch-i-0abc-20261128"
        );
        let long = format!("switch-{}-20261128-live", "i-0123456789abcdef0".repeat(3));
        let other = long.replace("20261128", "20261129");
        let (a, b) = (
            session_name("switch-rollback", &long),
            session_name("switch-rollback", &other),
        );
        assert_eq!(a.len(), 64);
        assert_ne!(a, b, "the digest tells apart names that share their start");
        assert!(a.starts_with("switch-rollback@switch-i-0123"));
        // STS: [\w+=,.@-]
        for name in [&a, &b] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
                "{name}"
            );
        }
    }

    #[test]
    fn client_tokens_differ_per_execution_and_attempt_whatever_the_name_length() {
        let day =
            |d: u32| format!("sw-123456789012-us-east-1-i-0123456789abcdef0-live-202611{d:02}");
        let a = client_token(&day(28), &["0"]);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, client_token(&day(28), &["0"]), "a retry reuses it");
        assert_ne!(
            a,
            client_token(&day(29), &["0"]),
            "the next day's run does not"
        );
        assert_ne!(a, client_token(&day(28), &["1"]), "nor the next pool");
        assert_ne!(
            client_token("x", &["ab", "c"]),
            client_token("x", &["a", "bc"])
        );
        let long = "x".repeat(80);
        assert_ne!(
            client_token(&long, &["i-1", "0"]),
            client_token(&format!("{long}y"), &["i-1", "0"])
        );
    }

    #[test]
    fn health_needs_running_and_both_checks() {
        let h = |state: &str, system: &str, instance: &str| InstanceHealth {
            state: state.into(),
            system: system.into(),
            instance: instance.into(),
        };
        assert_eq!(
            health_verdict("i-1", Some(&h("running", "ok", "ok")), 1, 3),
            HealthVerdict::Ok
        );
        assert_eq!(
            health_verdict("i-1", Some(&h("running", "initializing", "ok")), 1, 3),
            HealthVerdict::Pending
        );
        for (health, checks) in [
            (Some(h("running", "initializing", "ok")), 3),
            (Some(h("running", "impaired", "ok")), 1),
            (Some(h("stopped", "ok", "ok")), 1),
            (None, UNSEEN_GRACE_CHECKS + 1),
            (None, 3),
        ] {
            assert!(matches!(
                health_verdict("i-1", health.as_ref(), checks, 3),
                HealthVerdict::Failed(_)
            ));
        }
    }

    #[test]
    fn a_new_instance_not_yet_seen_is_pending_for_the_grace_checks_only() {
        for checks in 1..=UNSEEN_GRACE_CHECKS {
            assert_eq!(
                health_verdict("i-1", None, checks, 40),
                HealthVerdict::Pending
            );
        }
        assert!(matches!(
            health_verdict("i-1", None, UNSEEN_GRACE_CHECKS + 1, 40),
            HealthVerdict::Failed(why) if why.contains("no longer exists")
        ));
    }

    #[test]
    fn phases_and_statuses_have_the_names_the_asl_compares() {
        assert_eq!(serde_json::to_value(Phase::Terminate).unwrap(), "terminate");
        assert_eq!(serde_json::to_value(StepStatus::Ok).unwrap(), "ok");
        assert_eq!(serde_json::to_value(SagaMode::Shadow).unwrap(), "shadow");
        assert!(serde_json::from_value::<Phase>(json!("launch")).is_err());
        assert_eq!(Risk::of(&[]), Risk::Low);
        assert_eq!(Risk::of(&["a".into(), "b".into()]), Risk::High);
        assert!("high".parse::<Risk>().unwrap() > Risk::Medium);
    }
}
