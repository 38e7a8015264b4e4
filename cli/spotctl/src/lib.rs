//! Rendering shared by `spotctl` and the demo.

use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use spot_domain::saga::approval::ApprovalRequest;
use spot_domain::{QuarantineRecord, SignalKind};

/// The quarantine table as operators read it.
pub fn quarantine_table(records: &[QuarantineRecord], now: DateTime<Utc>) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
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
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "switch",
            "account",
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
