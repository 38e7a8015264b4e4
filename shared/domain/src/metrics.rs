//! CloudWatch embedded metric format (EMF): a JSON log line that CloudWatch turns into a metric,
//! with no API call and no extra latency.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "SpotOptimizer";

/// Every metric the functions emit, by the name the dashboard and the alarms read (a test checks
/// that each is on the dashboard or an alarm, and that these name everything they read).
pub mod name {
    pub const POOL_QUARANTINE: &str = "PoolQuarantine";
    pub const DECISION_NOT_PUBLISHED: &str = "DecisionNotPublished";
    pub const SWITCH_COMPLETED: &str = "SwitchCompleted";
    pub const SWAP_COMPLETED: &str = "SwapCompleted";
    pub const ROLLBACK_INCOMPLETE: &str = "RollbackIncomplete";
    pub const FAILOVER_COMPLETED: &str = "FailoverCompleted";
    pub const FAILOVER_FAILED: &str = "FailoverFailed";
    pub const STANDBY_LAUNCHED: &str = "StandbyLaunched";
    pub const SAGA_ROLLED_BACK: &str = "SagaRolledBack";
    pub const HIBERNATION_SAVED_USD: &str = "HibernationSavedUsd";
    pub const HIBERNATION_ASLEEP_HOURS: &str = "HibernationAsleepHours";
    pub const WASTE_OPEN_MONTHLY_USD: &str = "WasteOpenMonthlyUsd";
    pub const WASTE_REMOVED_MONTHLY_USD: &str = "WasteRemovedMonthlyUsd";
    pub const UNAUTHORIZED_INSTANCES: &str = "UnauthorizedInstances";
    pub const INSTANCES_ENFORCED: &str = "InstancesEnforced";
    pub const NOTICE_NOT_PUBLISHED: &str = "NoticeNotPublished";
    pub const SWITCH_DOWNTIME_MS: &str = "SwitchDowntimeMs";
    pub const NET_SAVING_PER_HOUR_USD: &str = "NetSavingPerHourUsd";
    pub const SHADOW_SAVING_PER_HOUR_USD: &str = "ShadowSavingPerHourUsd";
    /// The circuit breaker paused an account (alarmed).
    pub const CIRCUIT_BREAKER_OPENED: &str = "CircuitBreakerOpened";

    pub const ALL: [&str; 20] = [
        POOL_QUARANTINE,
        DECISION_NOT_PUBLISHED,
        SWITCH_COMPLETED,
        SWAP_COMPLETED,
        ROLLBACK_INCOMPLETE,
        FAILOVER_COMPLETED,
        FAILOVER_FAILED,
        STANDBY_LAUNCHED,
        SAGA_ROLLED_BACK,
        HIBERNATION_SAVED_USD,
        HIBERNATION_ASLEEP_HOURS,
        WASTE_OPEN_MONTHLY_USD,
        WASTE_REMOVED_MONTHLY_USD,
        UNAUTHORIZED_INSTANCES,
        INSTANCES_ENFORCED,
        NOTICE_NOT_PUBLISHED,
        SWITCH_DOWNTIME_MS,
        NET_SAVING_PER_HOUR_USD,
        SHADOW_SAVING_PER_HOUR_USD,
        CIRCUIT_BREAKER_OPENED,
    ];
}

/// One EMF line counting `value` of `metric`, with `dimensions` (low cardinality: they each make a
/// billed metric) and `properties` (searchable in Logs Insights, free).
pub fn count(
    metric: &str,
    value: u64,
    dimensions: &[(&str, &str)],
    properties: &[(&str, Value)],
    at: DateTime<Utc>,
) -> String {
    measure(
        metric,
        Value::from(value),
        "Count",
        dimensions,
        properties,
        at,
    )
}

/// One EMF line of `value` of `metric` in `unit` (`None` for dollars: CloudWatch has no currency).
pub fn measure(
    metric: &str,
    value: Value,
    unit: &str,
    dimensions: &[(&str, &str)],
    properties: &[(&str, Value)],
    at: DateTime<Utc>,
) -> String {
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": [{"Name": metric, "Unit": unit}],
            }],
        }),
    );
    for (k, v) in properties {
        line.insert((*k).into(), v.clone());
    }
    for (k, v) in dimensions {
        line.insert((*k).into(), Value::from(*v));
    }
    line.insert(metric.into(), value);
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn emits_a_valid_emf_document() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let line = count(
            "PoolQuarantine",
            1,
            &[("Action", "quarantined")],
            &[("pool", json!("us-east-1#use1-az4#m5.large"))],
            at,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], at.timestamp_millis());
        let def = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(def["Namespace"], "SpotOptimizer");
        assert_eq!(def["Dimensions"], json!([["Action"]]));
        assert_eq!(def["Metrics"][0]["Name"], "PoolQuarantine");
        // Every dimension and metric named in the directive must be a top-level member.
        assert_eq!(v["Action"], "quarantined");
        assert_eq!(v["PoolQuarantine"], 1);
        assert_eq!(v["pool"], "us-east-1#use1-az4#m5.large");
    }
}
