//! `spotctl waste list`, `enforcement list`, `ledger list` and `audit list`: what the scheduled
//! functions and the sagas recorded, filtered by account, region, status and time, as a table or
//! as one JSON object per line.

use chrono::{DateTime, Utc};
use comfy_table::Table;
use serde::Serialize;
use spot_domain::audit::AuditRecord;
use spot_domain::governance::enforcement::EnforcementRecord;
use spot_domain::governance::waste::WasteRecord;
use spot_domain::saga::ledger::LedgerRecord;

use crate::{or_dash, table};

/// What a listing keeps: every given filter must match (status without regard to case).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only this status (e.g. FLAGGED, SCHEDULED_DELETE; switched, rolled_back; done, failed).
    #[arg(long)]
    pub status: Option<String>,
    /// Only what happened at or after this instant (RFC 3339).
    #[arg(long, value_parser = since)]
    pub since: Option<DateTime<Utc>>,
}

fn since(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is no RFC 3339 time ({e})"))
}

impl Filter {
    fn keeps(&self, account: &str, region: &str, status: &str, at: DateTime<Utc>) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
            && self.region.as_deref().is_none_or(|r| r == region)
            && self.status.as_deref().is_none_or(|s| {
                status
                    .to_ascii_lowercase()
                    .starts_with(&s.to_ascii_lowercase())
            })
            && self.since.is_none_or(|t| at >= t)
    }
}

/// A value as its JSON string form (the enums' stored names).
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    or_dash(t.map(|t| t.format("%Y-%m-%d %H:%M")))
}

