//! Net savings: what each instance the optimizer put on Spot saved, month by month, net of what
//! its move keeps (the stopped source's volumes, the switch image's snapshots).
//!
//! One [`Accrual`] per workload the sagas moved (a switched instance, a swapped group member, a
//! failover's replacement) or would have moved (a shadow decision, one per source instance: the
//! counterfactual). The scheduled refresh observes each one's instance, its pool's Spot price
//! history and what it keeps, and [`Accrual::refresh`] adds the interval since the last refresh:
//! on-demand baseline minus the Spot price *in force* at each instant of the interval (every
//! change the history shows, not the price frozen at the switch), minus the kept resources' cost,
//! split at month boundaries (UTC). A refresh delivered twice adds nothing the second time: the
//! interval is measured from `accrued_until`, and the write is conditional on `revision`.
//!
//! Hibernation and waste removed add their own lines ([`Totals`]): what the sleeps saved (the
//! reconciler's books) and the monthly cost of what was deleted, from the deletion on, less the
//! backup snapshot kept of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::governance::pricing::{HOURS_PER_MONTH, PriceTable};
use crate::governance::waste::{WasteRecord, WasteStatus};
use crate::hibernation::state::TargetState;
use crate::saga::failover::{FailoverRecord, FailoverStatus, Market};
use crate::saga::ledger::{LedgerRecord, LedgerStatus};
use crate::saga::step::SagaMode;

/// The prefix of accrual items in the ledger table (its key attribute is `switch_id`).
pub const KEY_PREFIX: &str = "savings#";

/// What a line of the savings report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// An on-demand instance the atomic switch moved to Spot.
    Switch,
    /// An Auto Scaling group member the swap replaced with Spot.
    Swap,
    /// A failover's replacement (Spot in another pool, or on-demand: no saving).
    Failover,
    /// A shadow decision: what a switch would have saved (counterfactual, not realised).
    Shadow,
    /// Instances and groups asleep outside their schedule.
    Hibernation,
    /// Waste deleted: its monthly cost from the deletion on, less the backup kept of it.
    Waste,
}

impl Line {
    pub const ALL: [Self; 6] = [
        Self::Switch,
        Self::Swap,
        Self::Failover,
        Self::Hibernation,
        Self::Waste,
        Self::Shadow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Switch => "switch",
            Self::Swap => "swap",
            Self::Failover => "failover",
            Self::Shadow => "shadow",
            Self::Hibernation => "hibernation",
            Self::Waste => "waste",
        }
    }

    /// Counted in the realised total (shadow is what would have been).
    pub fn realised(self) -> bool {
        self != Self::Shadow
    }
}

/// One month of one accrual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Month {
    /// Hours the instance ran.
    pub hours: f64,
    /// On-demand baseline minus the Spot price in force, over those hours.
    pub gross_usd: f64,
    /// What the move kept (volumes, snapshots) cost over the month's accrued hours.
    pub kept_usd: f64,
}

impl Month {
    pub fn net_usd(&self) -> f64 {
        self.gross_usd - self.kept_usd
    }

    fn add(&mut self, other: Month) {
        self.hours += other.hours;
        self.gross_usd += other.gross_usd;
        self.kept_usd += other.kept_usd;
    }
}

/// What the refresh saw of an accrual's instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Running,
    /// Stopped, stopping or pending: costs no compute, saves nothing, keeps its line open.
    Idle,
    /// Terminated or no longer known to EC2: the line ends.
    Gone,
}

/// One refresh's observation of an accrual.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub seen: Seen,
    /// The instance's type and AZ name now (the pool whose price applies).
    pub pool: Option<(String, String)>,
    /// The Spot price history of that pool since the last refresh (ascending; the first entry may
    /// predate the interval: the price in force at its start), USD per hour.
    pub prices: Vec<(DateTime<Utc>, f64)>,
    /// What the move keeps now, USD per hour, and the resources (for `--detail`).
    pub kept_per_hour: f64,
    pub kept: Vec<String>,
}

