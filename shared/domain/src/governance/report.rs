//! The JSON summary a scheduled run returns: per account and region, counts per kind and status,
//! estimated monthly waste, actions taken and errors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::governance::enforcement::{AuthStatus, EnforceAction};
use crate::governance::mode::Mode;
use crate::governance::waste::WasteKind;
use crate::metrics;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionTaken {
    /// `tag`, `untag`, `release_address`, `delete_volume`, `terminate`...
    pub action: String,
    pub resource_id: String,
    /// `done`, `pending` (e.g. backup snapshot not complete yet), `refused: …`, `failed: …`.
    pub outcome: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetReport {
    pub account: String,
    pub region: String,
    pub mode: Mode,
    /// kind → resources seen in this run.
    pub scanned: BTreeMap<String, u64>,
    /// kind → status → count, after this run.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_waste_usd: Option<f64>,
    /// Waste scanner: kind → monthly cost of the open records after this run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub open_usd: BTreeMap<String, f64>,
    /// Waste scanner: kind → monthly cost of what this run deleted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_usd: BTreeMap<String, f64>,
    pub actions: Vec<ActionTaken>,
    /// Owner notices sent (`done`) or not (`failed: …`), by outcome; empty when none was due.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notices: BTreeMap<String, u64>,
    /// Why this account/region could not be processed; the other targets still ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pause that stopped this target's changes (from its start, or part-way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
}

impl TargetReport {
    /// An empty report for `target`.
    pub fn new(target: &crate::governance::scope::Target) -> Self {
        Self {
            account: target.account.clone(),
            region: target.region.clone(),
            mode: target.mode,
            ..Self::default()
        }
    }

    pub fn count(&mut self, kind: &str, status: &str) {
        *self
            .counts
            .entry(kind.to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += 1;
    }

    /// `count` notices were published with `result`.
    pub fn notified(&mut self, count: usize, result: &Result<(), crate::AwsError>) {
        if count == 0 {
            return;
        }
        let outcome = match result {
            Ok(()) => "done".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        *self.notices.entry(outcome).or_default() += count as u64;
    }

    pub fn action(&mut self, action: &str, resource_id: &str, outcome: impl Into<String>) {
        self.actions.push(ActionTaken {
            action: action.to_owned(),
            resource_id: resource_id.to_owned(),
            outcome: outcome.into(),
        });
    }

    /// The waste scanner's EMF lines for this target: per kind, the monthly cost still open
    /// (`WasteOpenMonthlyUsd`) and the monthly cost this run removed (`WasteRemovedMonthlyUsd`),
    /// zeros included so the dashboard's lines fall to zero. One line per kind and target, with
    /// the kind as the only dimension: summed over the schedule's period, CloudWatch adds the
    /// targets up whether one invocation or one per target sent them. None for a failed target.
    pub fn waste_metrics(&self, at: DateTime<Utc>) -> Vec<String> {
        if self.error.is_some() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        for kind in WasteKind::ALL {
            let kind = kind.as_str();
            for (metric, values) in [
                (metrics::name::WASTE_OPEN_MONTHLY_USD, &self.open_usd),
                (metrics::name::WASTE_REMOVED_MONTHLY_USD, &self.removed_usd),
            ] {
                let usd = (values.get(kind).copied().unwrap_or_default() * 100.0).round() / 100.0;
                lines.push(metrics::measure(
                    metric,
                    json!(usd),
                    "None",
                    &[("Kind", kind)],
                    &[
                        ("account", json!(self.account)),
                        ("region", json!(self.region)),
                    ],
                    at,
                ));
            }
        }
        lines
    }

    /// The security enforcer's EMF lines for this target: instances flagged or unauthorised
    /// after this run (`UnauthorizedInstances`, by status) and enforcements done in it
    /// (`InstancesEnforced`, by action). None for a failed target.
    pub fn enforcement_metrics(&self, at: DateTime<Utc>) -> Vec<String> {
        if self.error.is_some() {
            return Vec::new();
        }
        let counts = self.counts.get("instance");
        let mut lines = Vec::new();
        for status in [AuthStatus::Flagged, AuthStatus::Unauthorized] {
            let status = status.as_str();
            let n = counts
                .and_then(|c| c.get(status))
                .copied()
                .unwrap_or_default();
            lines.push(self.count_line(
                metrics::name::UNAUTHORIZED_INSTANCES,
                n,
                ("Status", status),
                at,
            ));
        }
        for action in [EnforceAction::Terminate, EnforceAction::Stop] {
            let action = action.as_str();
            let n = self
                .actions
                .iter()
                .filter(|a| a.action == action && a.outcome == "done")
                .count() as u64;
            lines.push(self.count_line(
                metrics::name::INSTANCES_ENFORCED,
                n,
                ("Action", action),
                at,
            ));
        }
        lines
    }

    fn count_line(
        &self,
        metric: &str,
        n: u64,
        dimension: (&str, &str),
        at: DateTime<Utc>,
    ) -> String {
        metrics::count(
            metric,
            n,
            &[dimension],
            &[
                ("account", json!(self.account)),
                ("region", json!(self.region)),
            ],
            at,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub function: &'static str,
    pub request_id: String,
    pub targets: Vec<TargetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_waste_usd: Option<f64>,
    pub actions: usize,
    /// Accounts and regions that failed, as `account/region: error` (or `account: error`).
    pub errors: Vec<String>,
    /// The first of `errors`, at most 300 characters (always present, `null` when none): what a
    /// fanned-out run keeps of a failed target.
    pub first_error: Option<String>,
}

impl RunReport {
    pub fn new(
        function: &'static str,
        request_id: &str,
        mut targets: Vec<TargetReport>,
        mut errors: Vec<String>,
    ) -> Self {
        targets.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        for t in &targets {
            if let Some(error) = &t.error {
                errors.push(format!("{}/{}: {error}", t.account, t.region));
            }
            for a in t.actions.iter().filter(|a| a.outcome.starts_with("failed")) {
                errors.push(format!(
                    "{}/{}: {} {}: {}",
                    t.account, t.region, a.action, a.resource_id, a.outcome
                ));
            }
        }
        let waste: Vec<f64> = targets.iter().filter_map(|t| t.monthly_waste_usd).collect();
        Self {
            function,
            request_id: request_id.to_owned(),
            monthly_waste_usd: (!waste.is_empty())
                .then(|| (waste.iter().sum::<f64>() * 100.0).round() / 100.0),
            actions: targets.iter().map(|t| t.actions.len()).sum(),
            targets,
            first_error: errors.first().map(|e| e.chars().take(300).collect()),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap()
    }

    fn report() -> TargetReport {
        TargetReport {
            account: "111122223333".into(),
            region: "us-east-1".into(),
            ..TargetReport::default()
        }
    }

    /// (metric, dimension value, value) of each line.
    fn read(lines: &[String]) -> Vec<(String, String, f64)> {
        lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let def = &v["_aws"]["CloudWatchMetrics"][0];
                let metric = def["Metrics"][0]["Name"].as_str().unwrap().to_owned();
                let dim = def["Dimensions"][0][0].as_str().unwrap();
                assert_eq!(v["account"], "111122223333");
                (
                    metric.clone(),
                    v[dim].as_str().unwrap().to_owned(),
                    v[&metric].as_f64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn waste_metrics_give_every_kind_its_open_and_removed_cost_zeros_included() {
        let mut r = report();
        r.open_usd.insert("ebs_volume".into(), 12.345);
        r.removed_usd.insert("elastic_ip".into(), 3.6);
        let lines = read(&r.waste_metrics(at()));
        assert_eq!(lines.len(), 10, "two per kind");
        assert!(lines.contains(&("WasteOpenMonthlyUsd".into(), "ebs_volume".into(), 12.35)));
        assert!(lines.contains(&("WasteRemovedMonthlyUsd".into(), "elastic_ip".into(), 3.6)));
        assert!(lines.contains(&("WasteOpenMonthlyUsd".into(), "ami".into(), 0.0)));
        // A target that failed says nothing rather than zero.
        r.error = Some("throttled".into());
        assert!(r.waste_metrics(at()).is_empty());
    }

    #[test]
    fn enforcement_metrics_count_flagged_instances_and_done_enforcements() {
        let mut r = report();
        r.count("instance", "FLAGGED");
        r.count("instance", "FLAGGED");
        r.count("instance", "UNAUTHORIZED");
        r.action("terminate", "i-1", "done");
        r.action("terminate", "i-2", "failed: throttled");
        r.action("tag", "i-3", "done");
        let lines = read(&r.enforcement_metrics(at()));
        assert_eq!(
            lines,
            [
                ("UnauthorizedInstances".into(), "FLAGGED".into(), 2.0),
                ("UnauthorizedInstances".into(), "UNAUTHORIZED".into(), 1.0),
                ("InstancesEnforced".into(), "terminate".into(), 1.0),
                ("InstancesEnforced".into(), "stop".into(), 0.0),
            ]
        );
    }
}
