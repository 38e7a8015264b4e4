//! The CloudWatch dashboard of the template, read as CloudWatch will: every metric it shows is
//! one the functions emit (`spot_domain::metrics::name`), and every metric they emit is shown on
//! it or watched by an alarm.

use std::collections::BTreeSet;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::template::Template;

/// The dashboard's body as deployed in `region` by stack `stack`.
pub fn body(region: &str, stack: &str) -> Result<Value> {
    let template = Template::load()?;
    let dashboard = template
        .resources_of_type("AWS::CloudWatch::Dashboard")
        .map(|(_, d)| d)
        .next()
        .context("the template has no dashboard")?;
    let text = match dashboard
        .get("Properties")
        .and_then(|p| p.get("DashboardBody"))
    {
        Some(serde_norway::Value::Tagged(t)) if t.tag == "Sub" => t
            .value
            .as_str()
            .context("DashboardBody !Sub of a non-string")?
            .to_owned(),
        other => return Err(anyhow!("DashboardBody is no !Sub string: {other:?}")),
    };
    let text = text
        .replace("${AWS::Region}", region)
        .replace("${AWS::StackName}", stack);
    if let Some(at) = text.find("${") {
        return Err(anyhow!(
            "unresolved {}",
            &text[at..at + 20.min(text.len() - at)]
        ));
    }
    Ok(serde_json::from_str(&text)?)
}

/// The `SpotOptimizer` metric names a dashboard body reads (plain metrics and `SEARCH`es).
pub fn metric_names(body: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for widget in body["widgets"].as_array().into_iter().flatten() {
        for metric in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(items) = metric.as_array() else {
                continue;
            };
            if items.first().and_then(Value::as_str) == Some(spot_domain::metrics::NAMESPACE)
                && let Some(name) = items.get(1).and_then(Value::as_str)
            {
                names.insert(name.to_owned());
            }
            if let Some(expression) = items.first().and_then(|m| m["expression"].as_str()) {
                for part in expression.split("MetricName=\"").skip(1) {
                    names.extend(part.split('"').next().map(str::to_owned));
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use spot_domain::metrics::name::ALL;

    fn alarmed() -> BTreeSet<String> {
        Template::load()
            .unwrap()
            .resources_of_type("AWS::CloudWatch::Alarm")
            .filter_map(|(_, alarm)| {
                let props = alarm.get("Properties")?;
                (props.get("Namespace")?.as_str()? == spot_domain::metrics::NAMESPACE)
                    .then(|| props.get("MetricName")?.as_str().map(str::to_owned))?
            })
            .collect()
    }

    #[test]
    fn the_dashboard_shows_only_emitted_metrics_and_every_one_is_seen() {
        let body = body("eu-west-1", "prod").unwrap();
        let shown = metric_names(&body);
        let emitted: BTreeSet<String> = ALL.iter().map(|n| (*n).to_owned()).collect();
        let unknown: Vec<&String> = shown.difference(&emitted).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard reads metrics nobody emits: {unknown:?}"
        );
        let watched: BTreeSet<String> = shown.union(&alarmed()).cloned().collect();
        let unseen: Vec<&String> = emitted.difference(&watched).collect();
        assert!(
            unseen.is_empty(),
            "emitted, on no dashboard or alarm: {unseen:?}"
        );
        // The sagas' outcomes, quarantines, waste by kind and enforcement are all there.
        for name in [
            "SwitchCompleted",
            "SwapCompleted",
            "FailoverCompleted",
            "SagaRolledBack",
            "PoolQuarantine",
            "WasteOpenMonthlyUsd",
            "WasteRemovedMonthlyUsd",
            "UnauthorizedInstances",
            "InstancesEnforced",
        ] {
            assert!(shown.contains(name), "{name} not on the dashboard");
        }
    }

    #[test]
    fn every_widget_is_in_the_stacks_region_with_unique_expression_ids() {
        let body = body("eu-west-1", "prod").unwrap();
        let widgets = body["widgets"].as_array().unwrap();
        assert!(widgets.len() >= 8);
        for w in widgets.iter().filter(|w| w["type"] == "metric") {
            assert_eq!(w["properties"]["region"], "eu-west-1", "{w}");
            let metrics = w["properties"]["metrics"].as_array().unwrap();
            assert!(
                metrics.iter().all(Value::is_array),
                "each metric is an array: {w}"
            );
            let ids: Vec<&str> = w["properties"]["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m[0]["id"].as_str())
                .collect();
            let unique: BTreeSet<&&str> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "{w}");
            assert!(
                ids.iter()
                    .all(|id| id.starts_with(|c: char| c.is_ascii_lowercase())),
                "CloudWatch ids start with a lowercase letter: {ids:?}"
            );
        }
        // CloudWatch's limit on a dashboard body.
        assert!(body.to_string().len() < 1_000_000);
    }
}
