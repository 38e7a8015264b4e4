//! A hibernation schedule and what it says at an instant.
//!
//! The rule (the whole of it): convert the instant to the schedule's local time, which is exactly
//! one wall-clock time for every instant, then read the week's cell at that weekday and hour. So in
//! the spring-forward gap no cell is misread (the skipped hour never happens; the hours around it
//! read their own cells), and in the repeated autumn hour both occurrences read the same cell.
//! No arithmetic is ever done in local time.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::week::{Week, WeekError};

/// How long before an awake hour an instance is started by default, so it serves at the hour.
pub const DEFAULT_WAKE_LEAD_MINUTES: u32 = 10;
/// The longest wake lead a schedule may ask for.
pub const MAX_WAKE_LEAD_MINUTES: u32 = 180;

/// Why a schedule is refused; nothing is stored or changed with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Week(#[from] WeekError),
    #[error("`{0}` is no IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)")]
    Zone(String),
    #[error("schedule name `{0}`: 1-64 characters of letters, digits, `-`, `_`, `.`")]
    Name(String),
    #[error("wake lead of {0} minutes: at most {MAX_WAKE_LEAD_MINUTES}")]
    WakeLead(u32),
}

/// Whether a target should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Power {
    Awake,
    Asleep,
}

impl Power {
    fn of(awake: bool) -> Self {
        if awake { Self::Awake } else { Self::Asleep }
    }
}

/// A named schedule, as `SCHEDULES_TABLE` stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// IANA time zone the week is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The awake hours (its 168-character matrix).
    pub awake: Week,
    /// Re-apply the desired state every run; off: act only at transitions, so a person who starts
    /// an instance during the night keeps it until the next sleep transition.
    #[serde(default)]
    pub enforced: bool,
    /// Hibernate instead of stopping where the instance has hibernation configured.
    #[serde(default)]
    pub hibernate: bool,
    /// Start this long before an awake hour.
    #[serde(default = "default_lead")]
    pub wake_lead_minutes: u32,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_lead() -> u32 {
    DEFAULT_WAKE_LEAD_MINUTES
}

impl Schedule {
    /// A schedule with the default options, checked.
    pub fn new(name: &str, timezone: &str, awake: Week) -> Result<Self, ScheduleError> {
        let schedule = Self {
            name: name.to_owned(),
            timezone: timezone.to_owned(),
            awake,
            enforced: false,
            hibernate: false,
            wake_lead_minutes: DEFAULT_WAKE_LEAD_MINUTES,
        };
        schedule.check()?;
        Ok(schedule)
    }

    /// Whether the stored or given schedule can be used: its name, zone and lead.
    pub fn check(&self) -> Result<(), ScheduleError> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(ScheduleError::Name(self.name.clone()));
        }
        zone(&self.timezone)?;
        if self.wake_lead_minutes > MAX_WAKE_LEAD_MINUTES {
            return Err(ScheduleError::WakeLead(self.wake_lead_minutes));
        }
        Ok(())
    }

    /// Whether the week says awake at `at` (the matrix alone, no wake lead).
    pub fn awake_at(&self, at: DateTime<Utc>) -> Result<bool, ScheduleError> {
        Ok(awake_in(&self.awake, zone(&self.timezone)?, at))
    }

    /// What a target should be at `at`: awake in an awake hour, and from `wake_lead_minutes`
    /// before one (measured in real time, so a lead across a DST change is still that long).
    pub fn desired_at(&self, at: DateTime<Utc>) -> Result<Power, ScheduleError> {
        let tz = zone(&self.timezone)?;
        let lead = TimeDelta::minutes(i64::from(self.wake_lead_minutes));
        Ok(Power::of(
            awake_in(&self.awake, tz, at) || awake_in(&self.awake, tz, at + lead),
        ))
    }
}

/// The IANA zone named `name`.
pub fn zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::Zone(name.to_owned()))
}

/// The cell of `week` that instant `at` falls in, read in `tz`.
pub fn awake_in(week: &Week, tz: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&tz);
    week.awake(local.weekday(), local.hour())
}

/// An operator's override of a target's schedule, until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub power: Power,
    pub until: DateTime<Utc>,
    pub by: String,
    pub why: String,
}

