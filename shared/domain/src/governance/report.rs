//! The JSON summary a scheduled run returns: per account and region, counts per kind and status,
//! estimated monthly waste, actions taken and errors.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::governance::mode::Mode;

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
    pub actions: Vec<ActionTaken>,
    /// Owner notices sent (`done`) or not (`failed: …`), by outcome; empty when none was due.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notices: BTreeMap<String, u64>,
    /// Why this account/region could not be processed; the other targets still ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
            errors,
        }
    }
}
