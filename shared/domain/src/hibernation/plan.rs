//! The reconciler's plan for one account and region: per tagged instance and group, what the
//! schedule (or an override) wants now, and the calls that get there, batched: one
//! `StopInstances` (one with `Hibernate`), one `StartInstances`, and one size change per group.
//!
//! Groups: sleeping records the group's min, max and desired, then sets all three to 0; waking
//! restores the record, except a size someone set by hand while the group slept (anything but 0):
//! that change wins, and the record is rewritten with it, so a wake never applies a stale record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::schedule::{Override, Power, Schedule, Seen, decide};

/// A tagged instance as the reconciler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTarget {
    pub instance_id: String,
    /// The schedule its tag names.
    pub schedule: String,
    /// EC2's state name.
    pub state: String,
    /// A one-time Spot instance cannot be stopped (only terminated, which a schedule never does).
    pub unstoppable_spot: bool,
    /// Launched with hibernation configured.
    pub hibernation_configured: bool,
    pub exempt: bool,
    /// A saga of the optimizer is moving it (switch, swap, failover): why, if so.
    pub busy: Option<String>,
}

/// A tagged Auto Scaling group as the reconciler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTarget {
    pub name: String,
    pub schedule: String,
    pub size: Sizes,
    pub exempt: bool,
    /// What it was before the schedule put it to sleep, if it sleeps.
    pub record: Option<Sizes>,
}

/// A group's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
}

impl Sizes {
    pub const ASLEEP: Sizes = Sizes {
        min: 0,
        max: 0,
        desired: 0,
    };

    /// A group runs something (or will) unless min and desired are both 0.
    fn power(self) -> Power {
        if self.min == 0 && self.desired == 0 {
            Power::Asleep
        } else {
            Power::Awake
        }
    }

    /// The sizes to wake to: each recorded one, unless it was set by hand since (non-zero now).
    fn woken(self, record: Sizes) -> Sizes {
        let keep = |now: u32, recorded: u32| if now != 0 { now } else { recorded };
        Sizes {
            min: keep(self.min, record.min),
            max: keep(self.max, record.max),
            desired: keep(self.desired, record.desired),
        }
    }
}

/// What happens to one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Record `record` first, then set all three sizes to 0.
    Sleep { record: Sizes },
    /// Set the sizes to `to`, then forget the record.
    Wake { to: Sizes },
    /// Changed by hand while asleep: the record becomes `record`; nothing else changes.
    Rerecord { record: Sizes },
}

/// The plan for one account and region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub stop: Vec<String>,
    pub hibernate: Vec<String>,
    pub start: Vec<String>,
    pub groups: Vec<(String, GroupChange)>,
    /// Targets left as they are, and why (unknown schedule, unstoppable Spot, busy, …).
    pub left: Vec<(String, String)>,
    /// What each decided target's schedule wanted now: remembered for the next run.
    pub seen: BTreeMap<String, Seen>,
    /// Why each change is made, per target.
    pub why: BTreeMap<String, String>,
}

/// The schedules by name: each one usable, or why it is refused (its targets are left as they are).
pub type Schedules = BTreeMap<String, Result<Schedule, String>>;

/// The key of a group among the targets (instances are keyed by their id): `asg/<name>`.
pub fn group_key(name: &str) -> String {
    format!("asg/{name}")
}

