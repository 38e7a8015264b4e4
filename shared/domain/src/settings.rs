//! Reading settings from the environment (through a lookup function, so tests pass a map).

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::TimeDelta;

use crate::mode::{LiveSwitch, Mode};
use crate::scope::{is_account_id, is_region};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Environment lookups with clear errors.
pub struct Env<F>(pub F);

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
                .map(|n| unit * n as i32)
                .ok_or_else(|| ConfigError(format!("{key}=`{v}` is not a whole number >= {min}"))),
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
}

/// Settings shared by the scheduled functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governance {
    pub accounts_table: String,
    pub audit_table: String,
    pub home_account_id: Option<String>,
    /// `REGIONS`, else the function's own region.
    pub regions: Vec<String>,
    pub switch: LiveSwitch,
    /// Accounts and regions scanned at once.
    pub concurrency: usize,
}

impl Governance {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let mut regions = env.list("REGIONS", is_region)?;
        if regions.is_empty() {
            regions = vec![
                env.required("AWS_REGION")
                    .map_err(|_| ConfigError("REGIONS and AWS_REGION are both unset".into()))?,
            ];
        }
        Ok(Self {
            accounts_table: env.required("ACCOUNTS_TABLE")?,
            audit_table: env.required("AUDIT_TABLE")?,
            home_account_id: env.optional("HOME_ACCOUNT_ID"),
            regions,
            switch: LiveSwitch {
                mode: env.parsed("MODE", Mode::Audit)?,
                live_accounts: env
                    .list("LIVE_ACCOUNTS", is_account_id)?
                    .into_iter()
                    .collect::<BTreeSet<_>>(),
            },
            concurrency: env.parsed::<usize>("CONCURRENCY", 4)?.clamp(1, 32),
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
    fn governance_defaults_are_audit_and_the_function_region() {
        let g = Governance::from_env(&env(&[
            ("ACCOUNTS_TABLE", "a"),
            ("AUDIT_TABLE", "u"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(g.regions, vec!["eu-west-1"]);
        assert_eq!(g.switch.mode, Mode::Audit);
        assert!(g.switch.live_accounts.is_empty());
        assert_eq!(g.concurrency, 4);
    }

    #[test]
    fn governance_reads_lists_and_rejects_bad_values() {
        let g = Governance::from_env(&env(&[
            ("ACCOUNTS_TABLE", "a"),
            ("AUDIT_TABLE", "u"),
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
        ] {
            let e = env(&[
                ("ACCOUNTS_TABLE", "a"),
                ("AUDIT_TABLE", "u"),
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
