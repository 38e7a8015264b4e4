//! Guardrails an operator can trust: pauses (the operator's kill switch and the circuit breaker's
//! pause of an account), the breaker's count of failed live sagas, and the shadow period an account
//! goes through before a capability may act live there.
//!
//! Everything here is a plain decision over what the control table holds; the table adapter is
//! `spot_aws::ControlTable`, the readers are the functions' `Guard`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ErrorName;
use crate::governance::mode::Mode;
use crate::saga::ledger::LedgerStatus;

/// What an operator promotes an account to do live. The emergency failover has none of its own:
/// it acts only on workloads a live switch or swap moved, which needed their promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    Switch,
    Swap,
    Waste,
    Enforcement,
    Hibernation,
}

impl Activity {
    pub const ALL: [Activity; 5] = [
        Self::Switch,
        Self::Swap,
        Self::Waste,
        Self::Enforcement,
        Self::Hibernation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Switch => "switch",
            Self::Swap => "swap",
            Self::Waste => "waste",
            Self::Enforcement => "enforcement",
            Self::Hibernation => "hibernation",
        }
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Activity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("capability `{s}` is none of switch, swap, waste, enforcement, hibernation")
            })
    }
}

/// Every function that reads the pauses before it changes anything (what `--function` may name;
/// the testbed checks this list against the template). A saga's rollback and its last step are
/// not among them: they put back or finish what was started, and only count for the breaker.
pub const FUNCTIONS: &[&str] = &[
    "failover-launch",
    "failover-standby",
    "hibernation-reconciler",
    "optimizer",
    "security-enforcer",
    "swap-attach",
    "swap-detach",
    "swap-discover",
    "swap-launch",
    "swap-prepare",
    "switch-cutover",
    "switch-image",
    "switch-launch",
    "switch-plan",
    "switch-revert",
    "waste-scanner",
];

/// What a pause stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every function, in every account.
    All,
    /// Every function, in one account.
    Account(String),
    /// One function (`waste-scanner`, `switch-launch`...), in every account.
    Function(String),
}

impl Scope {
    /// The sort key of the scope's item in the control table.
    pub fn key(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Account(id) => format!("account#{id}"),
            Self::Function(name) => format!("function#{name}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        match key.split_once('#') {
            None if key == "all" => Some(Self::All),
            Some(("account", id)) if !id.is_empty() => Some(Self::Account(id.into())),
            Some(("function", name)) if !name.is_empty() => Some(Self::Function(name.into())),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("everything"),
            Self::Account(id) => write!(f, "account {id}"),
            Self::Function(name) => write!(f, "function {name}"),
        }
    }
}

/// Who paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    Operator,
    /// The circuit breaker, after consecutive failed live sagas.
    Breaker,
}

/// One failed live saga, as the breaker counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub saga_id: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// A pause in force: nothing it covers changes anything in AWS until an operator resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub scope: Scope,
    pub cause: Cause,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// The breaker's: the failures that opened it.
    pub failures: Vec<Failure>,
}

impl Pause {
    /// One line: what is paused, by whom, since when and why.
    pub fn explain(&self) -> String {
        let mut text = format!(
            "{} paused by {} at {}: {}",
            self.scope,
            self.by,
            self.at.format("%Y-%m-%dT%H:%M:%SZ"),
            self.reason
        );
        if !self.failures.is_empty() {
            let failures: Vec<String> = self
                .failures
                .iter()
                .map(|f| format!("{} ({})", f.saga_id, f.error))
                .collect();
            text.push_str(&format!(" [{}]", failures.join(", ")));
        }
        text.push_str("; resume with spotctl");
        text
    }
}

/// Every pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pauses(pub Vec<Pause>);

impl Pauses {
    /// The pause that stops `function` acting in `account` (`None`: acting on no one account, as
    /// a scan's start), if any: everything first, then the account, then the function.
    pub fn stopping(&self, account: Option<&str>, function: &str) -> Option<&Pause> {
        let rank = |p: &Pause| match &p.scope {
            Scope::All => Some(0),
            Scope::Account(id) if Some(id.as_str()) == account => Some(1),
            Scope::Function(name) if name == function => Some(2),
            _ => None,
        };
        self.0
            .iter()
            .filter_map(|p| rank(p).map(|r| (r, p)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, p)| p)
    }
}

/// The circuit breaker: a live saga that ends rolled back (or rolled back incompletely) counts,
/// unless a pause made it roll back; a completed one resets the count. At `threshold` consecutive
/// failures the account is paused until an operator resumes it; it never closes by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub threshold: u32,
}

impl Breaker {
    pub const DEFAULT_THRESHOLD: u32 = 3;

    /// Whether a live saga that ended with `status` (and, failed, error `error`) is a failure.
    pub fn counts(status: LedgerStatus, error: Option<ErrorName>) -> bool {
        matches!(
            status,
            LedgerStatus::RolledBack | LedgerStatus::RollbackIncomplete
        ) && error != Some(ErrorName::Paused)
    }

    /// Whether `failures` consecutive failures open the breaker.
    pub fn opens(&self, failures: usize) -> bool {
        failures >= self.threshold as usize
    }

