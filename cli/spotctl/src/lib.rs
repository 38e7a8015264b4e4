//! Rendering shared by `spotctl` and the demo.

pub mod guardrails;
pub mod listings;
pub mod onboarding;
pub mod savings;

use chrono::{DateTime, TimeDelta, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use spot_domain::governance::waste::{Volume, kept_until};
use spot_domain::saga::approval::ApprovalRequest;
use spot_domain::saga::failover::{FailoverRecord, FailoverStatus, RoleRecord};
use spot_domain::tags::PRESERVED_TAG;
use spot_domain::{QuarantineRecord, SignalKind};

/// The quarantine table as operators read it.
pub fn quarantine_table(records: &[QuarantineRecord], now: DateTime<Utc>) -> Table {
    let mut table = table(&[
        "pool",
        "reason",
        "signals",
        "first seen (UTC)",
        "expires at (UTC)",
        "remaining",
        "accounts",
    ]);
    for r in records {
        table.add_row([
            r.pool.to_string(),
            match r.reason {
                SignalKind::InterruptionWarning => "interruption warning".to_owned(),
                SignalKind::RebalanceRecommendation => "rebalance recommendation".to_owned(),
                SignalKind::CapacityShortage => "no capacity for a launch".to_owned(),
            },
            r.interruptions.to_string(),
            r.first_seen.format("%Y-%m-%d %H:%M").to_string(),
            r.expires_at.format("%Y-%m-%d %H:%M").to_string(),
            remaining(r, now),
            r.source_accounts
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    table
}

fn remaining(record: &QuarantineRecord, now: DateTime<Utc>) -> String {
    if let (Some(at), Some(by)) = (record.released_at, &record.released_by) {
        return format!("released {} by {by}", at.format("%Y-%m-%d %H:%M"));
    }
    let left = record.expires_at - now;
    if left <= chrono::TimeDelta::zero() {
        return "expired".into();
    }
    format!("{}d {:02}h", left.num_days(), left.num_hours() % 24)
}

/// Pending approvals as operators read them.
pub fn approvals_table(requests: &[ApprovalRequest], now: DateTime<Utc>) -> Table {
    let mut table = table(&[
        "saga",
        "kind",
        "target",
        "account/region",
        "risk",
        "why",
        "plan",
        "answer before (UTC)",
    ]);
    for r in requests {
        let deadline = if r.expires_at <= now {
            "expired".to_owned()
        } else {
            r.expires_at.format("%Y-%m-%d %H:%M").to_string()
        };
        table.add_row([
            r.saga_id.clone(),
            r.saga.to_string(),
            r.target.clone(),
            format!("{} {}", r.account_id, r.region),
            r.risk.to_string(),
            r.reasons.join(", "),
            r.summary.clone(),
            deadline,
        ]);
    }
    table
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    table
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The failovers as operators read them: what replaced what, where, through which fallback, and
/// how long the workload waited.
pub fn failovers_table(records: &[FailoverRecord]) -> Table {
    let mut table = table(&[
        "signal at (UTC)",
        "workload",
        "old → new instance",
        "pool",
        "fallback taken",
        "to healthy (s)",
        "downtime (s)",
        "status",
    ]);
    for r in records {
        table.add_row([
            r.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.workload.clone().unwrap_or_else(|| "-".into()),
            format!(
                "{} → {}",
                r.old_instance_id,
                r.new_instance_id.as_deref().unwrap_or("-")
            ),
            match (&r.pool, r.market) {
                (Some(pool), Some(market)) => format!("{pool} ({market})"),
                (None, Some(market)) => {
                    format!("{} ({market})", r.instance_type.as_deref().unwrap_or("-"))
                }
                _ => "-".into(),
            },
            fallback(r),
            or_dash(r.seconds_to_healthy),
            or_dash(r.downtime_seconds),
            status(r),
        ]);
    }
    table
}

/// The last fallback taken and why (cut at [`WHY_WIDTH`] characters: `--json` has it whole), or
/// `none`.
fn fallback(r: &FailoverRecord) -> String {
    r.fallbacks.last().map_or_else(
        || "none".to_owned(),
        |f| {
            let mut why: String = f.why.chars().take(WHY_WIDTH).collect();
            if why.len() < f.why.len() {
                why.push('…');
            }
            format!("{}: {why}", f.to)
        },
    )
}

const WHY_WIDTH: usize = 60;

fn status(r: &FailoverRecord) -> String {
    let mut status = match r.status {
        FailoverStatus::Shadow => "shadow".to_owned(),
        FailoverStatus::Promoted => "promoted".to_owned(),
        FailoverStatus::Failed => format!(
            "FAILED {}{}",
            or_dash(r.error.map(|e| e.as_str())),
            r.cause
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ),
    };
    if let Some(until) = r.on_demand_until {
        status.push_str(&format!(
            ", on-demand until {}",
            until.format("%Y-%m-%d %H:%M")
        ));
    }
    status
}

/// A workload's instances and their roles.
pub fn roles_table(roles: &[RoleRecord]) -> Table {
    let mut table = table(&[
        "instance",
        "role",
        "since (UTC)",
        "terminated at (UTC)",
        "failover",
        "account/region",
    ]);
    for r in roles {
        table.add_row([
            r.instance_id.clone(),
            r.role.to_string(),
            r.since.format("%Y-%m-%d %H:%M:%S").to_string(),
            or_dash(r.terminated_at.map(|t| t.format("%Y-%m-%d %H:%M:%S"))),
            r.failover.clone(),
            format!("{} {}", r.account_id, r.region),
        ]);
    }
    table
}

/// The volumes failovers kept, with when the waste scanner may start flagging them.
pub fn kept_volumes_table(volumes: &[Volume], retention: TimeDelta, now: DateTime<Utc>) -> Table {
    let mut table = table(&[
        "volume",
        "kept from",
        "size (GiB)",
        "type",
        "state",
        "kept until (UTC)",
    ]);
    for v in volumes {
        let until = kept_until(v, retention);
        let until = match until {
            Some(t) if t <= now => format!("{} (waste from now)", t.format("%Y-%m-%d")),
            Some(t) => t.format("%Y-%m-%d").to_string(),
            None => "-".into(),
        };
        table.add_row([
            v.volume_id.clone(),
            v.tags.get(PRESERVED_TAG).cloned().unwrap_or_default(),
            v.size_gb.to_string(),
            v.volume_type.clone(),
            v.state.clone(),
            until,
        ]);
    }
    table
}

/// The schedules, one per row.
pub fn schedules_table(schedules: &[spot_domain::hibernation::Schedule]) -> Table {
    let mut table = table(&[
        "name",
        "time zone",
        "awake h/week",
        "enforced",
        "hibernate",
        "wake lead (min)",
    ]);
    for s in schedules {
        table.add_row(vec![
            s.name.clone(),
            s.timezone.clone(),
            s.awake.awake_hours().to_string(),
            yes_no(s.enforced),
            yes_no(s.hibernate),
            s.wake_lead_minutes.to_string(),
        ]);
    }
    table
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// One schedule, its options, and its week as a grid.
pub fn schedule_text(s: &spot_domain::hibernation::Schedule) -> String {
    format!(
        "{} ({}): {} awake hours a week; enforced {}, hibernate {}, wake lead {} min\n{}",
        s.name,
        s.timezone,
        s.awake.awake_hours(),
        yes_no(s.enforced),
        yes_no(s.hibernate),
        s.wake_lead_minutes,
        s.awake.grid()
    )
}

/// The hours `schedule` keeps a target asleep in the local week holding `now`, and with an
/// instance type, what that saves per instance at the shipped us-east-1 on-demand price.
pub fn schedule_week_saving(
    schedule: &spot_domain::hibernation::Schedule,
    instance_type: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    use spot_domain::hibernation::savings::{Saving, asleep_hours, week_of};
    let (from, to) = week_of(schedule, now)?;
    let hours = asleep_hours(schedule, from, to)?;
    let week = format!(
        "this week ({} to {}, {} h): {hours:.2} h asleep",
        from.format("%Y-%m-%d %H:%M UTC"),
        to.format("%Y-%m-%d %H:%M UTC"),
        (to - from).num_hours()
    );
    let Some(t) = instance_type else {
        return Ok(week);
    };
    let catalog = spot_domain::market::Catalog::shipped();
    let Some(price) = catalog.on_demand("us-east-1", t) else {
        anyhow::bail!("{week}; no shipped on-demand price for {t} (us-east-1, Linux)");
    };
    let saving = Saving::new(hours, price);
    Ok(format!(
        "{week}; saves ${:.2} per {t} (on-demand ${price:.4}/h, us-east-1 Linux, shipped prices)",
        saving.usd
    ))
}

/// A target's savings: this month's and all months', each with the sleep in progress.
fn target_savings(
    t: &spot_domain::hibernation::state::TargetState,
    now: DateTime<Utc>,
) -> (
    spot_domain::hibernation::state::Saved,
    spot_domain::hibernation::state::Saved,
) {
    let month = now.format("%Y-%m").to_string();
    let open = t.sleeping(now).unwrap_or_default();
    let mut this = t.saved.get(&month).copied().unwrap_or_default();
    this.add(open);
    let mut total = open;
    for s in t.saved.values() {
        total.add(*s);
    }
    (this, total)
}

/// `spotctl schedule savings`: one row per target, then one per schedule.
pub fn savings_tables(
    targets: &[spot_domain::hibernation::state::TargetState],
    now: DateTime<Utc>,
) -> (Table, Table) {
    let mut rows = table(&[
        "account",
        "region",
        "target",
        "schedule",
        "asleep since",
        "h this month",
        "$ this month",
        "h total",
        "$ total",
    ]);
    let mut per_schedule: std::collections::BTreeMap<&str, (usize, f64, f64, f64, f64)> =
        std::collections::BTreeMap::new();
    for t in targets {
        let (this, total) = target_savings(t, now);
        rows.add_row(vec![
            t.account.clone(),
            t.region.clone(),
            t.resource.clone(),
            t.schedule.clone(),
            or_dash(t.asleep_since.map(|s| s.format("%Y-%m-%d %H:%M UTC"))),
            format!("{:.1}", this.hours),
            format!("{:.2}", this.usd),
            format!("{:.1}", total.hours),
            format!("{:.2}", total.usd),
        ]);
        let e = per_schedule.entry(t.schedule.as_str()).or_default();
        e.0 += 1;
        e.1 += this.hours;
        e.2 += this.usd;
        e.3 += total.hours;
        e.4 += total.usd;
    }
    let mut schedules = table(&[
        "schedule",
        "targets",
        "h this month",
        "$ this month",
        "h total",
        "$ total",
    ]);
    for (name, (n, h, usd, th, tusd)) in per_schedule {
        schedules.add_row(vec![
            name.to_owned(),
            n.to_string(),
            format!("{h:.1}"),
            format!("{usd:.2}"),
            format!("{th:.1}"),
            format!("{tusd:.2}"),
        ]);
    }
    (rows, schedules)
}

/// `spotctl schedule savings --json`: one object per target.
pub fn savings_json(
    targets: &[spot_domain::hibernation::state::TargetState],
    now: DateTime<Utc>,
) -> Vec<String> {
    targets
        .iter()
        .map(|t| {
            let (this, total) = target_savings(t, now);
            serde_json::json!({
                "account": t.account, "region": t.region, "target": t.resource,
                "schedule": t.schedule, "asleep_since": t.asleep_since,
                "usd_per_hour": t.usd_per_hour,
                "this_month": {"hours": this.hours, "usd": this.usd},
                "total": {"hours": total.hours, "usd": total.usd},
                "by_month": t.saved,
            })
            .to_string()
        })
        .collect()
}

/// `spotctl schedule check`: what the week (`awake` periods or a 168-cell `matrix`) says at
/// instant `at` (RFC 3339) in zone `tz`; the matrix alone, no wake lead. The error says what is
/// wrong.
pub fn schedule_check(
    awake: Option<&str>,
    matrix: Option<&str>,
    tz: &str,
    at: &str,
) -> Result<spot_domain::hibernation::Power, String> {
    use spot_domain::hibernation::{Power, Week, schedule};
    let week = match (awake, matrix) {
        (Some(periods), None) => Week::from_periods(periods),
        (None, Some(cells)) => Week::from_matrix(cells),
        _ => return Err("give either --awake or --matrix".into()),
    }
    .map_err(|e| e.to_string())?;
    let zone = schedule::zone(tz).map_err(|e| e.to_string())?;
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .map_err(|e| format!("`{at}` is no RFC 3339 time ({e}), e.g. 2026-03-29T01:30:00Z"))?
        .with_timezone(&chrono::Utc);
    Ok(if schedule::awake_in(&week, zone, at) {
        Power::Awake
    } else {
        Power::Asleep
    })
}

/// `spotctl switch revert`: what the revert did, one line each.
pub fn reverted_text(r: &spot_domain::saga::switch::Reverted) -> String {
    if r.already {
        return format!("{} was reverted before: nothing to do", r.switch_id);
    }
    let mut lines = vec![
        format!("{}: reverted", r.switch_id),
        format!("{} runs again", r.source),
    ];
    if let Some(ip) = &r.address {
        lines.push(format!("{ip} moved back to {}", r.source));
    }
    lines.push(if r.clone_terminated {
        format!("Spot clone {} terminated", r.clone)
    } else {
        format!(
            "{} left alone: it no longer carries the switch's mark",
            r.clone
        )
    });
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use spot_domain::saga::failover::{Fallback, Market};
    use spot_domain::saga::step::SagaMode;

    #[test]
    fn schedule_check_reads_the_week_in_its_zone_and_says_what_is_wrong() {
        use spot_domain::hibernation::Power;
        let check = |awake, at| schedule_check(Some(awake), None, "Europe/Berlin", at);
        // 07:30 CET on a Monday; the same instant in summer is 08:30 CEST.
        assert_eq!(
            check("Mon-Fri 7-19", "2026-01-05T06:30:00Z"),
            Ok(Power::Awake)
        );
        assert_eq!(
            check("Mon-Fri 8-19", "2026-01-05T06:30:00Z"),
            Ok(Power::Asleep)
        );
        assert_eq!(
            check("Mon-Fri 8-19", "2026-07-06T06:30:00Z"),
            Ok(Power::Awake)
        );
        let matrix = "1".repeat(168);
        assert_eq!(
            schedule_check(None, Some(&matrix), "UTC", "2026-01-05T06:30:00+01:00"),
            Ok(Power::Awake)
        );
        assert!(
            check("Mon-Fry 7-19", "2026-01-05T06:30:00Z")
                .unwrap_err()
                .contains("Fry")
        );
        assert!(
            schedule_check(
                Some("daily 0-24"),
                None,
                "Europe/Berln",
                "2026-01-05T06:30:00Z"
            )
            .unwrap_err()
            .contains("IANA")
        );
        assert!(
            check("daily 0-24", "yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(
            schedule_check(None, Some("01"), "UTC", "2026-01-05T06:30:00Z")
                .unwrap_err()
                .contains("168")
        );
    }

    pub(crate) fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn record() -> FailoverRecord {
        FailoverRecord {
            switch_id: "failover-111111111111-i-old".into(),
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            workload: Some("i-origin".into()),
            old_instance_id: "i-old".into(),
            new_instance_id: Some("i-new".into()),
            market: Some(Market::OnDemand),
            pool: None,
            instance_type: Some("m5.large".into()),
            fallbacks: vec![Fallback {
                to: Market::OnDemand,
                why: "no Spot capacity: InsufficientInstanceCapacity".into(),
            }],
            on_demand_until: Some(at("2026-12-11T10:00:00Z")),
            mode: SagaMode::Live,
            status: FailoverStatus::Promoted,
            signal: "EC2 Spot Instance Interruption Warning".into(),
            received_at: at("2026-12-04T10:00:00Z"),
            seconds_to_healthy: Some(95),
            downtime_seconds: Some(0),
            error: None,
            cause: None,
            at: at("2026-12-04T10:01:35Z"),
        }
    }

    /// Each heading of `table`'s only row, with the value under it.
    pub(crate) fn columns(table: &Table) -> Vec<(String, String)> {
        let header: Vec<String> = table
            .header()
            .map(|h| h.cell_iter().map(|c| c.content()).collect())
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = table
            .row_iter()
            .map(|r| r.cell_iter().map(|c| c.content()).collect())
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(header.len(), rows[0].len(), "one heading per value");
        header.into_iter().zip(rows[0].clone()).collect()
    }

    #[test]
    fn every_approvals_column_is_under_its_heading() {
        use spot_domain::saga::approval::{ApprovalStatus, Saga};
        let request = ApprovalRequest {
            saga_id: "web-1-2026-12-04".into(),
            saga: Saga::AtomicSwitch,
            task_token: "token".into(),
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            target: "i-0aaaaaaaaaaaaaaaa".into(),
            risk: spot_domain::saga::step::Risk::High,
            reasons: vec!["stateful".into(), "no ALB".into()],
            summary: "m5.large → m6i.large spot, $0.05/h".into(),
            requested_at: at("2026-12-04T10:00:00Z"),
            expires_at: at("2026-12-04T12:00:00Z"),
            status: ApprovalStatus::Pending,
            answered_by: None,
            answer_note: None,
            link_digests: None,
        };
        let columns = columns(&approvals_table(&[request], at("2026-12-04T11:00:00Z")));
        let expected = [
            ("saga", "web-1-2026-12-04"),
            ("kind", &Saga::AtomicSwitch.to_string()),
            ("target", "i-0aaaaaaaaaaaaaaaa"),
            ("account/region", "111111111111 us-east-1"),
            ("risk", &spot_domain::saga::step::Risk::High.to_string()),
            ("why", "stateful, no ALB"),
            ("plan", "m5.large → m6i.large spot, $0.05/h"),
            ("answer before (UTC)", "2026-12-04 12:00"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(columns, expected);
    }

    #[test]
    fn every_schedules_column_is_under_its_heading() {
        use spot_domain::hibernation::{Schedule, Week};
        let mut s = Schedule::new(
            "office",
            "Europe/Berlin",
            Week::from_periods("Mon-Fri 7-19").unwrap(),
        )
        .unwrap();
        s.enforced = true;
        let columns = columns(&schedules_table(&[s]));
        let expected: Vec<(String, String)> = [
            ("name", "office"),
            ("time zone", "Europe/Berlin"),
            ("awake h/week", "60"),
            ("enforced", "yes"),
            ("hibernate", "no"),
            ("wake lead (min)", "10"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(columns, expected);
    }

    #[test]
    fn a_schedule_says_what_it_keeps_asleep_this_week_and_saves() {
        use spot_domain::hibernation::{Schedule, Week};
        let s = Schedule::new(
            "office",
            "Europe/Berlin",
            Week::from_periods("Mon-Fri 7-19").unwrap(),
        )
        .unwrap();
        let now = at("2026-01-07T12:00:00Z");
        let text = schedule_week_saving(&s, Some("m5.large"), now).unwrap();
        // 108 h minus five 10-minute wake leads.
        assert!(text.contains("168 h): 107.17 h asleep"), "{text}");
        assert!(
            text.contains("2026-01-04 23:00 UTC"),
            "Monday 00:00 in Berlin: {text}"
        );
        assert!(
            text.contains("saves $") && text.contains("per m5.large"),
            "{text}"
        );
        assert!(schedule_week_saving(&s, Some("m5.nope"), now).is_err());
        assert!(
            !schedule_week_saving(&s, None, now)
                .unwrap()
                .contains("saves")
        );
    }

    #[test]
    fn every_failovers_column_is_under_its_heading() {
        let columns = columns(&failovers_table(&[record()]));
        let value = |heading: &str| {
            columns
                .iter()
                .find(|(h, _)| h == heading)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no column {heading}: {columns:?}"))
        };
        assert_eq!(value("signal at (UTC)"), "2026-12-04 10:00:00");
        assert_eq!(value("workload"), "i-origin");
        assert_eq!(value("old → new instance"), "i-old → i-new");
        assert_eq!(value("pool"), "m5.large (on-demand)");
        assert!(value("fallback taken").starts_with("on-demand: no Spot capacity"));
        assert_eq!(value("to healthy (s)"), "95");
        assert_eq!(value("downtime (s)"), "0");
        assert_eq!(
            value("status"),
            "promoted, on-demand until 2026-12-11 10:00"
        );
    }

    #[test]
    fn a_failover_row_says_what_replaced_what_through_which_fallback() {
        let out = failovers_table(&[record()]).to_string();
        assert!(out.contains("i-old → i-new"), "{out}");
        assert!(out.contains("m5.large (on-demand)"), "{out}");
        assert!(out.contains("on-demand: no Spot capacity"), "{out}");
        assert!(out.contains("95"), "{out}");
        assert!(out.contains("on-demand until 2026-12-11 10:00"), "{out}");
    }

    #[test]
    fn a_long_reason_is_cut_in_the_table() {
        let mut r = record();
        r.fallbacks[0].why = "é".repeat(200);
        let out = failovers_table(&[r]).to_string();
        assert!(
            out.contains(&format!("on-demand: {}…", "é".repeat(WHY_WIDTH))),
            "{out}"
        );
        assert!(!out.contains(&"é".repeat(WHY_WIDTH + 1)), "{out}");
    }

    #[test]
    fn a_failed_failover_shows_its_error_name_and_cause() {
        let mut r = record();
        r.status = FailoverStatus::Failed;
        r.new_instance_id = None;
        r.error = Some(spot_domain::ErrorName::InsufficientCapacity);
        r.cause = Some("every pool refused".into());
        r.on_demand_until = None;
        let out = failovers_table(&[r]).to_string();
        assert!(out.contains("i-old → -"), "{out}");
        assert!(
            out.contains("FAILED InsufficientCapacity: every pool refused"),
            "{out}"
        );
    }

    #[test]
    fn a_kept_volume_shows_when_it_becomes_waste() {
        let volume = |id: &str, kept_at: &str| Volume {
            volume_id: id.into(),
            state: "available".into(),
            volume_type: "gp3".into(),
            size_gb: 8,
            iops: None,
            throughput: None,
            created: at("2026-10-01T00:00:00Z"),
            tags: [
                (PRESERVED_TAG.to_owned(), "i-old".to_owned()),
                (
                    spot_domain::tags::PRESERVED_AT_TAG.to_owned(),
                    kept_at.to_owned(),
                ),
            ]
            .into(),
        };
        let out = kept_volumes_table(
            &[
                volume("vol-recent", "2026-12-01T00:00:00Z"),
                volume("vol-old", "2026-10-01T00:00:00Z"),
            ],
            TimeDelta::days(30),
            at("2026-12-04T00:00:00Z"),
        )
        .to_string();
        assert!(out.contains("2026-12-31"), "{out}");
        assert!(out.contains("2026-10-31 (waste from now)"), "{out}");
        assert!(out.contains("i-old"), "{out}");
    }
}