fn cut(text: &str, at: usize) -> String {
    if text.chars().count() <= at {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(at - 1).collect();
    cut.push('…');
    cut
}

/// The waste records kept by `filter` (time: when first seen), most costly first.
pub fn waste(records: Vec<WasteRecord>, filter: &Filter) -> Vec<WasteRecord> {
    let mut kept: Vec<WasteRecord> = records
        .into_iter()
        .filter(|r| filter.keeps(&r.account, &r.region, r.status.as_str(), r.first_seen))
        .collect();
    kept.sort_by(|a, b| b.monthly_cost_usd.total_cmp(&a.monthly_cost_usd));
    kept
}

pub fn waste_table(records: &[WasteRecord]) -> Table {
    let mut t = table(&[
        "account",
        "region",
        "kind",
        "resource",
        "status",
        "$/month",
        "first seen (UTC)",
        "delete after (UTC)",
        "why",
    ]);
    for r in records {
        t.add_row(vec![
            r.account.clone(),
            r.region.clone(),
            r.kind.as_str().to_owned(),
            r.resource_id.clone(),
            r.status.as_str().to_owned(),
            format!("{:.2}", r.monthly_cost_usd),
            time(Some(r.first_seen)),
            time(r.delete_after),
            cut(&r.reason, 60),
        ]);
    }
    t
}

/// The enforcement records kept by `filter` (time: the decision), nearest deadline first.
pub fn enforcement(records: Vec<EnforcementRecord>, filter: &Filter) -> Vec<EnforcementRecord> {
    let mut kept: Vec<EnforcementRecord> = records
        .into_iter()
        .filter(|r| filter.keeps(&r.account, &r.region, r.auth_status.as_str(), r.decided_at))
        .collect();
    kept.sort_by_key(|r| (r.terminate_after.is_none(), r.terminate_after));
    kept
}

pub fn enforcement_table(records: &[EnforcementRecord]) -> Table {
    let mut t = table(&[
        "account",
        "region",
        "instance",
        "status",
        "flagged (UTC)",
        "deadline (UTC)",
        "deadline set in",
        "why",
    ]);
    for r in records {
        t.add_row(vec![
            r.account.clone(),
            r.region.clone(),
            r.instance_id.clone(),
            r.auth_status.as_str().to_owned(),
            time(r.flagged_at),
            time(r.terminate_after),
            label(&r.deadline_mode),
            cut(&r.reason, 60),
        ]);
    }
    t
}

/// The switch and swap records kept by `filter` (time: when recorded), newest first.
pub fn ledger(records: Vec<LedgerRecord>, filter: &Filter) -> Vec<LedgerRecord> {
    records
        .into_iter()
        .filter(|r| filter.keeps(&r.account_id, &r.region, &label(&r.status), r.at))
        .collect()
}

pub fn ledger_table(records: &[LedgerRecord]) -> Table {
    let mut t = table(&[
        "at (UTC)",
        "record",
        "account",
        "region",
        "source",
        "new",
        "status",
        "mode",
        "pool",
        "saving $/h",
        "cause",
    ]);
    for r in records {
        t.add_row(vec![
            time(Some(r.at)),
            r.switch_id.clone(),
            r.account_id.clone(),
            r.region.clone(),
            r.source_instance_id.clone(),
            or_dash(r.new_instance_id.as_deref()),
            label(&r.status),
            label(&r.mode),
            or_dash(r.pool.as_ref().map(|p| p.to_string())),
            or_dash(r.saving_per_hour.map(|s| format!("{s:.4}"))),
            cut(r.cause.as_deref().unwrap_or("-"), 50),
        ]);
    }
    t
}

/// The audit items kept by `filter` (status: the outcome; time: when the action began), and by
/// function if given; newest first.
pub fn audit(
    records: Vec<AuditRecord>,
    filter: &Filter,
    function: Option<&str>,
) -> Vec<AuditRecord> {
    records
        .into_iter()
        .filter(|r| filter.keeps(&r.account, &r.region, &r.outcome, r.at))
        .filter(|r| function.is_none_or(|f| f == r.function))
        .collect()
}

pub fn audit_table(records: &[AuditRecord]) -> Table {
    let mut t = table(&[
        "at (UTC)", "function", "action", "account", "region", "resource", "mode", "outcome", "why",
    ]);
    for r in records {
        t.add_row(vec![
            time(Some(r.at)),
            r.function.clone(),
            r.action.clone(),
            r.account.clone(),
            r.region.clone(),
            cut(&r.resource_id, 40),
            label(&r.mode),
            cut(&r.outcome, 40),
            cut(&r.reason, 50),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{at, columns};
    use spot_domain::governance::enforcement::AuthStatus;
    use spot_domain::governance::mode::Mode;
    use spot_domain::governance::waste::{WasteKind, WasteStatus};
    use spot_domain::saga::SagaMode;
    use spot_domain::saga::ledger::LedgerStatus;

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn volume() -> WasteRecord {
        WasteRecord {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            resource_id: "vol-0aaaaaaaaaaaaaaaa".into(),
            kind: WasteKind::EbsVolume,
            status: WasteStatus::ScheduledDelete,
            monthly_cost_usd: 12.5,
            size_gb: Some(125),
            reason: "unattached for 40 days".into(),
            first_seen: at("2026-10-01T00:00:00Z"),
            last_seen: at("2026-12-04T00:00:00Z"),
            flagged_at: Some(at("2026-11-10T00:00:00Z")),
            delete_after: Some(at("2026-12-10T06:00:00Z")),
            closed_at: None,
            backup_snapshot_id: None,
            version: 3,
        }
    }

    #[test]
    fn every_waste_column_is_under_its_heading_and_filters_keep_what_they_name() {
        let r = volume();
        assert_eq!(
            columns(&waste_table(std::slice::from_ref(&r))),
            pairs(&[
                ("account", "111111111111"),
                ("region", "us-east-1"),
                ("kind", WasteKind::EbsVolume.as_str()),
                ("resource", "vol-0aaaaaaaaaaaaaaaa"),
                ("status", "SCHEDULED_DELETE"),
                ("$/month", "12.50"),
                ("first seen (UTC)", "2026-10-01 00:00"),
                ("delete after (UTC)", "2026-12-10 06:00"),
                ("why", "unattached for 40 days"),
            ])
        );
        let keep = |f: Filter| waste(vec![r.clone()], &f).len();
        assert_eq!(keep(Filter::default()), 1);
        assert_eq!(
            keep(Filter {
                status: Some("scheduled".into()),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            keep(Filter {
                status: Some("FLAGGED".into()),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            keep(Filter {
                account: Some("2".repeat(12)),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            keep(Filter {
                region: Some("eu-west-1".into()),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            keep(Filter {
                since: Some(at("2026-11-01T00:00:00Z")),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            keep(Filter {
                since: Some(at("2026-10-01T00:00:00Z")),
                ..Filter::default()
            }),
            1
        );
    }

    #[test]
    fn every_enforcement_column_is_under_its_heading() {
        let r = EnforcementRecord {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            instance_id: "i-0bbbbbbbbbbbbbbbb".into(),
            auth_status: AuthStatus::Flagged,
            flagged_at: Some(at("2026-12-04T10:00:00Z")),
            terminate_after: Some(at("2026-12-05T10:00:00Z")),
            deadline_mode: Mode::Audit,
            reason: "no authorising tag".into(),
            tags: Default::default(),
            decided_at: at("2026-12-04T10:00:00Z"),
            version: 1,
        };
        assert_eq!(
            columns(&enforcement_table(&[r])),
            pairs(&[
                ("account", "111111111111"),
                ("region", "eu-west-1"),
                ("instance", "i-0bbbbbbbbbbbbbbbb"),
                ("status", AuthStatus::Flagged.as_str()),
                ("flagged (UTC)", "2026-12-04 10:00"),
                ("deadline (UTC)", "2026-12-05 10:00"),
                ("deadline set in", "audit"),
                ("why", "no authorising tag"),
            ])
        );
    }

    #[test]
    fn every_ledger_column_is_under_its_heading() {
        let r = LedgerRecord {
            switch_id: "sw-111111111111-us-east-1-i-0c".into(),
            account_id: "111111111111".into(),
            region: "us-east-1".into(),
            source_instance_id: "i-0cccccccccccccccc".into(),
            mode: SagaMode::Live,
            status: LedgerStatus::Switched,
            new_instance_id: Some("i-0dddddddddddddddd".into()),
            pool: Some("us-east-1#use1-az4#m5.large".parse().unwrap()),
            instance_type: Some("m5.large".into()),
            on_demand_price: Some(0.096),
            spot_price: Some(0.035),
            saving_per_hour: Some(0.061),
            risk: None,
            cause: None,
            at: at("2026-12-04T09:30:00Z"),
            group: None,
            downtime_ms: None,
        };
        let status = label(&LedgerStatus::Switched);
        assert_eq!(
            columns(&ledger_table(std::slice::from_ref(&r))),
            pairs(&[
                ("at (UTC)", "2026-12-04 09:30"),
                ("record", "sw-111111111111-us-east-1-i-0c"),
                ("account", "111111111111"),
                ("region", "us-east-1"),
                ("source", "i-0cccccccccccccccc"),
                ("new", "i-0dddddddddddddddd"),
                ("status", &status),
                ("mode", &label(&SagaMode::Live)),
                ("pool", "us-east-1#use1-az4#m5.large"),
                ("saving $/h", "0.0610"),
                ("cause", "-"),
            ])
        );
        let f = Filter {
            status: Some(status.to_uppercase()),
            ..Filter::default()
        };
        assert_eq!(
            ledger(vec![r], &f).len(),
            1,
            "status without regard to case"
        );
    }

    #[test]
    fn every_audit_column_is_under_its_heading() {
        let r = AuditRecord {
            action_id: "hibernation-reconciler#1#us-east-1#stop#i-1#0".into(),
            function: "hibernation-reconciler".into(),
            action: "stop".into(),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            resource_id: "i-0eeeeeeeeeeeeeeee,i-0ffffffffffffffff".into(),
            reason: "transition to asleep".into(),
            pre_state: "{}".into(),
            mode: Mode::Live,
            request_id: "r-1".into(),
            at: at("2026-12-04T18:00:00Z"),
            outcome: "done".into(),
            finished_at: Some(at("2026-12-04T18:00:01Z")),
        };
        assert_eq!(
            columns(&audit_table(std::slice::from_ref(&r))),
            pairs(&[
                ("at (UTC)", "2026-12-04 18:00"),
                ("function", "hibernation-reconciler"),
                ("action", "stop"),
                ("account", "111111111111"),
                ("region", "us-east-1"),
                ("resource", "i-0eeeeeeeeeeeeeeee,i-0ffffffffffffffff"),
                ("mode", "live"),
                ("outcome", "done"),
                ("why", "transition to asleep"),
            ])
        );
        let f = Filter::default();
        assert_eq!(audit(vec![r.clone()], &f, Some("waste-scanner")).len(), 0);
        assert_eq!(audit(vec![r], &f, Some("hibernation-reconciler")).len(), 1);
    }
}