/// The plan at `now` for `instances` and `groups`, given the schedules by name, what the last
/// run saw per target (by instance id or [`group_key`]) and the overrides in force per target.
pub fn plan(
    schedules: &Schedules,
    instances: &[InstanceTarget],
    groups: &[GroupTarget],
    seen: &BTreeMap<String, Seen>,
    overrides: &BTreeMap<String, Override>,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    for i in instances {
        let id = &i.instance_id;
        let Some(schedule) = usable(schedules, &i.schedule, id, i.exempt, &mut plan) else {
            continue;
        };
        if let Some(why) = &i.busy {
            plan.left
                .push((id.clone(), format!("the optimizer is moving it: {why}")));
            continue;
        }
        let actual = match i.state.as_str() {
            "running" => Power::Awake,
            "stopped" => Power::Asleep,
            other => {
                plan.left
                    .push((id.clone(), format!("{other}: decided next run")));
                continue;
            }
        };
        let Ok(decision) = decide(schedule, now, overrides.get(id), seen.get(id), actual) else {
            plan.left.push((
                id.clone(),
                format!("schedule {} cannot be read", i.schedule),
            ));
            continue;
        };
        plan.seen.insert(
            id.clone(),
            Seen {
                desired: decision.desired,
                at: now,
            },
        );
        match decision.act {
            Some(Power::Asleep) if i.unstoppable_spot => plan.left.push((
                id.clone(),
                "a Spot instance whose request is not persistent cannot be stopped; left running (never terminated)"
                    .to_owned(),
            )),
            Some(Power::Asleep) if schedule.hibernate && i.hibernation_configured => {
                plan.hibernate.push(id.clone());
            }
            Some(Power::Asleep) => plan.stop.push(id.clone()),
            Some(Power::Awake) => plan.start.push(id.clone()),
            None => continue,
        }
        plan.why.insert(id.clone(), decision.why);
    }
    for g in groups {
        let name = &group_key(&g.name);
        let Some(schedule) = usable(schedules, &g.schedule, name, g.exempt, &mut plan) else {
            continue;
        };
        // Sizes set by hand while asleep win: recorded now, so no later wake undoes them.
        let record = match g.record {
            Some(r) if g.size != Sizes::ASLEEP => {
                let record = g.size.woken(r);
                if record != r {
                    plan.groups
                        .push((g.name.clone(), GroupChange::Rerecord { record }));
                }
                Some(record)
            }
            other => other,
        };
        let actual = if g.record.is_some() && g.size == Sizes::ASLEEP {
            Power::Asleep
        } else {
            g.size.power()
        };
        let Ok(decision) = decide(schedule, now, overrides.get(name), seen.get(name), actual)
        else {
            plan.left.push((
                name.clone(),
                format!("schedule {} cannot be read", g.schedule),
            ));
            continue;
        };
        plan.seen.insert(
            name.clone(),
            Seen {
                desired: decision.desired,
                at: now,
            },
        );
        let change = match (decision.act, record) {
            (Some(Power::Asleep), _) => GroupChange::Sleep { record: g.size },
            (Some(Power::Awake), Some(r)) => GroupChange::Wake {
                to: g.size.woken(r),
            },
            (Some(Power::Awake), None) => {
                plan.left.push((
                    name.clone(),
                    "asleep with no record of its sizes: set them by hand".to_owned(),
                ));
                continue;
            }
            (None, _) => continue,
        };
        if matches!(change, GroupChange::Sleep { .. }) {
            // The sleep records the sizes as they are now: no separate re-record.
            plan.groups.retain(|(n, _)| *n != g.name);
        }
        plan.groups.push((g.name.clone(), change));
        plan.why.insert(name.clone(), decision.why);
    }
    plan
}

