//! The awake hours of a week: 168 cells, Monday 00:00 local first, written either as the matrix
//! itself (168 characters of `0` and `1`) or as periods that compile to it
//! (`Mon-Fri 7-19; Sat 9-13`).
//!
//! A period is `DAYS HH-HH`: DAYS is a day (`Mon` … `Sun`), a range (`Mon-Fri`, which may wrap:
//! `Fri-Mon`), a list of either (`Sat,Sun`, `Mon-Wed,Fri`) or `daily`; the hours are whole hours
//! from 0 to 24, the end excluded. A period whose end is not after its start crosses midnight into
//! the next day: `Fri 22-02` is Friday 22:00 to Saturday 02:00, `Sun 22-02` wraps to Monday, and
//! `Mon 8-8` is 24 hours from Monday 08:00.

use std::fmt;

use chrono::Weekday;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const HOURS: usize = 168;

const DAYS: [(&str, Weekday); 7] = [
    ("Mon", Weekday::Mon),
    ("Tue", Weekday::Tue),
    ("Wed", Weekday::Wed),
    ("Thu", Weekday::Thu),
    ("Fri", Weekday::Fri),
    ("Sat", Weekday::Sat),
    ("Sun", Weekday::Sun),
];

/// Why a schedule's hours could not be read. Nothing is stored or changed with such a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeekError {
    #[error("no period: write at least one, e.g. `Mon-Fri 7-19` (or a matrix of 168 zeros)")]
    Empty,
    #[error("period `{0}`: expected `DAYS HH-HH`, e.g. `Mon-Fri 7-19`")]
    Shape(String),
    #[error("period `{period}`: `{day}` is no day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, or daily)")]
    Day { period: String, day: String },
    #[error("period `{period}`: `{hours}` is no hour range (whole hours 0-24, e.g. 7-19 or 22-02)")]
    Hours { period: String, hours: String },
    #[error("a matrix is 168 characters of 0 and 1 (Monday 00:00 first); got {0}")]
    Matrix(String),
}

/// Which hours of the week are awake: cell `day * 24 + hour`, Monday 00:00 local first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Week([bool; HOURS]);

impl Week {
    /// Never awake.
    pub const ASLEEP: Week = Week([false; HOURS]);

    /// Whether local `day` at `hour` (0-23) is awake.
    pub fn awake(&self, day: Weekday, hour: u32) -> bool {
        self.0[index(day, hour)]
    }

    /// Awake hours in the week.
    pub fn awake_hours(&self) -> usize {
        self.0.iter().filter(|a| **a).count()
    }

    /// Reads a matrix: 168 characters of `0` (asleep) and `1` (awake); spaces, `_` and line
    /// breaks between them are ignored, so a week may be written a day per line.
    pub fn from_matrix(text: &str) -> Result<Self, WeekError> {
        let cells: Vec<char> = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect();
        if cells.len() != HOURS {
            return Err(WeekError::Matrix(format!("{} cells", cells.len())));
        }
        let mut week = Self::ASLEEP;
        for (i, c) in cells.into_iter().enumerate() {
            week.0[i] = match c {
                '1' => true,
                '0' => false,
                other => return Err(WeekError::Matrix(format!("`{other}` at cell {i}"))),
            };
        }
        Ok(week)
    }

    /// The matrix as 168 characters of `0` and `1`.
    pub fn to_matrix(&self) -> String {
        self.0.iter().map(|a| if *a { '1' } else { '0' }).collect()
    }

    /// Compiles periods separated by `;` (see the module's documentation).
    pub fn from_periods(text: &str) -> Result<Self, WeekError> {
        let periods: Vec<&str> = text.split(';').map(str::trim).collect();
        if periods.iter().all(|p| p.is_empty()) {
            return Err(WeekError::Empty);
        }
        let mut week = Self::ASLEEP;
        for period in periods {
            // A stray `;` adds nothing; only a text without any period is refused.
            if period.is_empty() {
                continue;
            }
            let (days, hours) = period
                .split_once(char::is_whitespace)
                .map(|(d, h)| (d.trim(), h.trim()))
                .ok_or_else(|| WeekError::Shape(period.to_owned()))?;
            let (start, end) = hour_range(hours).ok_or_else(|| WeekError::Hours {
                period: period.to_owned(),
                hours: hours.to_owned(),
            })?;
            // Crossing midnight: the hours run on into the next day.
            let length = if end > start {
                end - start
            } else {
                end + 24 - start
            };
            for day in day_set(period, days)? {
                let first = index(day, start);
                for h in 0..length {
                    week.0[(first + h as usize) % HOURS] = true;
                }
            }
        }
        Ok(week)
    }