/// One workload's running account of what it saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accrual {
    /// The ledger table's key: `savings#<record>` (`savings#shadow#<account>#<region>#<source>`
    /// for the shadow line of a source, whichever shadow decision came first).
    pub switch_id: String,
    pub line: Line,
    /// The ledger record it accrues for (the latest one, for a shadow line).
    pub record: String,
    pub account_id: String,
    pub region: String,
    /// What was moved: the source instance, `<group>/<member>`, or the failover's workload.
    pub workload: String,
    /// The instance whose running saves (the clone, the Spot member, the replacement; the source
    /// for a shadow line).
    pub instance_id: String,
    pub instance_type: Option<String>,
    pub az_name: Option<String>,
    /// The baseline: what the same capacity costs on demand, USD per hour.
    pub on_demand_per_hour: f64,
    /// The Spot price in force at `accrued_until` (None: on-demand, no saving).
    pub spot_per_hour: Option<f64>,
    /// What the move keeps, USD per hour, as last observed (None until the first refresh).
    pub kept_per_hour: Option<f64>,
    #[serde(default)]
    pub kept: Vec<String>,
    /// A shadow line counts kept cost only for the retention a real switch would keep it.
    #[serde(default)]
    pub kept_until: Option<DateTime<Utc>>,
    /// Whether the instance ran at the last refresh (None until the first one).
    pub running: Option<bool>,
    pub since: DateTime<Utc>,
    pub accrued_until: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    /// A shadow line whose source a live switch moved since: the counterfactual ends there (the
    /// switch's own line takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_at: Option<DateTime<Utc>>,
    /// Month (`YYYY-MM`, UTC) → what it saved in it.
    #[serde(default)]
    pub months: BTreeMap<String, Month>,
    /// Incremented by every write; a write is conditional on the revision it read.
    #[serde(default)]
    pub revision: u64,
}

impl Accrual {
    /// The line of a live switch or swapped member that completed; None for any other record.
    pub fn of_switch(record: &LedgerRecord) -> Option<Self> {
        if record.mode != SagaMode::Live || record.status != LedgerStatus::Switched {
            return None;
        }
        let (line, workload) = match &record.group {
            Some(group) => (Line::Swap, format!("{group}/{}", record.source_instance_id)),
            None => (Line::Switch, record.source_instance_id.clone()),
        };
        Some(Self::new(
            format!("{KEY_PREFIX}{}", record.switch_id),
            line,
            record,
            workload,
            record.new_instance_id.clone()?,
        ))
    }

    /// The counterfactual line of a shadow decision's source; `retention`: how long a real switch
    /// would keep what it leaves.
    pub fn of_shadow(record: &LedgerRecord, retention: Duration) -> Option<Self> {
        if record.status != LedgerStatus::Shadow {
            return None;
        }
        let mut accrual = Self::new(
            shadow_key(
                &record.account_id,
                &record.region,
                &record.source_instance_id,
            ),
            Line::Shadow,
            record,
            record.source_instance_id.clone(),
            record.source_instance_id.clone(),
        );
        accrual.kept_until = Some(record.at + retention);
        Some(accrual)
    }

    fn new(
        key: String,
        line: Line,
        record: &LedgerRecord,
        workload: String,
        instance_id: String,
    ) -> Self {
        let on_demand = record.on_demand_price.unwrap_or_default();
        Self {
            switch_id: key,
            line,
            record: record.switch_id.clone(),
            account_id: record.account_id.clone(),
            region: record.region.clone(),
            workload,
            instance_id,
            instance_type: record.instance_type.clone(),
            az_name: None,
            on_demand_per_hour: on_demand,
            spot_per_hour: record
                .spot_price
                .or_else(|| Some(on_demand - record.saving_per_hour?)),
            kept_per_hour: None,
            kept: Vec::new(),
            kept_until: None,
            running: None,
            since: record.at,
            accrued_until: record.at,
            ended: None,
            stop_at: None,
            months: BTreeMap::new(),
            revision: 0,
        }
    }