/// What the reconciler remembers of a target between runs: the state the schedule (or an
/// override) wanted at its last run, and since when it has wanted it (`at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub desired: Power,
    pub at: DateTime<Utc>,
}

/// The reconciler's decision for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub desired: Power,
    /// The change to make, if any.
    pub act: Option<Power>,
    pub why: String,
}

/// What to do with a target that is `actual` at `now`, under `schedule`, an `override` (if one
/// is in force) and what the last run `seen`. An override is applied as long as it lasts; an
/// enforced schedule always; otherwise only at a transition (the desired state changed since the
/// last run, or there was no last run), so a manual start at night is kept until the next sleep.
pub fn decide(
    schedule: &Schedule,
    now: DateTime<Utc>,
    over: Option<&Override>,
    seen: Option<&Seen>,
    actual: Power,
) -> Result<Decision, ScheduleError> {
    if let Some(o) = over.filter(|o| o.until > now) {
        let act = (actual != o.power).then_some(o.power);
        return Ok(Decision {
            desired: o.power,
            act,
            why: format!(
                "overridden {} until {} by {} ({})",
                o.power, o.until, o.by, o.why
            ),
        });
    }
    let desired = schedule.desired_at(now)?;
    let transition = seen.is_none_or(|s| s.desired != desired);
    let (act, why) = match (actual == desired, schedule.enforced, transition) {
        (true, _, _) => (None, format!("{desired}, as the schedule wants")),
        (false, true, _) => (Some(desired), format!("enforced: {desired} now")),
        (false, false, true) => (Some(desired), format!("transition to {desired}")),
        (false, false, false) => (
            None,
            format!("{actual} by hand since the last transition: kept until the next one"),
        ),
    };
    Ok(Decision { desired, act, why })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn working_hours(tz: &str) -> Schedule {
        Schedule::new("office", tz, Week::from_periods("Mon-Fri 7-19").unwrap()).unwrap()
    }

    #[test]
    fn the_week_is_read_in_local_time() {
        let berlin = working_hours("Europe/Berlin");
        // Monday 2026-01-05 06:30 UTC is 07:30 in Berlin (CET, +1).
        assert!(berlin.awake_at(at("2026-01-05T06:30:00Z")).unwrap());
        assert!(!berlin.awake_at(at("2026-01-05T05:30:00Z")).unwrap());
        // In summer (CEST, +2) the same local hour is an hour earlier in UTC.
        assert!(berlin.awake_at(at("2026-07-06T05:30:00Z")).unwrap());
        let utc = working_hours("UTC");
        assert!(!utc.awake_at(at("2026-07-06T05:30:00Z")).unwrap());
    }

    #[test]
    fn across_the_spring_gap_no_hour_is_misread() {
        // Berlin, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let s = Schedule::new(
            "s",
            "Europe/Berlin",
            Week::from_periods("Sun 1-2; Sun 3-4").unwrap(),
        )
        .unwrap();
        assert!(s.awake_at(at("2026-03-29T00:30:00Z")).unwrap(), "01:30 CET");
        assert!(
            s.awake_at(at("2026-03-29T01:00:00Z")).unwrap(),
            "03:00 CEST"
        );
        assert!(
            s.awake_at(at("2026-03-29T01:59:00Z")).unwrap(),
            "03:59 CEST"
        );
        assert!(
            !s.awake_at(at("2026-03-29T02:00:00Z")).unwrap(),
            "04:00 CEST"
        );
        // A period of only the skipped hour never reads awake that day.
        let gap =
            Schedule::new("g", "Europe/Berlin", Week::from_periods("Sun 2-3").unwrap()).unwrap();
        let day = (0..24 * 60).map(|m| at("2026-03-28T23:00:00Z") + TimeDelta::minutes(m));
        assert!(!day.clone().any(|t| gap.awake_at(t).unwrap()));
        // The week after, it is an ordinary hour again.
        assert!(gap.awake_at(at("2026-04-05T00:30:00Z")).unwrap());
    }

    #[test]
    fn both_occurrences_of_the_repeated_autumn_hour_read_the_same_cell() {
        // New York, Sunday 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:xx happens twice
        // (05:xx and 06:xx UTC).
        let one = Schedule::new(
            "n",
            "America/New_York",
            Week::from_periods("Sun 1-2").unwrap(),
        )
        .unwrap();
        assert!(
            one.awake_at(at("2026-11-01T05:30:00Z")).unwrap(),
            "01:30 EDT"
        );
        assert!(
            one.awake_at(at("2026-11-01T06:30:00Z")).unwrap(),
            "01:30 EST"
        );
        assert!(
            !one.awake_at(at("2026-11-01T07:00:00Z")).unwrap(),
            "02:00 EST"
        );
        assert!(
            !one.awake_at(at("2026-11-01T04:59:00Z")).unwrap(),
            "00:59 EDT"
        );
    }

    #[test]
    fn the_wake_lead_starts_early_and_never_sleeps_late() {
        let s = working_hours("Europe/Berlin");
        // 06:50 local on a Monday in winter: 05:50 UTC.
        assert_eq!(
            s.desired_at(at("2026-01-05T05:50:00Z")).unwrap(),
            Power::Awake
        );
        assert_eq!(
            s.desired_at(at("2026-01-05T05:49:00Z")).unwrap(),
            Power::Asleep
        );
        // 19:00 local: asleep at once.
        assert_eq!(
            s.desired_at(at("2026-01-05T18:00:00Z")).unwrap(),
            Power::Asleep
        );
        assert!(
            s.awake_at(at("2026-01-05T05:50:00Z")).is_ok_and(|a| !a),
            "the matrix alone"
        );
    }

    #[test]
    fn a_manual_start_at_night_is_kept_unless_the_schedule_is_enforced() {
        let mut s = working_hours("UTC");
        let night = at("2026-01-05T23:00:00Z");
        let seen = Seen {
            desired: Power::Asleep,
            at: night - TimeDelta::minutes(5),
        };
        let kept = decide(&s, night, None, Some(&seen), Power::Awake).unwrap();
        assert_eq!((kept.desired, kept.act), (Power::Asleep, None));
        assert!(kept.why.contains("by hand"), "{}", kept.why);
        // The evening transition (awake → asleep) stops it.
        let evening = Seen {
            desired: Power::Awake,
            at: at("2026-01-05T18:55:00Z"),
        };
        let stop = decide(
            &s,
            at("2026-01-05T19:00:00Z"),
            None,
            Some(&evening),
            Power::Awake,
        )
        .unwrap();
        assert_eq!(stop.act, Some(Power::Asleep));
        // Enforced: undone at once.
        s.enforced = true;
        let undone = decide(&s, night, None, Some(&seen), Power::Awake).unwrap();
        assert_eq!(undone.act, Some(Power::Asleep));
        // First sight of a target: the schedule applies.
        s.enforced = false;
        assert_eq!(
            decide(&s, night, None, None, Power::Awake).unwrap().act,
            Some(Power::Asleep)
        );
        // Nothing to do when it already is what is wanted.
        assert_eq!(
            decide(&s, night, None, None, Power::Asleep).unwrap().act,
            None
        );
    }

    #[test]
    fn an_override_wins_while_it_lasts() {
        let s = working_hours("UTC");
        let night = at("2026-01-05T23:00:00Z");
        let o = Override {
            power: Power::Awake,
            until: at("2026-01-06T02:00:00Z"),
            by: "alice".into(),
            why: "release".into(),
        };
        let d = decide(&s, night, Some(&o), None, Power::Asleep).unwrap();
        assert_eq!(d.act, Some(Power::Awake));
        assert!(d.why.contains("alice") && d.why.contains("release"));
        let after = decide(&s, at("2026-01-06T02:00:00Z"), Some(&o), None, Power::Awake).unwrap();
        assert_eq!(after.act, Some(Power::Asleep), "over: the schedule again");
    }

    #[test]
    fn bad_schedules_are_refused_with_why() {
        let week = Week::from_periods("daily 8-9").unwrap();
        assert!(matches!(
            Schedule::new("x", "Mars/Olympus", week),
            Err(ScheduleError::Zone(_))
        ));
        assert!(matches!(
            Schedule::new("a b", "UTC", week),
            Err(ScheduleError::Name(_))
        ));
        let mut s = Schedule::new("x", "UTC", week).unwrap();
        s.wake_lead_minutes = 600;
        assert!(matches!(s.check(), Err(ScheduleError::WakeLead(600))));
        let json = serde_json::json!({"name": "x", "awake": "1".repeat(168), "extra": 1});
        assert!(
            serde_json::from_value::<Schedule>(json).is_err(),
            "unknown fields"
        );
        let json = serde_json::json!({"name": "x", "awake": "1".repeat(168)});
        let read: Schedule = serde_json::from_value(json).unwrap();
        assert_eq!(
            (read.timezone.as_str(), read.wake_lead_minutes),
            ("UTC", 10)
        );
    }

    /// Zones with DST in either hemisphere, a half-hour offset and a 45-minute one, and none.
    const ZONES: [&str; 6] = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ];

    /// The instants of 2026 around which each zone's offset changes, and a day either side.
    fn around_changes() -> impl Strategy<Value = (usize, DateTime<Utc>)> {
        (0..ZONES.len(), 0i64..366 * 24 * 4).prop_map(|(z, quarter)| {
            (
                z,
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                    + TimeDelta::minutes(quarter * 15),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The cell read is the local wall clock's, as an independent formatter prints it.
        #[test]
        fn every_instant_reads_the_cell_of_its_local_wall_clock((z, t) in around_changes(), cells in proptest::collection::vec(any::<bool>(), 168)) {
            let mut matrix = String::new();
            for c in &cells { matrix.push(if *c { '1' } else { '0' }); }
            let week = Week::from_matrix(&matrix).unwrap();
            let tz: Tz = ZONES[z].parse().unwrap();
            let printed = t.with_timezone(&tz).format("%u %H").to_string();
            let (day, hour) = printed.split_once(' ').unwrap();
            let cell = (day.parse::<usize>().unwrap() - 1) * 24 + hour.parse::<usize>().unwrap();
            prop_assert_eq!(awake_in(&week, tz, t), cells[cell], "{} at {} ({})", ZONES[z], t, printed);
        }

        /// An hour later in real time reads the same cell or the next existing one: never a cell
        /// two or more hours away, except across a spring gap (one hour skipped), and never
        /// backwards except in the repeated autumn hour.
        #[test]
        fn an_hour_later_reads_the_next_cell_or_the_repeated_one((z, t) in around_changes()) {
            let tz: Tz = ZONES[z].parse().unwrap();
            let cell = |t: DateTime<Utc>| {
                let l = t.with_timezone(&tz);
                i64::from(l.weekday().num_days_from_monday()) * 24 + i64::from(l.hour())
            };
            let step = (cell(t + TimeDelta::hours(1)) - cell(t)).rem_euclid(168);
            prop_assert!((0..=2).contains(&step), "{} at {}: {} cells", ZONES[z], t, step);
        }
    }

    #[test]
    fn a_whole_awake_local_day_is_awake_at_every_instant_of_it_even_on_a_dst_day() {
        for (tz, day) in [
            (
                "Europe/Berlin",
                NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(),
            ),
            (
                "Europe/Berlin",
                NaiveDate::from_ymd_opt(2026, 10, 25).unwrap(),
            ),
            (
                "America/New_York",
                NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(),
            ),
            (
                "America/New_York",
                NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            ),
        ] {
            let s = Schedule::new("sun", tz, Week::from_periods("Sun 0-24").unwrap()).unwrap();
            let zone: Tz = tz.parse().unwrap();
            let start = zone
                .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let end = zone
                .from_local_datetime(&day.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap())
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let hours = (end - start).num_hours();
            assert!(
                [23, 25].contains(&hours),
                "{tz} {day}: a DST day ({hours} h)"
            );
            let mut t = start;
            while t < end {
                assert!(s.awake_at(t).unwrap(), "{tz} {t}");
                t += TimeDelta::minutes(5);
            }
            assert!(!s.awake_at(end).unwrap(), "{tz}: Monday 00:00");
            assert!(!s.awake_at(start - TimeDelta::minutes(1)).unwrap());
        }
    }
}