/// The target's schedule, unless it is exempt or names none the table holds (said in `left`).
fn usable<'a>(
    schedules: &'a Schedules,
    name: &str,
    target: &str,
    exempt: bool,
    plan: &mut Plan,
) -> Option<&'a Schedule> {
    if exempt {
        plan.left.push((
            target.to_owned(),
            format!("tagged {}", crate::tags::EXEMPT_TAG),
        ));
        return None;
    }
    match schedules.get(name) {
        Some(Ok(schedule)) => Some(schedule),
        Some(Err(why)) => {
            plan.left.push((
                target.to_owned(),
                format!("schedule `{name}` is refused: {why}"),
            ));
            None
        }
        None => {
            plan.left
                .push((target.to_owned(), format!("no schedule named `{name}`")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hibernation::Week;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn schedules() -> Schedules {
        let office =
            Schedule::new("office", "UTC", Week::from_periods("Mon-Fri 7-19").unwrap()).unwrap();
        let mut lab = office.clone();
        lab.name = "lab".into();
        lab.hibernate = true;
        lab.enforced = true;
        [
            ("office".to_owned(), Ok(office)),
            ("lab".to_owned(), Ok(lab)),
        ]
        .into()
    }

    fn instance(id: &str, schedule: &str, state: &str) -> InstanceTarget {
        InstanceTarget {
            instance_id: id.into(),
            schedule: schedule.into(),
            state: state.into(),
            unstoppable_spot: false,
            hibernation_configured: false,
            exempt: false,
            busy: None,
        }
    }

    /// Monday 2026-01-05, 20:00 UTC: the office is closed.
    const NIGHT: &str = "2026-01-05T20:00:00Z";
    /// Tuesday 06:55 UTC: within the 10-minute wake lead of 07:00.
    const MORNING: &str = "2026-01-06T06:55:00Z";

    #[test]
    fn at_night_running_instances_are_stopped_in_one_batch_and_hibernated_where_they_can() {
        let mut sleeper = instance("i-3", "lab", "running");
        sleeper.hibernation_configured = true;
        let mut spot = instance("i-4", "office", "running");
        spot.unstoppable_spot = true;
        let mut busy = instance("i-5", "office", "running");
        busy.busy = Some("switch sw-1".into());
        let mut exempt = instance("i-6", "office", "running");
        exempt.exempt = true;
        let targets = [
            instance("i-1", "office", "running"),
            instance("i-2", "office", "stopped"),
            sleeper,
            spot,
            busy,
            exempt,
            instance("i-7", "nope", "running"),
            instance("i-8", "office", "stopping"),
        ];
        let p = plan(
            &schedules(),
            &targets,
            &[],
            &BTreeMap::new(),
            &BTreeMap::new(),
            at(NIGHT),
        );
        assert_eq!(p.stop, ["i-1"]);
        assert_eq!(p.hibernate, ["i-3"]);
        assert!(p.start.is_empty());
        let left: BTreeMap<_, _> = p.left.iter().cloned().collect();
        assert!(left["i-4"].contains("never terminated"));
        assert!(left["i-5"].contains("switch sw-1"));
        assert!(left["i-6"].contains("exempt"));
        assert!(left["i-7"].contains("no schedule named `nope`"));
        assert!(left["i-8"].contains("next run"));
        assert_eq!(p.seen.len(), 4, "decided: i-1 to i-4 (i-4 left running)");
        assert!(p.why["i-1"].contains("transition"));
    }

    #[test]
    fn a_rerun_changes_nothing_and_the_morning_starts_them() {
        let s = schedules();
        let night = plan(
            &s,
            &[instance("i-1", "office", "running")],
            &[],
            &BTreeMap::new(),
            &BTreeMap::new(),
            at(NIGHT),
        );
        // The stop happened; five minutes later the same run sees it stopped: nothing to do.
        let again = plan(
            &s,
            &[instance("i-1", "office", "stopped")],
            &[],
            &night.seen,
            &BTreeMap::new(),
            at("2026-01-05T20:05:00Z"),
        );
        assert!(again.stop.is_empty() && again.start.is_empty() && again.groups.is_empty());
        // Someone starts it at 23:00: kept (not enforced).
        let by_hand = plan(
            &s,
            &[instance("i-1", "office", "running")],
            &[],
            &again.seen,
            &BTreeMap::new(),
            at("2026-01-05T23:00:00Z"),
        );
        assert!(by_hand.stop.is_empty());
        // The morning: already running, nothing; one stopped is started within the lead.
        let morning = plan(
            &s,
            &[
                instance("i-1", "office", "running"),
                instance("i-2", "office", "stopped"),
            ],
            &[],
            &by_hand.seen,
            &BTreeMap::new(),
            at(MORNING),
        );
        assert_eq!(morning.start, ["i-2"]);
        assert!(morning.stop.is_empty());
    }

    fn group(size: Sizes, record: Option<Sizes>) -> GroupTarget {
        GroupTarget {
            name: "web".into(),
            schedule: "office".into(),
            size,
            exempt: false,
            record,
        }
    }

    const WORK: Sizes = Sizes {
        min: 2,
        max: 6,
        desired: 3,
    };

    #[test]
    fn a_group_sleeps_with_its_sizes_recorded_and_wakes_to_exactly_them() {
        let s = schedules();
        let none: BTreeMap<String, Override> = BTreeMap::new();
        let night = plan(
            &s,
            &[],
            &[group(WORK, None)],
            &BTreeMap::new(),
            &none,
            at(NIGHT),
        );
        assert_eq!(
            night.groups,
            [("web".into(), GroupChange::Sleep { record: WORK })]
        );
        let asleep = plan(
            &s,
            &[],
            &[group(Sizes::ASLEEP, Some(WORK))],
            &night.seen,
            &none,
            at("2026-01-05T20:05:00Z"),
        );
        assert!(asleep.groups.is_empty(), "re-runs change nothing");
        let morning = plan(
            &s,
            &[],
            &[group(Sizes::ASLEEP, Some(WORK))],
            &asleep.seen,
            &none,
            at(MORNING),
        );
        assert_eq!(
            morning.groups,
            [("web".into(), GroupChange::Wake { to: WORK })]
        );
    }

    #[test]
    fn a_size_set_by_hand_while_asleep_wins_and_is_recorded() {
        let s = schedules();
        let none: BTreeMap<String, Override> = BTreeMap::new();
        let seen: BTreeMap<String, Seen> = [(
            "asg/web".to_owned(),
            Seen {
                desired: Power::Asleep,
                at: at(NIGHT),
            },
        )]
        .into();
        // At 22:00 someone raises the maximum to 10 (desired still 0): still asleep; recorded.
        let raised = Sizes {
            min: 0,
            max: 10,
            desired: 0,
        };
        let p = plan(
            &s,
            &[],
            &[group(raised, Some(WORK))],
            &seen,
            &none,
            at("2026-01-05T22:00:00Z"),
        );
        let rerecorded = Sizes {
            min: 2,
            max: 10,
            desired: 3,
        };
        assert_eq!(
            p.groups,
            [("web".into(), GroupChange::Rerecord { record: rerecorded })]
        );
        // The morning wakes it to the recorded sizes with the hand-set maximum.
        let morning = plan(
            &s,
            &[],
            &[group(raised, Some(rerecorded))],
            &p.seen,
            &none,
            at(MORNING),
        );
        assert_eq!(
            morning.groups,
            [("web".into(), GroupChange::Wake { to: rerecorded })]
        );
        // Someone wakes it by hand at 23:00 (desired 1): kept, and recorded as what it is now.
        let woken = Sizes {
            min: 0,
            max: 0,
            desired: 1,
        };
        let p = plan(
            &s,
            &[],
            &[group(woken, Some(WORK))],
            &seen,
            &none,
            at("2026-01-05T23:00:00Z"),
        );
        assert_eq!(
            p.groups,
            [(
                "web".into(),
                GroupChange::Rerecord {
                    record: Sizes {
                        min: 2,
                        max: 6,
                        desired: 1
                    }
                }
            )]
        );
    }

    #[test]
    fn an_override_keeps_a_target_awake_at_night() {
        let s = schedules();
        let o: BTreeMap<String, Override> = [(
            "i-1".to_owned(),
            Override {
                power: Power::Awake,
                until: at("2026-01-06T02:00:00Z"),
                by: "alice".into(),
                why: "release".into(),
            },
        )]
        .into();
        let p = plan(
            &s,
            &[instance("i-1", "office", "running")],
            &[],
            &BTreeMap::new(),
            &o,
            at(NIGHT),
        );
        assert!(p.stop.is_empty());
        assert_eq!(p.seen["i-1"].desired, Power::Awake);
    }
}