    /// The line of a live failover's replacement, priced at `on_demand_per_hour` for its type.
    pub fn of_failover(record: &FailoverRecord, on_demand_per_hour: f64) -> Option<Self> {
        if record.mode != SagaMode::Live || record.status != FailoverStatus::Promoted {
            return None;
        }
        let spot = matches!(record.market?, Market::Spot | Market::Standby);
        Some(Self {
            switch_id: format!("{KEY_PREFIX}{}", record.switch_id),
            line: Line::Failover,
            record: record.switch_id.clone(),
            account_id: record.account_id.clone(),
            region: record.region.clone(),
            workload: record
                .workload
                .clone()
                .unwrap_or_else(|| record.old_instance_id.clone()),
            instance_id: record.new_instance_id.clone()?,
            instance_type: record.instance_type.clone(),
            az_name: None,
            on_demand_per_hour,
            // Until the first refresh reads the history: no saving assumed.
            spot_per_hour: if spot { Some(on_demand_per_hour) } else { None },
            kept_per_hour: None,
            kept: Vec::new(),
            kept_until: None,
            running: None,
            since: record.at,
            accrued_until: record.at,
            ended: None,
            stop_at: None,
            months: BTreeMap::new(),
            revision: 0,
        })
    }

    /// On Spot (a price applies) rather than on demand.
    pub fn on_spot(&self) -> bool {
        self.spot_per_hour.is_some()
    }

    /// Adds the interval from `accrued_until` to `now` as observed, then takes the observation's
    /// rates for the next one. Nothing for an ended line or a `now` not after `accrued_until`.
    pub fn refresh(&mut self, now: DateTime<Utc>, seen: &Observation) {
        let now = self.stop_at.map_or(now, |stop| now.min(stop));
        if self.ended.is_some() || now <= self.accrued_until {
            if self.ended.is_none() && self.stop_at.is_some_and(|stop| stop <= self.accrued_until) {
                self.ended = self.stop_at;
            }
            return;
        }
        // The first interval is judged by the first observation; later ones by the state and
        // kept cost seen at their start (the refresh's period is the granularity).
        let running = self.running.unwrap_or(seen.seen == Seen::Running);
        let kept = self.kept_per_hour.unwrap_or(seen.kept_per_hour);
        let from = self.accrued_until;
        for (start, end, price) in segments(from, now, self.spot_per_hour, &seen.prices) {
            let hours = hours(start, end);
            let month = self.months.entry(month_of(start)).or_default();
            let kept_hours = match self.kept_until {
                Some(until) => hours.min(self::hours(start, until.clamp(start, end))),
                None => hours,
            };
            month.add(Month {
                hours: if running { hours } else { 0.0 },
                gross_usd: match (running, price) {
                    (true, Some(spot)) => hours * (self.on_demand_per_hour - spot),
                    _ => 0.0,
                },
                kept_usd: kept_hours * kept,
            });
        }
        self.accrued_until = now;
        if let Some(last) = seen.prices.iter().rev().find(|(at, _)| *at <= now)
            && self.on_spot()
        {
            self.spot_per_hour = Some(last.1);
        }
        if let Some((instance_type, az)) = &seen.pool {
            self.instance_type = Some(instance_type.clone());
            self.az_name = Some(az.clone());
        }
        self.running = Some(seen.seen == Seen::Running);
        self.kept_per_hour = Some(seen.kept_per_hour);
        self.kept = seen.kept.clone();
        if seen.seen == Seen::Gone || self.stop_at == Some(now) {
            self.ended = Some(now);
        }
    }

    /// What it saves per hour now, net (0 unless running).
    pub fn net_per_hour(&self) -> f64 {
        if self.ended.is_some() {
            return 0.0;
        }
        let gross = match (self.running, self.spot_per_hour) {
            (Some(true), Some(spot)) => self.on_demand_per_hour - spot,
            _ => 0.0,
        };
        let kept = match self.kept_until {
            Some(until) if until <= self.accrued_until => 0.0,
            _ => self.kept_per_hour.unwrap_or_default(),
        };
        gross - kept
    }

