//! Scheduled instances and groups as EC2 and Auto Scaling describe them, and what the plan needs
//! of each: its schedule, whether it is exempt, and whether the optimizer is moving it.

use chrono::{DateTime, TimeDelta, Utc};

use super::plan::{GroupTarget, InstanceTarget, Sizes};
use crate::tags::{self, EXEMPT_TAG, FAILOVER_TAG, SCHEDULE_TAG, SWAP_TAG, SWITCH_TAG, Tags};

/// An instance the optimizer launched this recently may still be in its saga's hands (checked,
/// promoted, attached): the reconciler decides on it at a later run.
pub const SETTLING: TimeDelta = TimeDelta::minutes(15);

/// A tagged instance, as one `DescribeInstances` pass reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub state: String,
    pub tags: Tags,
    /// The Spot request it runs under, if it is a Spot instance.
    pub spot_request: Option<String>,
    pub spot: bool,
    pub hibernation_configured: bool,
    pub launched_at: Option<DateTime<Utc>>,
}

/// A tagged group, as one `DescribeAutoScalingGroups` pass reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledGroup {
    pub name: String,
    pub size: Sizes,
    pub tags: Tags,
    /// Its members' instance types (what it costs awake).
    pub member_types: Vec<String>,
}

impl ScheduledInstance {
    /// What the plan needs of it; `one_time` says its Spot request cannot be stopped, `locked` the
    /// saga that holds its lock (switch), if one does.
    pub fn target(
        &self,
        one_time: bool,
        locked: Option<&str>,
        now: DateTime<Utc>,
    ) -> InstanceTarget {
        InstanceTarget {
            instance_id: self.instance_id.clone(),
            schedule: self.tags.get(SCHEDULE_TAG).cloned().unwrap_or_default(),
            state: self.state.clone(),
            unstoppable_spot: self.spot && one_time,
            hibernation_configured: self.hibernation_configured,
            exempt: self.tags.contains_key(EXEMPT_TAG),
            busy: locked
                .map(|holder| format!("held by {holder}"))
                .or_else(|| self.moved(now)),
        }
    }

    /// Whether a saga of the optimizer has it (a source it replaced, or an instance it launched a
    /// moment ago), and which.
    fn moved(&self, now: DateTime<Utc>) -> Option<String> {
        let mark = [SWITCH_TAG, SWAP_TAG, FAILOVER_TAG]
            .into_iter()
            .find_map(|key| Some((key, self.tags.get(key)?)));
        if tags::is_managed(&self.tags) {
            let recent = self.launched_at.is_some_and(|at| now - at < SETTLING);
            return recent.then(|| {
                format!(
                    "launched by the optimizer {} min ago",
                    (now - self.launched_at.unwrap_or(now)).num_minutes()
                )
            });
        }
        // Not launched by the optimizer but marked by a saga: a source it stopped or replaced,
        // whose clone follows the schedule instead. Starting it would run both.
        mark.map(|(key, id)| format!("replaced by the optimizer ({key}={id})"))
    }
}

impl ScheduledGroup {
    /// What the plan needs of it, with the record of its sizes if it sleeps.
    pub fn target(&self, record: Option<Sizes>) -> GroupTarget {
        GroupTarget {
            name: self.name.clone(),
            schedule: self.tags.get(SCHEDULE_TAG).cloned().unwrap_or_default(),
            size: self.size,
            exempt: self.tags.contains_key(EXEMPT_TAG),
            record,
        }
    }
}

/// Why the sagas leave a target alone now, if its schedule wants it asleep (the reconciler stops
/// it, or keeps it stopped): switching or swapping it would launch what the schedule puts to
/// sleep. A schedule unknown or refused says nothing here (the reconciler reports it).
pub fn asleep_by_schedule(
    tags: &Tags,
    schedules: &super::plan::Schedules,
    now: DateTime<Utc>,
) -> Option<String> {
    let name = tags.get(SCHEDULE_TAG)?;
    let schedule = schedules.get(name)?.as_ref().ok()?;
    (schedule.desired_at(now).ok()? == super::Power::Asleep)
        .then(|| format!("asleep by schedule `{name}` now ({SCHEDULE_TAG})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(tags: &[(&str, &str)], launched_min_ago: i64) -> ScheduledInstance {
        ScheduledInstance {
            instance_id: "i-1".into(),
            instance_type: "m5.large".into(),
            state: "running".into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            spot_request: None,
            spot: false,
            hibernation_configured: false,
            launched_at: Some(now() - TimeDelta::minutes(launched_min_ago)),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-04T20:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_sagas_leave_alone_what_its_schedule_wants_asleep() {
        use crate::hibernation::{Schedule, Week};
        let office =
            Schedule::new("office", "UTC", Week::from_periods("Mon-Fri 8-18").unwrap()).unwrap();
        let schedules: crate::hibernation::plan::Schedules = [
            ("office".to_owned(), Ok(office)),
            ("bad".to_owned(), Err("x".into())),
        ]
        .into();
        let tags = |v: &str| Tags::from([(SCHEDULE_TAG.to_owned(), v.to_owned())]);
        // Friday 2026-12-04 20:00 UTC: after hours.
        assert!(asleep_by_schedule(&tags("office"), &schedules, now()).is_some());
        let noon = "2026-12-04T12:00:00Z".parse().unwrap();
        assert_eq!(asleep_by_schedule(&tags("office"), &schedules, noon), None);
        assert_eq!(asleep_by_schedule(&tags("bad"), &schedules, now()), None);
        assert_eq!(asleep_by_schedule(&tags("nope"), &schedules, now()), None);
        assert_eq!(asleep_by_schedule(&Tags::new(), &schedules, now()), None);
    }

    #[test]
    fn what_a_saga_has_is_left_to_it() {
        let plain = instance(&[(SCHEDULE_TAG, "office")], 600);
        let t = plain.target(false, None, now());
        assert_eq!((t.schedule.as_str(), t.busy), ("office", None));
        assert_eq!(
            plain.target(false, Some("sw-1"), now()).busy.as_deref(),
            Some("held by sw-1")
        );
        let source = instance(&[(SCHEDULE_TAG, "office"), (SWITCH_TAG, "sw-1")], 600);
        assert!(
            source
                .target(false, None, now())
                .busy
                .unwrap()
                .contains("replaced")
        );
        let clone = |age| {
            instance(
                &[
                    (SCHEDULE_TAG, "office"),
                    (SWITCH_TAG, "sw-1"),
                    ("ManagedBy", "SpotOptimizer"),
                ],
                age,
            )
        };
        assert!(clone(5).target(false, None, now()).busy.is_some());
        assert_eq!(clone(60).target(false, None, now()).busy, None);
        let mut spot = clone(60);
        spot.spot = true;
        assert!(spot.target(true, None, now()).unstoppable_spot);
        assert!(!spot.target(false, None, now()).unstoppable_spot);
        assert!(
            instance(&[(SCHEDULE_TAG, "o"), (EXEMPT_TAG, "")], 600)
                .target(false, None, now())
                .exempt
        );
    }
}
