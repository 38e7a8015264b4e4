//! Configuration: every function reads one typed `Config` from its environment, once per cold
//! start, through [`Env`] (a lookup function, so tests pass a map). The keys are named once, in
//! [`key`]; the parts several functions share ([`Accounts`], [`Governance`]) are read here; what
//! one function alone reads lives in its own `Config`. Adapters never read the environment.
//!
//! `tests/src/config.rs` checks, for every function, that the keys its `Config` reads and the
//! `Environment` the template gives it are the same, both ways.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::TimeDelta;

use crate::governance::mode::{LiveSwitch, Mode};
use crate::ids::Field;

/// Every environment key a function reads, with what it means. Defaults live with the code that
/// reads each key; the template's parameters document them too (`docs/configuration.md`).
pub mod key {
    // ---- set by the Lambda service, not by the template
    /// The function's region.
    pub const AWS_REGION: &str = "AWS_REGION";
    /// Lambda's advanced logging level (`LogLevel` in the template's `LoggingConfig`).
    pub const AWS_LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
    /// Keys the runtime sets: never in a function's `Environment`.
    pub const RUNTIME: [&str; 2] = [AWS_REGION, AWS_LAMBDA_LOG_LEVEL];

    // ---- tables
    pub const ACCOUNTS_TABLE: &str = "ACCOUNTS_TABLE";
    pub const QUARANTINE_TABLE: &str = "QUARANTINE_TABLE";
    pub const WASTE_TABLE: &str = "WASTE_TABLE";
    pub const ENFORCEMENT_TABLE: &str = "ENFORCEMENT_TABLE";
    pub const AUDIT_TABLE: &str = "AUDIT_TABLE";
    /// The ledger of both sagas (one record per instance moved, or refused).
    pub const LEDGER_TABLE: &str = "LEDGER_TABLE";
    pub const APPROVALS_TABLE: &str = "APPROVALS_TABLE";

    // ---- owner notices
    /// The SNS topic told of every decision an owner should know (waste, enforcement, sagas).
    pub const NOTICE_TOPIC_ARN: &str = "NOTICE_TOPIC_ARN";

    // ---- reaching accounts
    /// The account the function runs in (else asked of STS at start).
    pub const HOME_ACCOUNT_ID: &str = "HOME_ACCOUNT_ID";
    /// How long a warm function trusts its copy of an accounts-table item (seconds).
    pub const ACCOUNT_CACHE_SECONDS: &str = "ACCOUNT_CACHE_SECONDS";
    /// Environment of an account the accounts table does not know (`PROD` or `LAB`).
    pub const DEFAULT_ENVIRONMENT: &str = "DEFAULT_ENVIRONMENT";
    /// The stack's AWS Organizations id: signals from its unregistered accounts are read through
    /// the member role convention; none: only registered accounts' and the home account's.
    pub const ORGANIZATION_ID: &str = "ORGANIZATION_ID";
    /// The member stacks' role name and ExternalId (the convention for unregistered accounts).
    pub const MEMBER_ROLE_NAME: &str = "MEMBER_ROLE_NAME";
    pub const MEMBER_EXTERNAL_ID: &str = "MEMBER_EXTERNAL_ID";

    // ---- the live switch
    pub const MODE: &str = "MODE";
    pub const LIVE_ACCOUNTS: &str = "LIVE_ACCOUNTS";
    pub const REGIONS: &str = "REGIONS";
    pub const CONCURRENCY: &str = "CONCURRENCY";

    // ---- quarantine
    pub const QUARANTINE_SECONDS_INTERRUPTION: &str = "QUARANTINE_SECONDS_INTERRUPTION";
    pub const QUARANTINE_SECONDS_REBALANCE: &str = "QUARANTINE_SECONDS_REBALANCE";
    pub const CAPACITY_HOLD_SECONDS: &str = "CAPACITY_HOLD_SECONDS";
    pub const EVENT_SKEW_SECONDS: &str = "EVENT_SKEW_SECONDS";

    // ---- waste scanner
    pub const FLAG_AFTER_DAYS: &str = "FLAG_AFTER_DAYS";
    pub const DELETE_GRACE_DAYS: &str = "DELETE_GRACE_DAYS";
    pub const VOLUME_MIN_AGE_DAYS: &str = "VOLUME_MIN_AGE_DAYS";
    pub const SNAPSHOT_MIN_AGE_DAYS: &str = "SNAPSHOT_MIN_AGE_DAYS";
    pub const AMI_MIN_AGE_DAYS: &str = "AMI_MIN_AGE_DAYS";
    pub const SNAPSHOT_BEFORE_DELETE: &str = "SNAPSHOT_BEFORE_DELETE";
    pub const PRICE_OVERRIDES: &str = "PRICE_OVERRIDES";