    pub fn total(&self) -> Month {
        let mut total = Month::default();
        for month in self.months.values() {
            total.add(*month);
        }
        total
    }
}

/// The shadow line's key: one per source instance, whatever number of shadow decisions named it.
pub fn shadow_key(account: &str, region: &str, source: &str) -> String {
    format!("{KEY_PREFIX}shadow#{account}#{region}#{source}")
}

/// The accruals to refresh for one account and region: those already open, and one for every
/// record that has none yet (a shadow source that a live switch moved since gets no new one and
/// its open line ends when the source stops). Ended lines are left out: they never change.
pub fn open_lines(
    existing: &[Accrual],
    records: &[LedgerRecord],
    failovers: &[(FailoverRecord, f64)],
    retention: Duration,
) -> Vec<Accrual> {
    let mut lines: BTreeMap<String, Accrual> = existing
        .iter()
        .map(|a| (a.switch_id.clone(), a.clone()))
        .collect();
    let mut fresh = |accrual: Option<Accrual>| {
        if let Some(a) = accrual {
            lines.entry(a.switch_id.clone()).or_insert(a);
        }
    };
    // Oldest first, so a source's shadow line starts at its first shadow decision.
    let mut ordered: Vec<&LedgerRecord> = records.iter().collect();
    ordered.sort_by_key(|r| r.at);
    for record in ordered {
        fresh(Accrual::of_switch(record));
        fresh(Accrual::of_shadow(record, retention));
    }
    for (record, on_demand) in failovers {
        fresh(Accrual::of_failover(record, *on_demand));
    }
    // A source switched live after its shadow decision: its counterfactual stops at the switch.
    for line in lines.values_mut().filter(|l| l.line == Line::Shadow) {
        line.stop_at = records
            .iter()
            .filter(|r| {
                r.mode == SagaMode::Live
                    && r.group.is_none()
                    && r.status == LedgerStatus::Switched
                    && r.source_instance_id == line.workload
                    && r.account_id == line.account_id
                    && r.region == line.region
                    && r.at >= line.since
            })
            .map(|r| r.at)
            .min();
    }
    lines.into_values().filter(|a| a.ended.is_none()).collect()
}

/// `[from, to)` cut at month boundaries and at every price change of `prices`, with the price in
/// force over each piece (`initial` until the history says otherwise).
fn segments(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    initial: Option<f64>,
    prices: &[(DateTime<Utc>, f64)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>, Option<f64>)> {
    let on_spot = initial.is_some();
    let price_at = |t: DateTime<Utc>| -> Option<f64> {
        if !on_spot {
            return None;
        }
        prices
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map(|(_, p)| *p)
            .or(initial)
    };
    let mut cuts: Vec<DateTime<Utc>> = prices
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at > from && *at < to)
        .collect();
    let mut boundary = next_month(from);
    while boundary < to {
        cuts.push(boundary);
        boundary = next_month(boundary);
    }
    cuts.push(to);
    cuts.sort();
    cuts.dedup();
    let mut start = from;
    let mut pieces = Vec::new();
    for end in cuts {
        if end > start {
            pieces.push((start, end, price_at(start)));
            start = end;
        }
    }
    pieces
}

fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let span = to - from;
    match span.num_nanoseconds() {
        Some(nanos) => nanos.max(0) as f64 / 3.6e12,
        None => span.num_milliseconds().max(0) as f64 / 3.6e6,
    }
}

/// `YYYY-MM` of `t`, UTC.
pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The first instant of the month after `t`'s.
fn next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

/// Waste deleted at `deleted` that cost `monthly_usd`, less its backup's `backup_monthly_usd`:
/// what was avoided up to `now`, by month.
pub fn avoided(
    deleted: DateTime<Utc>,
    now: DateTime<Utc>,
    monthly_usd: f64,
    backup_monthly_usd: f64,
) -> BTreeMap<String, f64> {
    let per_hour = (monthly_usd - backup_monthly_usd) / HOURS_PER_MONTH;
    let mut by_month = BTreeMap::new();
    for (start, end, _) in segments(deleted, now, None, &[]) {
        *by_month.entry(month_of(start)).or_insert(0.0) += hours(start, end) * per_hour;
    }
    by_month
}

