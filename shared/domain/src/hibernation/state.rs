//! What the reconciler keeps per target between runs (`HIBERNATION_TABLE`), and operators'
//! overrides, in items of their own so a run never overwrites one an operator just wrote.
//!
//! A target's item holds what its schedule wanted at the last run (transitions are judged
//! against it), a group's recorded sizes while it sleeps, and the sleep it is in: since when and
//! at what on-demand price per hour. A sleep ends when the target is seen awake or the schedule
//! wants it awake; its hours and dollars are then added to the month it ended in.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::plan::Sizes;
use super::schedule::{Override, Power, Seen};

/// Prefix of the override items' keys.
pub const OVERRIDE_PREFIX: &str = "override#";
/// An override item stays this long after it ends (the table's TTL removes it then).
pub const OVERRIDE_KEPT: TimeDelta = TimeDelta::days(7);

/// `account#region`: the index the reconciler reads one account and region by.
pub fn scope(account: &str, region: &str) -> String {
    format!("{account}#{region}")
}

/// The key of a target's item: `account#region#resource` (`i-…` or `asg/<name>`).
pub fn target_key(account: &str, region: &str, resource: &str) -> String {
    format!("{account}#{region}#{resource}")
}

/// Hours and dollars a schedule saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub hours: f64,
    pub usd: f64,
}

impl Saved {
    pub fn add(&mut self, other: Saved) {
        self.hours += other.hours;
        self.usd += other.usd;
    }
}

/// One target's item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    pub target: String,
    pub scope: String,
    pub account: String,
    pub region: String,
    /// `i-…` or `asg/<name>`.
    pub resource: String,
    /// The schedule its tag named at the last run.
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
    /// A sleeping group's sizes before it slept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Sizes>,
    /// Asleep, as the schedule wants, since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep_since: Option<DateTime<Utc>>,
    /// What it costs per hour awake (on-demand), as priced when the sleep began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_hour: Option<f64>,
    /// Month (`YYYY-MM`, UTC) → what the sleeps that ended in it saved.
    #[serde(default)]
    pub saved: BTreeMap<String, Saved>,
}

impl TargetState {
    pub fn new(account: &str, region: &str, resource: &str, schedule: &str) -> Self {
        Self {
            target: target_key(account, region, resource),
            scope: scope(account, region),
            account: account.to_owned(),
            region: region.to_owned(),
            resource: resource.to_owned(),
            schedule: schedule.to_owned(),
            seen: None,
            record: None,
            asleep_since: None,
            usd_per_hour: None,
            saved: BTreeMap::new(),
        }
    }

    /// Accounts one run: whether the target is `asleep` after it and what was `desired`. A sleep
    /// begins when both say asleep (priced at `usd_per_hour`, what it would cost awake) and ends
    /// when either says awake; an ended sleep is returned and added to its month.
    pub fn account(
        &mut self,
        asleep: bool,
        desired: Power,
        now: DateTime<Utc>,
        usd_per_hour: Option<f64>,
    ) -> Option<Saved> {
        if asleep && desired == Power::Asleep {
            if self.asleep_since.is_none() {
                self.asleep_since = Some(now);
                self.usd_per_hour = usd_per_hour;
            }
            return None;
        }
        let since = self.asleep_since.take()?;
        let saved = sleep(since, now, self.usd_per_hour.take());
        self.saved
            .entry(now.format("%Y-%m").to_string())
            .or_default()
            .add(saved);
        Some(saved)
    }

    /// The sleep in progress at `now`, if any.
    pub fn sleeping(&self, now: DateTime<Utc>) -> Option<Saved> {
        self.asleep_since
            .map(|since| sleep(since, now, self.usd_per_hour))
    }
}

fn sleep(since: DateTime<Utc>, until: DateTime<Utc>, usd_per_hour: Option<f64>) -> Saved {
    let hours = (until - since).num_seconds().max(0) as f64 / 3600.0;
    Saved {
        hours,
        usd: hours * usd_per_hour.unwrap_or(0.0),
    }
}

/// An operator's override of one target, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideItem {
    pub target: String,
    pub scope: String,
    pub account: String,
    pub region: String,
    pub resource: String,
    #[serde(rename = "override")]
    pub over: Override,
    pub at: DateTime<Utc>,
    /// Seconds since the epoch: the table's TTL.
    pub expires_at: i64,
}

impl OverrideItem {
    pub fn new(
        account: &str,
        region: &str,
        resource: &str,
        over: Override,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            target: format!("{OVERRIDE_PREFIX}{}", target_key(account, region, resource)),
            scope: scope(account, region),
            account: account.to_owned(),
            region: region.to_owned(),
            resource: resource.to_owned(),
            expires_at: (over.until + OVERRIDE_KEPT).timestamp(),
            over,
            at,
        }
    }
}