    // ---- security enforcer
    pub const AUTHORIZED_TAGS: &str = "AUTHORIZED_TAGS";
    pub const GRACE_HOURS: &str = "GRACE_HOURS";
    pub const ACTION: &str = "ACTION";

    // ---- sagas
    pub const APPROVAL_THRESHOLD: &str = "APPROVAL_THRESHOLD";
    pub const APPROVAL_TOPIC_ARN: &str = "APPROVAL_TOPIC_ARN";
    /// The approval links' function URL (`approval-link`); none: the notice carries no links.
    pub const APPROVAL_LINK_URL: &str = "APPROVAL_LINK_URL";
    pub const APPROVAL_TIMEOUT_SECONDS: &str = "APPROVAL_TIMEOUT_SECONDS";
    pub const WAIT_SECONDS: &str = "WAIT_SECONDS";
    pub const IMAGE_CHECKS: &str = "IMAGE_CHECKS";
    pub const HEALTH_CHECKS: &str = "HEALTH_CHECKS";
    pub const NO_REBOOT: &str = "NO_REBOOT";
    pub const KEEP_IMAGE: &str = "KEEP_IMAGE";
    pub const ASG_ALLOWLIST: &str = "ASG_ALLOWLIST";
    pub const ALLOW_PROTECTED: &str = "ALLOW_PROTECTED";
    pub const BATCH_PERCENT: &str = "BATCH_PERCENT";
    pub const MAX_MEMBERS: &str = "MAX_MEMBERS";

    // ---- saga steps: the state machines whose running executions a step serves
    pub const STATE_MACHINES: &str = "STATE_MACHINES";

    // ---- router
    pub const SWITCH_STATE_MACHINE_ARN: &str = "SWITCH_STATE_MACHINE_ARN";
    pub const SWAP_STATE_MACHINE_ARN: &str = "SWAP_STATE_MACHINE_ARN";

    // ---- emergency failover (the interruption handler starts it)
    pub const FAILOVER_STATE_MACHINE_ARN: &str = "FAILOVER_STATE_MACHINE_ARN";
    /// The bus the interruption handler publishes its decisions on.
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
    /// What a rebalance recommendation for a managed instance does: `replace` or `quarantine`.
    pub const REBALANCE_ACTION: &str = "REBALANCE_ACTION";
    /// How long an interrupted instance's kept volumes stay before they may become waste.
    pub const PRESERVED_RETENTION_DAYS: &str = "PRESERVED_RETENTION_DAYS";
    /// Hysteresis: a workload interrupted this many times within the window gets an on-demand
    /// replacement, left on-demand for the hold.
    pub const HYSTERESIS_INTERRUPTIONS: &str = "HYSTERESIS_INTERRUPTIONS";
    pub const HYSTERESIS_WINDOW_DAYS: &str = "HYSTERESIS_WINDOW_DAYS";
    pub const ON_DEMAND_HOLD_DAYS: &str = "ON_DEMAND_HOLD_DAYS";

    // ---- savings and a switch's leftovers
    /// How long a switch keeps its stopped source, the source's volumes and its image before they
    /// go through the waste lifecycle (and how long `spotctl switch revert` can switch back).
    pub const SOURCE_RETENTION_DAYS: &str = "SOURCE_RETENTION_DAYS";

    // ---- fan-out of the scheduled functions
    /// The fan-out state machines' `Map` concurrency (the `fanout` function answers it).
    pub const FAN_OUT_CONCURRENCY: &str = "FAN_OUT_CONCURRENCY";

    // ---- guardrails
    /// The control table: pauses, the circuit breaker's counts, shadow runs and promotions.
    pub const CONTROL_TABLE: &str = "CONTROL_TABLE";
    /// How long a warm function trusts its copy of the pauses (seconds, 0-60).
    pub const PAUSE_CHECK_SECONDS: &str = "PAUSE_CHECK_SECONDS";
    /// Days an account runs an activity in shadow before it may be promoted to live (0: no
    /// promotion needed, `LIVE_ACCOUNTS` alone decides).
    pub const SHADOW_DAYS: &str = "SHADOW_DAYS";
    /// Consecutive failed live sagas that pause an account.
    pub const BREAKER_THRESHOLD: &str = "BREAKER_THRESHOLD";