/// The report's key: account, region, month.
pub type Scope = (String, String, String);

/// Net USD per line for one account, region and month.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub lines: BTreeMap<Line, f64>,
}

impl Totals {
    pub fn add(&mut self, line: Line, usd: f64) {
        *self.lines.entry(line).or_insert(0.0) += usd;
    }

    pub fn get(&self, line: Line) -> f64 {
        self.lines.get(&line).copied().unwrap_or_default()
    }

    /// Every realised line (shadow left out).
    pub fn realised(&self) -> f64 {
        self.lines
            .iter()
            .filter(|(l, _)| l.realised())
            .map(|(_, usd)| usd)
            .sum()
    }
}

/// Adds every accrual's months to `totals`, net of what each keeps.
pub fn add_accruals(totals: &mut BTreeMap<Scope, Totals>, accruals: &[Accrual]) {
    for a in accruals {
        for (month, m) in &a.months {
            totals
                .entry((a.account_id.clone(), a.region.clone(), month.clone()))
                .or_default()
                .add(a.line, m.net_usd());
        }
    }
}

/// Adds what the hibernation reconciler booked (each month's ended sleeps, and the sleep in
/// progress to `now`'s month).
pub fn add_hibernation(
    totals: &mut BTreeMap<Scope, Totals>,
    targets: &[TargetState],
    now: DateTime<Utc>,
) {
    for t in targets {
        let mut add = |month: String, usd: f64| {
            totals
                .entry((t.account.clone(), t.region.clone(), month))
                .or_default()
                .add(Line::Hibernation, usd);
        };
        for (month, saved) in &t.saved {
            add(month.clone(), saved.usd);
        }
        if let Some(open) = t.sleeping(now) {
            add(month_of(now), open.usd);
        }
    }
}