    /// The week as a 7 × 24 grid, a day per line: `#` awake, `.` asleep.
    pub fn grid(&self) -> String {
        let mut out =
            String::from("     0         1         2   \n     012345678901234567890123\n");
        for (d, (name, day)) in DAYS.iter().enumerate() {
            let row: String = (0..24)
                .map(|h| if self.awake(*day, h) { '#' } else { '.' })
                .collect();
            out.push_str(&format!("{name}  {row}"));
            if d < 6 {
                out.push('\n');
            }
        }
        out
    }
}

impl fmt::Debug for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Week({})", self.to_matrix())
    }
}

/// Stored and sent as its 168-character matrix.
impl Serialize for Week {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_matrix())
    }
}

impl<'de> Deserialize<'de> for Week {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Week::from_matrix(&text).map_err(serde::de::Error::custom)
    }
}

fn index(day: Weekday, hour: u32) -> usize {
    day.num_days_from_monday() as usize * 24 + hour as usize
}

/// `HH-HH`: a start 0-23 and an end 0-24 (`0-0` and `8-8` are whole days from their start).
fn hour_range(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.split_once('-')?;
    let hour = |t: &str| -> Option<u32> {
        (!t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (start, end) = (hour(a.trim())?, hour(b.trim())?);
    (start < 24 && end <= 24).then_some((start, end))
}

/// The days `text` names: `daily`, or a `,` list of days and ranges (a range may wrap).
fn day_set(period: &str, text: &str) -> Result<Vec<Weekday>, WeekError> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(DAYS.iter().map(|(_, d)| *d).collect());
    }
    let day = |t: &str| {
        DAYS.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(t.trim()))
            .map(|(_, d)| *d)
            .ok_or_else(|| WeekError::Day {
                period: period.to_owned(),
                day: t.trim().to_owned(),
            })
    };
    let mut days = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (mut d, last) = (day(from)?, day(to)?);
                days.push(d);
                while d != last {
                    d = d.succ();
                    days.push(d);
                }
            }
            None => days.push(day(item)?),
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn periods_compile_to_the_hours_they_name() {
        let week = Week::from_periods("Mon-Fri 7-19; Sat 9-13").unwrap();
        assert_eq!(week.awake_hours(), 5 * 12 + 4);
        assert!(week.awake(Weekday::Mon, 7));
        assert!(!week.awake(Weekday::Mon, 19), "the end is excluded");
        assert!(week.awake(Weekday::Sat, 12));
        assert!(!week.awake(Weekday::Sun, 10));
        // Lists, wrapping ranges, case, a trailing separator.
        let weekend = Week::from_periods("sat,SUN 0-24;").unwrap();
        assert_eq!(weekend, Week::from_periods("Sat-Sun 0-24").unwrap());
        assert_eq!(
            Week::from_periods("Fri-Mon 10-11").unwrap().awake_hours(),
            4
        );
        assert_eq!(Week::from_periods("daily 0-24").unwrap().awake_hours(), 168);
        assert_eq!(Week::from_periods("daily 0-0").unwrap().awake_hours(), 168);
    }

    #[test]
    fn a_period_that_ends_before_it_starts_crosses_midnight() {
        let friday = Week::from_periods("Fri 22-02").unwrap();
        assert!(friday.awake(Weekday::Fri, 22) && friday.awake(Weekday::Fri, 23));
        assert!(friday.awake(Weekday::Sat, 0) && friday.awake(Weekday::Sat, 1));
        assert!(!friday.awake(Weekday::Sat, 2));
        assert_eq!(friday.awake_hours(), 4);
        let sunday = Week::from_periods("Sun 22-02").unwrap();
        assert!(
            sunday.awake(Weekday::Mon, 0) && sunday.awake(Weekday::Mon, 1),
            "wraps to Monday"
        );
        let day = Week::from_periods("Mon 8-8").unwrap();
        assert_eq!(day.awake_hours(), 24);
        assert!(day.awake(Weekday::Tue, 7) && !day.awake(Weekday::Tue, 8));
    }

    #[test]
    fn bad_periods_and_matrices_are_refused_with_what_is_wrong() {
        let err = |t: &str| Week::from_periods(t).unwrap_err().to_string();
        assert!(err("").contains("no period"));
        assert!(err(" ; ").contains("no period"));
        assert!(err("Mon-Fri").contains("expected `DAYS HH-HH`"));
        assert!(err("Mon-Fry 7-19").contains("`Fry` is no day"));
        assert!(err("Mon 7-25").contains("`7-25` is no hour range"));
        assert!(err("Mon 24-2").contains("no hour range"));
        assert!(err("Mon 7:30-19").contains("no hour range"));
        assert!(err("Mon -1-5").contains("no hour range"));
        assert_eq!(
            Week::from_periods("Mon 7-19;; Tue 1-2;")
                .unwrap()
                .awake_hours(),
            13,
            "empty periods are nothing"
        );
        assert!(
            Week::from_matrix(&"1".repeat(167))
                .unwrap_err()
                .to_string()
                .contains("167 cells")
        );
        assert!(
            Week::from_matrix(&format!("{}x", "0".repeat(167)))
                .unwrap_err()
                .to_string()
                .contains("`x` at cell 167")
        );
    }

    #[test]
    fn a_matrix_may_be_written_a_day_per_line_and_reads_back() {
        let week = Week::from_periods("Mon-Fri 7-19").unwrap();
        let lines: Vec<String> = week
            .to_matrix()
            .as_bytes()
            .chunks(24)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert_eq!(Week::from_matrix(&lines.join("\n")).unwrap(), week);
        let json = serde_json::to_value(week).unwrap();
        assert_eq!(serde_json::from_value::<Week>(json).unwrap(), week);
        assert!(serde_json::from_value::<Week>(serde_json::json!("01")).is_err());
        let grid = week.grid();
        assert_eq!(grid.lines().count(), 9);
        assert!(grid.contains("Mon  .......############....."));
        assert!(grid.contains("Sun  ........................"));
    }

    /// The hours a period covers, counted independently: minute by minute from its start.
    fn covered(day: usize, start: u32, end: u32) -> Vec<usize> {
        let minutes = if end > start {
            (end - start) * 60
        } else {
            (end + 24 - start) * 60
        };
        (0..minutes)
            .step_by(60)
            .map(|m| (day * 24 + start as usize + (m / 60) as usize) % HOURS)
            .collect()
    }

    proptest! {
        #[test]
        fn any_period_covers_exactly_its_hours(day in 0usize..7, start in 0u32..24, end in 0u32..=24) {
            let text = format!("{} {start}-{end}", DAYS[day].0);
            let week = Week::from_periods(&text).unwrap();
            let expected = covered(day, start, end);
            for cell in 0..HOURS {
                prop_assert_eq!(week.0[cell], expected.contains(&cell), "{} cell {}", text, cell);
            }
        }

        #[test]
        fn periods_are_a_union_and_matrices_round_trip(
            a in (0usize..7, 0u32..24, 0u32..=24),
            b in (0usize..7, 0u32..24, 0u32..=24),
        ) {
            let text = |(d, s, e): (usize, u32, u32)| format!("{} {s}-{e}", DAYS[d].0);
            let both = Week::from_periods(&format!("{}; {}", text(a), text(b))).unwrap();
            let (wa, wb) = (Week::from_periods(&text(a)).unwrap(), Week::from_periods(&text(b)).unwrap());
            for cell in 0..HOURS {
                prop_assert_eq!(both.0[cell], wa.0[cell] || wb.0[cell]);
            }
            prop_assert_eq!(Week::from_matrix(&both.to_matrix()).unwrap(), both);
        }
    }
}