    // ---- hibernation
    pub const SCHEDULES_TABLE: &str = "SCHEDULES_TABLE";
    /// The reconciler's per-target state and the operators' overrides.
    pub const HIBERNATION_TABLE: &str = "HIBERNATION_TABLE";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Environment lookups with clear errors.
pub struct Env<F>(pub F);

/// The process environment.
pub type ProcessEnv = Env<fn(&str) -> Option<String>>;

impl ProcessEnv {
    pub fn process() -> Self {
        fn read(key: &str) -> Option<String> {
            std::env::var(key).ok()
        }
        Env(read)
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, key: &str) -> Option<String> {
        (self.0)(key).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.get(key)
            .ok_or_else(|| ConfigError(format!("{key} is not set")))
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        self.get(key)
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parsed<T: FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| ConfigError(format!("{key}=`{v}`: {e}"))),
        }
    }

    /// A whole number of `unit`s, at least `min`.
    pub fn duration(
        &self,
        key: &str,
        default: TimeDelta,
        unit: TimeDelta,
        min: u32,
    ) -> Result<TimeDelta, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= min)
                .and_then(|n| unit.checked_mul(i32::try_from(n).ok()?))
                .ok_or_else(|| ConfigError(format!("{key}=`{v}` is not a whole number >= {min}"))),
        }
    }

    /// A whole number within `min..=max`, or `default` when unset.
    pub fn bounded<T>(&self, key: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| *n >= min && *n <= max)
                .ok_or_else(|| ConfigError(format!("{key}=`{v}` is not within {min}..={max}"))),
        }
    }

    /// A comma list, each item checked by `valid`.
    pub fn list(
        &self,
        key: &str,
        valid: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = self
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        match items.iter().find(|i| !valid(i)) {
            Some(bad) => Err(ConfigError(format!("{key}: `{bad}` is not valid"))),
            None => Ok(items),
        }
    }

    /// The log level: Lambda's advanced logging controls, else `info`.
    pub fn log_level(&self) -> String {
        self.get(key::AWS_LAMBDA_LOG_LEVEL)
            .unwrap_or_else(|| "info".into())
    }
}

/// How a function reaches the accounts it acts in: the accounts table, the home account, and how
/// long an item is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    pub table: String,
    /// The account the function runs in; asked of STS at start when unset.
    pub home_account_id: Option<String>,
    /// How long a warm function trusts its copy of an accounts-table item.
    pub cache: TimeDelta,
}

impl Accounts {
    /// Default of `ACCOUNT_CACHE_SECONDS`.
    pub const DEFAULT_CACHE: TimeDelta = TimeDelta::seconds(300);

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(key::ACCOUNTS_TABLE)?,
            home_account_id: env.optional(key::HOME_ACCOUNT_ID),
            cache: env.duration(
                key::ACCOUNT_CACHE_SECONDS,
                Self::DEFAULT_CACHE,
                TimeDelta::seconds(1),
                0,
            )?,
        })
    }
}

/// Which executions a saga step acts for: running ones of `machines`, in the home account and the
/// function's region. A step checks this with Step Functions before anything else, so invoking its
/// Lambda directly with a made-up or finished execution does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executions {
    /// State machine names (`STATE_MACHINES`, a comma list; the approval step serves both sagas).
    pub machines: Vec<String>,
    /// The account the state machines are in; asked of STS at start when unset.
    pub home_account_id: Option<String>,
    pub region: String,
}

impl Executions {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let machines = env.list(key::STATE_MACHINES, |v| Field::ExecutionName.accepts(v))?;
        if machines.is_empty() {
            return Err(ConfigError(format!(
                "{} is unset: a saga step must know which state machines invoke it",
                key::STATE_MACHINES
            )));
        }
        Ok(Self {
            machines,
            home_account_id: env.optional(key::HOME_ACCOUNT_ID),
            region: env.required(key::AWS_REGION)?,
        })
    }

    /// The ARN `execution` has in each of the state machines, in `account`; none for a name Step
    /// Functions could not have given (so it is never sent).
    pub fn arns(&self, account: &str, execution: &str) -> Vec<String> {
        if !Field::ExecutionName.accepts(execution) {
            return Vec::new();
        }
        let partition = partition(&self.region);
        self.machines
            .iter()
            .map(|machine| {
                format!(
                    "arn:{partition}:states:{}:{account}:execution:{machine}:{execution}",
                    self.region
                )
            })
            .collect()
    }
}