/// Why an override cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("`{0}` is no target: an instance id (i-…) or asg/<group name>")]
    Target(String),
    #[error("the override ends at {until}, which is not after now ({now})")]
    Past {
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("an override lasts at most 31 days (until {0} is further)")]
    TooLong(DateTime<Utc>),
    #[error("say who overrides and why (--by, --reason)")]
    Unsigned,
}

/// The longest override: a month, so none is forgotten for good.
pub const MAX_OVERRIDE: TimeDelta = TimeDelta::days(31);

/// Checks an override of `resource` before it is stored.
pub fn check_override(
    resource: &str,
    over: &Override,
    now: DateTime<Utc>,
) -> Result<(), OverrideError> {
    use crate::ids::Field;
    let named = match resource.strip_prefix("asg/") {
        Some(group) => Field::AsgName.check(group).is_ok(),
        None => Field::InstanceId.check(resource).is_ok(),
    };
    if !named {
        return Err(OverrideError::Target(resource.to_owned()));
    }
    if over.until <= now {
        return Err(OverrideError::Past {
            until: over.until,
            now,
        });
    }
    if over.until - now > MAX_OVERRIDE {
        return Err(OverrideError::TooLong(over.until));
    }
    if over.by.trim().is_empty() || over.why.trim().is_empty() {
        return Err(OverrideError::Unsigned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_sleep_is_counted_from_when_it_began_to_when_it_ended_at_the_price_it_began_with() {
        let mut s = TargetState::new("111111111111", "us-east-1", "i-0abc12345", "office");
        // Awake and wanted awake: nothing.
        assert_eq!(
            s.account(false, Power::Awake, at("2026-03-27T16:55:00Z"), Some(0.1)),
            None
        );
        // Stopped at 17:00 UTC.
        assert_eq!(
            s.account(true, Power::Asleep, at("2026-03-27T17:00:00Z"), Some(0.1)),
            None
        );
        // Re-runs do not restart the sleep nor reprice it.
        s.account(true, Power::Asleep, at("2026-03-28T17:00:00Z"), Some(9.0));
        assert_eq!(
            s.sleeping(at("2026-03-28T17:00:00Z")).map(|x| x.hours),
            Some(24.0)
        );
        // Monday 05:50 UTC: the schedule wants it awake: the sleep ends (60 h 50 min).
        let saved = s
            .account(true, Power::Awake, at("2026-03-30T05:50:00Z"), Some(0.1))
            .unwrap();
        assert!((saved.hours - 60.0 - 50.0 / 60.0).abs() < 1e-9);
        assert!((saved.usd - saved.hours * 0.1).abs() < 1e-9);
        assert_eq!(s.saved["2026-03"], saved);
        assert_eq!(s.asleep_since, None);
        // A stop by hand during the day is not the schedule's saving.
        s.account(true, Power::Awake, at("2026-03-30T10:00:00Z"), Some(0.1));
        assert_eq!(s.asleep_since, None);
    }

    #[test]
    fn overrides_name_a_target_end_in_the_future_within_a_month_and_are_signed() {
        let now = at("2026-12-04T12:00:00Z");
        let over = |until: &str, by: &str| Override {
            power: Power::Awake,
            until: at(until),
            by: by.into(),
            why: "release".into(),
        };
        let ok = over("2026-12-05T12:00:00Z", "alice");
        assert!(check_override("i-0123456789abcdef0", &ok, now).is_ok());
        assert!(check_override("i-0abc1234", &ok, now).is_ok());
        assert!(check_override("asg/web", &ok, now).is_ok());
        assert!(matches!(
            check_override("web", &ok, now),
            Err(OverrideError::Target(_))
        ));
        assert!(matches!(
            check_override("i-1", &ok, now),
            Err(OverrideError::Target(_))
        ));
        assert!(matches!(
            check_override("asg/web", &over("2026-12-04T11:00:00Z", "a"), now),
            Err(OverrideError::Past { .. })
        ));
        assert!(matches!(
            check_override("asg/web", &over("2027-02-04T11:00:00Z", "a"), now),
            Err(OverrideError::TooLong(_))
        ));
        assert!(matches!(
            check_override("asg/web", &over("2026-12-05T12:00:00Z", " "), now),
            Err(OverrideError::Unsigned)
        ));
        let item = OverrideItem::new("111111111111", "us-east-1", "asg/web", ok, now);
        assert_eq!(item.target, "override#111111111111#us-east-1#asg/web");
        assert_eq!(item.expires_at, at("2026-12-12T12:00:00Z").timestamp());
    }
}