    /// The pause the breaker puts on `account`.
    pub fn pause(&self, account: &str, failures: Vec<Failure>, at: DateTime<Utc>) -> Pause {
        Pause {
            scope: Scope::Account(account.into()),
            cause: Cause::Breaker,
            by: "circuit breaker".into(),
            reason: format!(
                "{} consecutive live sagas failed or rolled back in account {account}",
                failures.len()
            ),
            at,
            failures,
        }
    }
}

/// An account's shadow runs of one activity: since when, how many, and when someone last looked
/// at them (`spotctl shadow report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRecord {
    pub account_id: String,
    pub activity: Activity,
    pub since: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub runs: u64,
    #[serde(default)]
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// An operator's decision that an account may act live for an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub account_id: String,
    pub activity: Activity,
    pub by: String,
    pub at: DateTime<Utc>,
    /// When the shadow runs it followed began.
    pub shadow_since: DateTime<Utc>,
}

/// Why an account may not be promoted yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotYet {
    #[error("account {account} never ran {activity} in shadow")]
    NeverShadowed { account: String, activity: Activity },
    #[error(
        "account {account} has run {activity} in shadow since {since}; promotion is possible from {ready} ({days} days of shadow first)"
    )]
    TooSoon {
        account: String,
        activity: Activity,
        since: DateTime<Utc>,
        ready: DateTime<Utc>,
        days: i64,
    },
    #[error(
        "nobody looked at account {account}'s shadow decisions since its shadow period ended: run `spotctl shadow report {account}` first"
    )]
    NotReviewed { account: String },
}

/// Whether an operator may promote an account for `shadow`'s activity at `now`: it ran in shadow
/// for at least `period`, and its shadow report was printed after that period ended.
pub fn may_promote(
    account: &str,
    activity: Activity,
    shadow: Option<&ShadowRecord>,
    period: TimeDelta,
    now: DateTime<Utc>,
) -> Result<(), NotYet> {
    let Some(shadow) = shadow else {
        return Err(NotYet::NeverShadowed {
            account: account.into(),
            activity,
        });
    };
    let ready = shadow.since + period;
    if now < ready {
        return Err(NotYet::TooSoon {
            account: account.into(),
            activity,
            since: shadow.since,
            ready,
            days: period.num_days(),
        });
    }
    match shadow.reviewed_at {
        Some(at) if at >= ready => Ok(()),
        _ => Err(NotYet::NotReviewed {
            account: account.into(),
        }),
    }
}

/// Shadow before live: the mode an activity runs in for an account. `allowed` is what the
/// deployment's switch and allowlist give (`LIVE_ACCOUNTS` stays the outer gate); with a shadow
/// period configured (`Some`), live also needs the account's promotion for the activity.
pub fn promoted(allowed: Mode, shadow_period: Option<TimeDelta>, promotion: bool) -> Mode {
    match (allowed, shadow_period) {
        (Mode::Live, Some(_)) if !promotion => Mode::Audit,
        (mode, _) => mode,
    }
}