/// What every function that changes something reads about the guardrails: the control table
/// and how long its pauses are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    pub table: String,
    /// A warm function re-reads the pauses when its copy is older than this.
    pub pause_check: TimeDelta,
}

impl Guardrails {
    /// Default of `PAUSE_CHECK_SECONDS`: a pause takes hold within five seconds.
    pub const DEFAULT_PAUSE_CHECK: TimeDelta = TimeDelta::seconds(5);

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let seconds: u32 = env.bounded(
            key::PAUSE_CHECK_SECONDS,
            Self::DEFAULT_PAUSE_CHECK.num_seconds() as u32,
            0,
            60,
        )?;
        Ok(Self {
            table: env.required(key::CONTROL_TABLE)?,
            pause_check: TimeDelta::seconds(i64::from(seconds)),
        })
    }
}

/// `SHADOW_DAYS`: the shadow period before an account may be promoted to live (default 7); `None`
/// when set to 0 (no promotion needed).
pub fn shadow_period<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<TimeDelta>, ConfigError> {
    let days: u32 = env.bounded(key::SHADOW_DAYS, 7, 0, 365)?;
    Ok((days > 0).then(|| TimeDelta::days(i64::from(days))))
}

/// `BREAKER_THRESHOLD`: consecutive failed live sagas that pause an account (1-100, default 3).
pub fn breaker<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<crate::guard::Breaker, ConfigError> {
    Ok(crate::guard::Breaker {
        threshold: env.bounded(
            key::BREAKER_THRESHOLD,
            crate::guard::Breaker::DEFAULT_THRESHOLD,
            1,
            100,
        )?,
    })
}

/// The ARN partition of `region`: `aws-cn` in China, `aws-us-gov` in GovCloud, else `aws`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// How unregistered accounts are reached (`ORGANIZATION_ID`, `MEMBER_ROLE_NAME`,
/// `MEMBER_EXTERNAL_ID`; the partition from `AWS_REGION`).
pub fn unregistered<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<crate::account::Unregistered, ConfigError> {
    let region = env.optional(key::AWS_REGION).unwrap_or_default();
    Ok(crate::account::Unregistered {
        organization_id: env.optional(key::ORGANIZATION_ID),
        role_name: env
            .optional(key::MEMBER_ROLE_NAME)
            .unwrap_or_else(|| "SpotOptimizerMember".into()),
        external_id: env.optional(key::MEMBER_EXTERNAL_ID),
        partition: partition(&region).into(),
    })
}

/// `REGIONS`, else the function's own region.
pub fn regions<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Vec<String>, ConfigError> {
    let regions = env.list(key::REGIONS, |v| Field::Region.accepts(v))?;
    let own = env.optional(key::AWS_REGION);
    match (regions.is_empty(), own) {
        (false, _) => Ok(regions),
        (true, Some(own)) => Ok(vec![own]),
        (true, None) => Err(ConfigError("REGIONS and AWS_REGION are both unset".into())),
    }
}

/// `MODE` (parsed as `T`, then read as audit or live) and the `LIVE_ACCOUNTS` allowlist.
pub fn live_switch<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    mode: Mode,
) -> Result<LiveSwitch, ConfigError> {
    Ok(LiveSwitch {
        mode,
        live_accounts: env
            .list(key::LIVE_ACCOUNTS, |v| Field::AccountId.accepts(v))?
            .into_iter()
            .collect::<BTreeSet<_>>(),
    })
}

/// How many accounts and regions are worked on at once (1-32, default 4).
pub fn concurrency<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<usize, ConfigError> {
    env.bounded(key::CONCURRENCY, 4, 1, 32)
}

/// Settings shared by the scheduled functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governance {
    pub accounts: Accounts,
    pub audit_table: String,
    /// `REGIONS`, else the function's own region.
    pub regions: Vec<String>,
    pub switch: LiveSwitch,
    /// Accounts and regions scanned at once.
    pub concurrency: usize,
    pub guardrails: Guardrails,
    /// Shadow before live (`SHADOW_DAYS`).
    pub shadow_period: Option<TimeDelta>,
}

