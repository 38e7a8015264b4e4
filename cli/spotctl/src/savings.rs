//! `spotctl savings`: net savings per account, region and month (switches, swaps and failovers
//! net of what they keep, hibernation, waste removed; shadow apart), or per workload with
//! `--detail`; a table or one JSON object per line.

use std::collections::BTreeMap;

use comfy_table::Table;
use serde_json::json;
use spot_domain::savings::{Accrual, Line, Month, Scope, Totals};

use crate::{or_dash, table};

/// What the report keeps: every given filter must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Only {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only this month (`YYYY-MM`, UTC).
    #[arg(long)]
    pub month: Option<String>,
}

impl Only {
    fn keeps(&self, account: &str, region: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
            && self.region.as_deref().is_none_or(|r| r == region)
    }

    fn keeps_month(&self, month: &str) -> bool {
        self.month.as_deref().is_none_or(|m| m == month)
    }

    /// The totals this filter keeps.
    pub fn totals(&self, totals: BTreeMap<Scope, Totals>) -> BTreeMap<Scope, Totals> {
        totals
            .into_iter()
            .filter(|((a, r, m), _)| self.keeps(a, r) && self.keeps_month(m))
            .collect()
    }

    /// The accruals this filter keeps, with their months cut to the one asked for.
    pub fn accruals(&self, accruals: Vec<Accrual>) -> Vec<Accrual> {
        let mut kept: Vec<Accrual> = accruals
            .into_iter()
            .filter(|a| self.keeps(&a.account_id, &a.region))
            .map(|mut a| {
                a.months.retain(|m, _| self.keeps_month(m));
                a
            })
            .filter(|a| self.month.is_none() || !a.months.is_empty())
            .collect();
        kept.sort_by(|a, b| b.total().net_usd().total_cmp(&a.total().net_usd()));
        kept
    }
}

const LINES: [Line; 5] = [
    Line::Switch,
    Line::Swap,
    Line::Failover,
    Line::Hibernation,
    Line::Waste,
];

/// Dollars and cents; less than half a cent either way is 0.00 (never "-0.00").
fn usd(value: f64) -> String {
    let value = if value.abs() < 0.005 { 0.0 } else { value };
    format!("{value:.2}")
}

/// One row per account, region and month, then the sum of them all.
pub fn totals_table(totals: &BTreeMap<Scope, Totals>) -> Table {
    let mut header = vec!["account", "region", "month"];
    header.extend(LINES.iter().map(|l| l.as_str()));
    header.extend(["net realised $", "shadow $"]);
    let mut t = table(&header);
    let mut all = Totals::default();
    for ((account, region, month), totals) in totals {
        let mut row = vec![account.clone(), region.clone(), month.clone()];
        row.extend(LINES.iter().map(|l| usd(totals.get(*l))));
        row.push(usd(totals.realised()));
        row.push(usd(totals.get(Line::Shadow)));
        t.add_row(row);
        for (line, value) in &totals.lines {
            all.add(*line, *value);
        }
    }
    let mut row = vec!["all".to_owned(), "-".to_owned(), "-".to_owned()];
    row.extend(LINES.iter().map(|l| usd(all.get(*l))));
    row.push(usd(all.realised()));
    row.push(usd(all.get(Line::Shadow)));
    t.add_row(row);
    t
}

/// One JSON object per account, region and month.
pub fn totals_json(totals: &BTreeMap<Scope, Totals>) -> Vec<String> {
    totals
        .iter()
        .map(|((account, region, month), totals)| {
            let mut o = json!({"account": account, "region": region, "month": month});
            for line in Line::ALL {
                o[line.as_str()] = json!(totals.get(line));
            }
            o["realised"] = json!(totals.realised());
            o.to_string()
        })
        .collect()
}

/// One row per workload: what it is on, what it saves now, what it saved.
pub fn detail_table(accruals: &[Accrual]) -> Table {
    let mut t = table(&[
        "account",
        "region",
        "line",
        "workload",
        "instance",
        "pool",
        "on-demand $/h",
        "spot $/h",
        "kept $/h",
        "net $/h now",
        "hours",
        "net $",
        "refreshed (UTC)",
        "ended (UTC)",
    ]);
    for a in accruals {
        let total = a.total();
        t.add_row(vec![
            a.account_id.clone(),
            a.region.clone(),
            a.line.as_str().to_owned(),
            a.workload.clone(),
            a.instance_id.clone(),
            match (&a.instance_type, &a.az_name) {
                (Some(t), Some(az)) => format!("{t} {az}"),
                (Some(t), None) => t.clone(),
                _ => "-".to_owned(),
            },
            format!("{:.4}", a.on_demand_per_hour),
            or_dash(a.spot_per_hour.map(|p| format!("{p:.4}"))),
            or_dash(a.kept_per_hour.map(|p| format!("{p:.4}"))),
            format!("{:.4}", a.net_per_hour()),
            format!("{:.1}", total.hours),
            usd(total.net_usd()),
            a.accrued_until.format("%Y-%m-%d %H:%M").to_string(),
            or_dash(a.ended.map(|t| t.format("%Y-%m-%d %H:%M"))),
        ]);
    }
    t
}

/// One JSON object per workload: the accrual as stored, with its totals.
pub fn detail_json(accruals: &[Accrual]) -> anyhow::Result<Vec<String>> {
    accruals
        .iter()
        .map(|a| {
            let Month {
                hours,
                gross_usd,
                kept_usd,
            } = a.total();
            let mut o = serde_json::to_value(a)?;
            o["total"] = json!({"hours": hours, "gross_usd": gross_usd, "kept_usd": kept_usd,
                "net_usd": gross_usd - kept_usd});
            o["net_per_hour"] = json!(a.net_per_hour());
            Ok(o.to_string())
        })
        .collect()
}