/// Adds the waste deleted: each record's monthly cost from its deletion to `now`, less the backup
/// snapshot kept of it, priced by `prices`.
pub fn add_waste(
    totals: &mut BTreeMap<Scope, Totals>,
    records: &[WasteRecord],
    now: DateTime<Utc>,
    prices: &PriceTable,
) {
    for r in records {
        let (WasteStatus::Deleted, Some(deleted)) = (r.status, r.closed_at) else {
            continue;
        };
        let backup = match &r.backup_snapshot_id {
            Some(_) => prices
                .region(&r.region)
                .snapshot_month(r.size_gb.unwrap_or_default()),
            None => 0.0,
        };
        for (month, usd) in avoided(deleted, now, r.monthly_cost_usd, backup) {
            totals
                .entry((r.account.clone(), r.region.clone(), month))
                .or_default()
                .add(Line::Waste, usd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolKey;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    fn switched(at_: &str) -> LedgerRecord {
        LedgerRecord {
            switch_id: "switch-1".into(),
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            source_instance_id: "i-source".into(),
            mode: SagaMode::Live,
            status: LedgerStatus::Switched,
            new_instance_id: Some("i-clone".into()),
            pool: Some(PoolKey::new("us-east-1", "use1-az1", "m5.large").unwrap()),
            instance_type: Some("m5.large".into()),
            on_demand_price: Some(0.096),
            spot_price: Some(0.030),
            saving_per_hour: Some(0.066),
            risk: None,
            cause: None,
            at: at(at_),
            group: None,
            downtime_ms: None,
        }
    }

    fn seen(seen: Seen, prices: &[(&str, f64)], kept: f64) -> Observation {
        Observation {
            seen,
            pool: Some(("m5.large".into(), "us-east-1a".into())),
            prices: prices.iter().map(|(t, p)| (at(t), *p)).collect(),
            kept_per_hour: kept,
            kept: vec!["vol-1".into()],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_price_change_between_switch_and_refresh_is_accrued_at_each_price_in_force() {
        let mut a = Accrual::of_switch(&switched("2026-12-01T00:00:00Z")).unwrap();
        // 6 h at the switch's 0.030, then 4 h at 0.050; 0.01/h kept for all 10 h.
        a.refresh(
            at("2026-12-01T10:00:00Z"),
            &seen(
                Seen::Running,
                &[
                    ("2026-11-30T20:00:00Z", 0.030),
                    ("2026-12-01T06:00:00Z", 0.050),
                ],
                0.01,
            ),
        );
        let m = a.months["2026-12"];
        assert!(close(m.hours, 10.0));
        assert!(close(m.gross_usd, 6.0 * 0.066 + 4.0 * 0.046), "{m:?}");
        assert!(close(m.kept_usd, 0.1));
        assert_eq!(a.spot_per_hour, Some(0.050));
        assert!(close(a.net_per_hour(), 0.046 - 0.01));
    }

    #[test]
    fn a_second_refresh_at_the_same_instant_adds_nothing() {
        let mut a = Accrual::of_switch(&switched("2026-12-01T00:00:00Z")).unwrap();
        let now = at("2026-12-01T10:00:00Z");
        let obs = seen(Seen::Running, &[], 0.0);
        a.refresh(now, &obs);
        let once = a.clone();
        a.refresh(now, &obs);
        assert_eq!(a, once);
    }

    #[test]
    fn months_are_split_at_their_boundary_in_utc() {
        let mut a = Accrual::of_switch(&switched("2026-11-30T22:00:00Z")).unwrap();
        a.refresh(at("2026-12-01T03:00:00Z"), &seen(Seen::Running, &[], 0.0));
        assert!(close(a.months["2026-11"].hours, 2.0));
        assert!(close(a.months["2026-12"].hours, 3.0));
        assert!(close(a.total().gross_usd, 5.0 * 0.066));
    }

    #[test]
    fn an_idle_instance_saves_nothing_but_its_kept_resources_still_cost() {
        let mut a = Accrual::of_switch(&switched("2026-12-01T00:00:00Z")).unwrap();
        a.refresh(at("2026-12-01T01:00:00Z"), &seen(Seen::Idle, &[], 0.02));
        let m = a.months["2026-12"];
        assert!(close(m.hours, 0.0) && close(m.gross_usd, 0.0) && close(m.kept_usd, 0.02));
        assert!(close(a.net_per_hour(), -0.02));
    }

    #[test]
    fn a_gone_instance_ends_its_line_after_the_interval_it_ran() {
        let mut a = Accrual::of_switch(&switched("2026-12-01T00:00:00Z")).unwrap();
        a.refresh(at("2026-12-01T01:00:00Z"), &seen(Seen::Running, &[], 0.0));
        a.refresh(at("2026-12-01T02:00:00Z"), &seen(Seen::Gone, &[], 0.0));
        assert_eq!(a.ended, Some(at("2026-12-01T02:00:00Z")));
        assert!(close(a.total().hours, 2.0));
        a.refresh(at("2026-12-01T05:00:00Z"), &seen(Seen::Running, &[], 0.0));
        assert!(close(a.total().hours, 2.0), "an ended line never changes");
        assert!(close(a.net_per_hour(), 0.0));
    }

    #[test]
    fn a_shadow_line_counts_kept_cost_only_within_the_retention() {
        let mut record = switched("2026-12-01T00:00:00Z");
        record.status = LedgerStatus::Shadow;
        record.mode = SagaMode::Shadow;
        let mut a = Accrual::of_shadow(&record, Duration::hours(2)).unwrap();
        assert_eq!(
            a.switch_id,
            "savings#shadow#111111111111#us-east-1#i-source"
        );
        assert_eq!(a.instance_id, "i-source");
        a.refresh(at("2026-12-01T05:00:00Z"), &seen(Seen::Running, &[], 0.01));
        let m = a.months["2026-12"];
        assert!(close(m.kept_usd, 0.02), "{m:?}");
        assert!(close(m.gross_usd, 5.0 * 0.066));
        assert!(!Line::Shadow.realised());
    }

    #[test]
    fn only_completed_live_moves_and_shadow_decisions_open_lines() {
        let mut rolled_back = switched("2026-12-01T00:00:00Z");
        rolled_back.status = LedgerStatus::RolledBack;
        assert!(Accrual::of_switch(&rolled_back).is_none());
        let mut member = switched("2026-12-01T00:00:00Z");
        member.group = Some("web".into());
        let line = Accrual::of_switch(&member).unwrap();
        assert_eq!(
            (line.line, line.workload.as_str()),
            (Line::Swap, "web/i-source")
        );
        let mut shadow = switched("2026-12-02T00:00:00Z");
        shadow.status = LedgerStatus::Shadow;
        shadow.mode = SagaMode::Shadow;
        shadow.switch_id = "shadow-2".into();
        let mut later = shadow.clone();
        later.switch_id = "shadow-3".into();
        later.at = at("2026-12-03T00:00:00Z");
        let lines = open_lines(&[], &[later, shadow, member], &[], Duration::days(30));
        assert_eq!(lines.len(), 2);
        let shadow_line = lines.iter().find(|l| l.line == Line::Shadow).unwrap();
        assert_eq!(
            shadow_line.since,
            at("2026-12-02T00:00:00Z"),
            "the first decision"
        );
    }

    #[test]
    fn a_shadow_line_ends_when_its_source_is_switched_live() {
        let mut shadow = switched("2026-12-01T00:00:00Z");
        (shadow.status, shadow.mode, shadow.switch_id) =
            (LedgerStatus::Shadow, SagaMode::Shadow, "shadow-1".into());
        let live = switched("2026-12-01T03:00:00Z");
        let mut lines = open_lines(&[], &[shadow, live], &[], Duration::days(30));
        let line = lines.iter_mut().find(|l| l.line == Line::Shadow).unwrap();
        assert_eq!(line.stop_at, Some(at("2026-12-01T03:00:00Z")));
        line.refresh(at("2026-12-01T10:00:00Z"), &seen(Seen::Running, &[], 0.0));
        assert!(close(line.total().hours, 3.0), "{line:?}");
        assert_eq!(line.ended, Some(at("2026-12-01T03:00:00Z")));
    }

    #[test]
    fn an_on_demand_failover_replacement_saves_nothing() {
        let record = FailoverRecord {
            switch_id: "failover-1".into(),
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            workload: Some("web".into()),
            old_instance_id: "i-old".into(),
            new_instance_id: Some("i-new".into()),
            market: Some(Market::OnDemand),
            pool: None,
            instance_type: Some("m5.large".into()),
            fallbacks: vec![],
            on_demand_until: None,
            mode: SagaMode::Live,
            status: FailoverStatus::Promoted,
            signal: "interruption".into(),
            received_at: at("2026-12-01T00:00:00Z"),
            seconds_to_healthy: None,
            downtime_seconds: None,
            error: None,
            cause: None,
            at: at("2026-12-01T00:00:00Z"),
        };
        let mut a = Accrual::of_failover(&record, 0.096).unwrap();
        a.refresh(
            at("2026-12-01T04:00:00Z"),
            &seen(Seen::Running, &[("2026-12-01T00:00:00Z", 0.03)], 0.0),
        );
        assert!(close(a.total().hours, 4.0));
        assert!(close(a.total().gross_usd, 0.0));
    }

    #[test]
    fn deleted_waste_is_avoided_cost_less_its_backup_by_month() {
        let by_month = avoided(
            at("2026-11-30T12:00:00Z"),
            at("2026-12-01T12:00:00Z"),
            7.30,
            0.73,
        );
        assert!(close(by_month["2026-11"], 12.0 * 0.009));
        assert!(close(by_month["2026-12"], 12.0 * 0.009));
    }
}