impl Governance {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            regions: regions(env)?,
            switch: live_switch(env, env.parsed(key::MODE, Mode::Audit)?)?,
            concurrency: concurrency(env)?,
            guardrails: Guardrails::from_env(env)?,
            shadow_period: shadow_period(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String> + use<>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Env(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn a_saga_step_names_its_state_machines_and_their_executions_arns() {
        let e = Executions::from_env(&env(&[
            ("STATE_MACHINES", "stack-atomic-switch, stack-asg-swap"),
            ("HOME_ACCOUNT_ID", "123456789012"),
            ("AWS_REGION", "us-east-1"),
        ]))
        .unwrap();
        assert_eq!(
            e.arns("123456789012", "switch-i-1-20261128"),
            vec![
                "arn:aws:states:us-east-1:123456789012:execution:stack-atomic-switch:switch-i-1-20261128",
                "arn:aws:states:us-east-1:123456789012:execution:stack-asg-swap:switch-i-1-20261128",
            ]
        );
        // A name Step Functions never gives is never asked about.
        for forged in ["", "a:b", "../x", &"x".repeat(81)] {
            assert!(e.arns("123456789012", forged).is_empty(), "{forged}");
        }
        let china = Executions {
            region: "cn-north-1".into(),
            ..e.clone()
        };
        assert!(china.arns("1", "x")[0].starts_with("arn:aws-cn:states:cn-north-1:1:"));
        // A step without its state machines does not start.
        for bad in [
            vec![("AWS_REGION", "us-east-1")],
            vec![("STATE_MACHINES", "a b"), ("AWS_REGION", "us-east-1")],
        ] {
            assert!(Executions::from_env(&env(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn governance_defaults_are_audit_and_the_function_region() {
        let g = Governance::from_env(&env(&[
            ("ACCOUNTS_TABLE", "a"),
            ("AUDIT_TABLE", "u"),
            ("CONTROL_TABLE", "c"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(g.regions, vec!["eu-west-1"]);
        assert_eq!(g.switch.mode, Mode::Audit);
        assert!(g.switch.live_accounts.is_empty());
        assert_eq!(g.concurrency, 4);
        assert_eq!(g.accounts.cache, Accounts::DEFAULT_CACHE);
        assert_eq!(g.shadow_period, Some(TimeDelta::days(7)));
        assert_eq!(g.guardrails.pause_check, Guardrails::DEFAULT_PAUSE_CHECK);
    }

    #[test]
    fn governance_reads_lists_and_rejects_bad_values() {
        let g = Governance::from_env(&env(&[
            ("ACCOUNTS_TABLE", "a"),
            ("AUDIT_TABLE", "u"),
            ("CONTROL_TABLE", "c"),
            ("REGIONS", "us-east-1, eu-west-1"),
            ("MODE", "live"),
            ("LIVE_ACCOUNTS", "111111111111,222222222222"),
        ]))
        .unwrap();
        assert_eq!(g.regions, vec!["us-east-1", "eu-west-1"]);
        assert_eq!(g.switch.mode, Mode::Live);
        assert_eq!(g.switch.live_accounts.len(), 2);
        for (k, v) in [
            ("MODE", "on"),
            ("LIVE_ACCOUNTS", "123"),
            ("REGIONS", "Mars"),
            ("CONCURRENCY", "many"),
            ("CONCURRENCY", "0"),
            ("ACCOUNT_CACHE_SECONDS", "-1"),
            ("SHADOW_DAYS", "366"),
            ("PAUSE_CHECK_SECONDS", "61"),
        ] {
            let e = env(&[
                ("ACCOUNTS_TABLE", "a"),
                ("AUDIT_TABLE", "u"),
                ("CONTROL_TABLE", "c"),
                ("AWS_REGION", "us-east-1"),
                (k, v),
            ]);
            assert!(Governance::from_env(&e).is_err(), "{k}={v}");
        }
        assert!(
            Governance::from_env(&env(&[("AUDIT_TABLE", "u"), ("AWS_REGION", "us-east-1")]))
                .is_err()
        );
    }

    #[test]
    fn durations_have_units_and_minimums() {
        let e = env(&[("DAYS", "6"), ("ZERO", "0")]);
        let day = TimeDelta::days(1);
        assert_eq!(
            e.duration("DAYS", TimeDelta::days(7), day, 1),
            Ok(TimeDelta::days(6))
        );
        assert_eq!(
            e.duration("UNSET", TimeDelta::days(7), day, 1),
            Ok(TimeDelta::days(7))
        );
        assert!(e.duration("ZERO", TimeDelta::days(7), day, 1).is_err());
    }
}