/// What a function asks before it changes anything: whether a pause stops it, and (shadow before
/// live) the mode an activity runs in for an account. The adapter reads the pauses at most once
/// per its check interval, however many calls a run makes.
pub trait Guard: Send + Sync {
    /// The pause that stops this function acting in `account` (`None`: no one account), if any.
    fn stopping(
        &self,
        account: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Option<Pause>, crate::AwsError>> + Send;

    /// The mode `activity` runs in for `account` when the deployment allows `allowed`: live only
    /// with the account's promotion when a shadow period is configured. A run that ends up in
    /// audit (shadow) is counted as one of the account's shadow runs.
    fn mode(
        &self,
        account: &str,
        activity: Activity,
        allowed: Mode,
        at: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Mode, crate::AwsError>> + Send;
}

/// A scheduled run's target at its start: with its mode after shadow before live (an audit run
/// counts as one of the account's shadow runs of `activity`); or, when a pause stops it (nothing
/// is read or changed in it: the next run after the resume takes it up) or the guard cannot be
/// read, its report as it ends.
pub async fn start<G: Guard>(
    guard: &G,
    mut target: crate::governance::scope::Target,
    activity: Activity,
    now: DateTime<Utc>,
) -> Result<crate::governance::scope::Target, crate::governance::report::TargetReport> {
    let ready = async {
        if let Some(pause) = guard.stopping(Some(&target.account)).await? {
            return Ok(Some(pause.explain()));
        }
        target.mode = guard
            .mode(&target.account, activity, target.mode, now)
            .await?;
        Ok::<_, crate::AwsError>(None)
    };
    let ready = ready.await;
    let mut report = crate::governance::report::TargetReport::new(&target);
    match ready {
        Ok(None) => Ok(target),
        Ok(Some(paused)) => {
            report.paused = Some(paused);
            Err(report)
        }
        Err(e) => {
            report.error = Some(format!("reading the guardrails: {e}"));
            Err(report)
        }
    }
}

/// A change part-way through a run: `Some(why not)` when a pause put in force since stops it.
pub async fn stopped<G: Guard>(guard: &G, account: &str) -> Option<String> {
    match guard.stopping(Some(account)).await {
        Ok(pause) => pause.map(|p| format!("paused: {}", p.explain())),
        Err(e) => Some(format!("failed: reading the pauses: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, 0, 0).unwrap()
    }

    fn pause(scope: Scope) -> Pause {
        Pause {
            scope,
            cause: Cause::Operator,
            by: "alice".into(),
            reason: "incident 42".into(),
            at: at(1, 0),
            failures: Vec::new(),
        }
    }

    #[test]
    fn a_pause_stops_what_its_scope_covers_and_nothing_else() {
        let account = Pauses(vec![pause(Scope::Account("111111111111".into()))]);
        assert!(
            account
                .stopping(Some("111111111111"), "waste-scanner")
                .is_some()
        );
        assert!(
            account
                .stopping(Some("222222222222"), "waste-scanner")
                .is_none()
        );
        assert!(account.stopping(None, "waste-scanner").is_none());

        let function = Pauses(vec![pause(Scope::Function("waste-scanner".into()))]);
        assert!(
            function
                .stopping(Some("222222222222"), "waste-scanner")
                .is_some()
        );
        assert!(function.stopping(None, "waste-scanner").is_some());
        assert!(
            function
                .stopping(Some("222222222222"), "switch-launch")
                .is_none()
        );

        let all = Pauses(vec![
            pause(Scope::Function("switch-launch".into())),
            pause(Scope::All),
        ]);
        assert_eq!(
            all.stopping(Some("222222222222"), "switch-launch")
                .unwrap()
                .scope,
            Scope::All,
            "the widest pause explains"
        );
        assert!(Pauses::default().stopping(Some("1"), "x").is_none());
    }

    #[test]
    fn scopes_round_trip_through_their_keys() {
        for scope in [
            Scope::All,
            Scope::Account("111111111111".into()),
            Scope::Function("waste-scanner".into()),
        ] {
            assert_eq!(Scope::from_key(&scope.key()), Some(scope));
        }
        for bad in ["", "account#", "x#y", "allx"] {
            assert_eq!(Scope::from_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_breaker_counts_rollbacks_of_live_sagas_but_not_refusals_or_pauses() {
        use LedgerStatus::*;
        assert!(Breaker::counts(
            RolledBack,
            Some(ErrorName::HealthCheckFailed)
        ));
        assert!(Breaker::counts(RollbackIncomplete, None));
        assert!(!Breaker::counts(RolledBack, Some(ErrorName::Paused)));
        for status in [NotEligible, Rejected, Switched, Shadow] {
            assert!(!Breaker::counts(status, None), "{status:?}");
        }
        let breaker = Breaker { threshold: 3 };
        assert!(!breaker.opens(2));
        assert!(breaker.opens(3));
        let failures = vec![Failure {
            saga_id: "s1".into(),
            error: "HealthCheckFailed".into(),
            at: at(1, 0),
        }];
        let p = breaker.pause("111111111111", failures, at(1, 1));
        assert_eq!(p.scope, Scope::Account("111111111111".into()));
        assert_eq!(p.cause, Cause::Breaker);
        assert!(
            p.explain().contains("s1 (HealthCheckFailed)"),
            "{}",
            p.explain()
        );
    }

    #[test]
    fn promotion_needs_the_shadow_period_then_a_look_at_the_report() {
        let period = TimeDelta::days(7);
        let account = "111111111111";
        assert!(matches!(
            may_promote(account, Activity::Switch, None, period, at(10, 0)),
            Err(NotYet::NeverShadowed { .. })
        ));
        let mut shadow = ShadowRecord {
            account_id: account.into(),
            activity: Activity::Switch,
            since: at(1, 0),
            last: at(7, 0),
            runs: 12,
            reviewed_at: Some(at(2, 0)),
        };
        let e = may_promote(account, Activity::Switch, Some(&shadow), period, at(7, 23));
        assert!(matches!(e, Err(NotYet::TooSoon { .. })), "{e:?}");
        assert!(e.unwrap_err().to_string().contains("2026-12-08"));
        // A report read during the period is not a look at the whole period.
        assert!(matches!(
            may_promote(account, Activity::Switch, Some(&shadow), period, at(8, 0)),
            Err(NotYet::NotReviewed { .. })
        ));
        shadow.reviewed_at = Some(at(8, 0));
        assert_eq!(
            may_promote(account, Activity::Switch, Some(&shadow), period, at(8, 1)),
            Ok(())
        );
    }

    #[test]
    fn live_needs_the_promotion_only_when_a_shadow_period_is_set() {
        let week = Some(TimeDelta::days(7));
        assert_eq!(promoted(Mode::Live, week, false), Mode::Audit);
        assert_eq!(promoted(Mode::Live, week, true), Mode::Live);
        assert_eq!(promoted(Mode::Audit, week, true), Mode::Audit, "outer gate");
        assert_eq!(promoted(Mode::Live, None, false), Mode::Live);
        assert_eq!("Switch".parse::<Activity>(), Ok(Activity::Switch));
        assert!("failover".parse::<Activity>().is_err());
    }
}
