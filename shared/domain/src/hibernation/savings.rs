//! What a schedule saves: the real hours it keeps a target asleep (what the reconciler does: the
//! wake lead included), times the target's on-demand price. A DST week counts the hours it really
//! has (167 or 169), not 168.

use chrono::{DateTime, TimeDelta, Utc};

use super::schedule::{Power, Schedule, ScheduleError};

/// Every real offset and every wake lead is a whole number of minutes, so the desired state can
/// change only on a minute: counting minutes is exact (a week is 10,080 readings).
const SLOT: TimeDelta = TimeDelta::minutes(1);

/// Hours `schedule` keeps a target asleep in `[from, to)` (wake lead included).
pub fn asleep_hours(
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<f64, ScheduleError> {
    let mut asleep = 0u32;
    let mut t = from;
    while t < to {
        if schedule.desired_at(t)? == Power::Asleep {
            asleep += 1;
        }
        t += SLOT;
    }
    Ok(f64::from(asleep) / 60.0)
}

/// The local week (Monday 00:00 to the next Monday 00:00, on the schedule's calendar) holding
/// `at`, as instants. A midnight a DST change skips starts at the first local time after it.
pub fn week_of(
    schedule: &Schedule,
    at: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ScheduleError> {
    use chrono::{Datelike, Days, TimeZone};
    let tz = super::schedule::zone(&schedule.timezone)?;
    let today = at.with_timezone(&tz).date_naive();
    let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
    let start = |day: chrono::NaiveDate| {
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        (0..=2)
            .find_map(|h| {
                tz.from_local_datetime(&(midnight + TimeDelta::hours(h)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(at)
    };
    Ok((start(monday), start(monday + Days::new(7))))
}

/// A saving: hours asleep at an on-demand price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saving {
    pub asleep_hours: f64,
    pub usd_per_hour: f64,
    pub usd: f64,
}

impl Saving {
    pub fn new(asleep_hours: f64, usd_per_hour: f64) -> Self {
        Self {
            asleep_hours,
            usd_per_hour,
            usd: asleep_hours * usd_per_hour,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hibernation::Week;
    use chrono::TimeZone;

    fn office(tz: &str, lead: u32) -> Schedule {
        let mut s =
            Schedule::new("office", tz, Week::from_periods("Mon-Fri 7-19").unwrap()).unwrap();
        s.wake_lead_minutes = lead;
        s
    }

    /// Monday 00:00 local of the week holding `day`, and the Monday after, as instants.
    fn week(tz: &str, y: i32, m: u32, d: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let zone: chrono_tz::Tz = tz.parse().unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let midnight = |d: chrono::NaiveDate| {
            zone.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                .single()
                .unwrap()
                .with_timezone(&Utc)
        };
        // The next Monday's midnight on the local calendar, not 168 real hours later.
        (midnight(day), midnight(day + chrono::Days::new(7)))
    }

    #[test]
    fn an_office_week_sleeps_108_hours_and_a_dst_week_the_hours_it_really_has() {
        let s = office("America/New_York", 0);
        let (a, b) = week("America/New_York", 2026, 2, 23);
        assert_eq!(asleep_hours(&s, a, b).unwrap(), 108.0);
        // The week of 2026-03-08: Sunday's 02:00 never happens; that night hour was asleep.
        let (a, b) = week("America/New_York", 2026, 3, 2);
        assert_eq!((b - a).num_hours(), 167, "{a} .. {b}");
        assert_eq!(asleep_hours(&s, a, b).unwrap(), 107.0);
        // The week of 2026-11-01: 01:00 happens twice, asleep both times.
        let (a, b) = week("America/New_York", 2026, 10, 26);
        assert_eq!(asleep_hours(&s, a, b).unwrap(), 109.0);
        // A 10-minute wake lead on five mornings: 50 minutes less asleep.
        let led = office("America/New_York", 10);
        let (a, b) = week("America/New_York", 2026, 2, 23);
        let hours = asleep_hours(&led, a, b).unwrap();
        assert!((hours - (108.0 - 50.0 / 60.0)).abs() < 1e-9, "{hours}");
        // Half-hour zones count exactly too.
        let kolkata = office("Asia/Kolkata", 0);
        let (a, b) = week("Asia/Kolkata", 2026, 2, 23);
        assert_eq!(asleep_hours(&kolkata, a, b).unwrap(), 108.0);
    }

    #[test]
    fn the_week_of_an_instant_is_its_local_calendar_week() {
        let s = office("America/New_York", 0);
        // Sunday 2026-03-08 12:00 UTC is Sunday morning in New York: the week from Monday 2 March.
        let (a, b) = week_of(&s, "2026-03-08T12:00:00Z".parse().unwrap()).unwrap();
        assert_eq!((a, b), week("America/New_York", 2026, 3, 2));
        // Monday 03:00 UTC is still Sunday evening there.
        let (a, _) = week_of(&s, "2026-03-09T03:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(a, week("America/New_York", 2026, 3, 2).0);
    }

    #[test]
    fn a_saving_is_hours_asleep_at_the_on_demand_price() {
        let s = Saving::new(108.0, 0.096);
        assert!((s.usd - 10.368).abs() < 1e-9);
    }
}
