//! The optimizer router: which saga each running instance goes to (the atomic switch for a
//! standalone on-demand instance, one ASG swap per opted-in group, nothing for Spot, Kubernetes
//! nodes or exempt instances, each with its reason), and the execution names that make a re-run
//! start nothing twice.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::governance::mode::Mode;
use crate::governance::scope::RequestError;
use crate::saga::failover;
use crate::saga::step::SagaMode;
use crate::tags::{
    self, CREATED_VIA, EXEMPT_TAG, GROUP_TAG, ON_DEMAND_UNTIL_TAG, REPLICA_TAG, Tags, VIA_FAILOVER,
};

/// A direct invocation (a schedule's event runs the default scope). Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    pub accounts: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    /// Route this one instance only.
    pub instance_id: Option<String>,
    /// `shadow` lowers the deployment's mode; `live` cannot raise it.
    pub mode: Option<SagaMode>,
    /// The fan-out execution this invocation serves (names the member sessions).
    pub execution: Option<String>,
}

impl RouteRequest {
    pub fn parse(input: Value) -> Result<Self, RequestError> {
        if input.is_null() || input.get("source").and_then(Value::as_str) == Some("aws.events") {
            return Ok(Self::default());
        }
        let request: Self =
            serde_json::from_value(input).map_err(|e| RequestError(e.to_string()))?;
        crate::governance::scope::check_scope(
            request.accounts.as_deref(),
            request.regions.as_deref(),
        )?;
        if let Some(id) = &request.instance_id {
            crate::ids::Field::InstanceId
                .check(id)
                .map_err(|e| RequestError(e.to_string()))?;
        }
        Ok(request)
    }

    /// The scope part, as the scheduled-run scaffold reads it (`audit` is the router's shadow).
    pub fn scope(&self) -> Value {
        let mut scope = json!({});
        if let Some(a) = &self.accounts {
            scope["accounts"] = json!(a);
        }
        if let Some(r) = &self.regions {
            scope["regions"] = json!(r);
        }
        if let Some(e) = &self.execution {
            scope["execution"] = json!(e);
        }
        if let Some(m) = self.mode {
            scope["mode"] = json!(match m {
                SagaMode::Shadow => Mode::Audit,
                SagaMode::Live => Mode::Live,
            });
        }
        scope
    }
}

/// The saga mode of a target's effective mode: only a live target switches for real.
pub fn saga_mode(mode: Mode) -> SagaMode {
    SagaMode::of(mode)
}

/// A running instance as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routable {
    pub instance_id: String,
    pub state: String,
    pub spot: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Standalone on-demand: the atomic switch.
    Switch,
    /// Member of this Auto Scaling group: the group's swap (one per group).
    Swap(String),
    /// The serving instance of a standby-replica workload: its standby is kept, and the router
    /// never switches it (replica mode and automatic switching are exclusive).
    Standby,
    Skip(String),
}

/// Where `instance` goes at `now`.
pub fn route(instance: &Routable, now: DateTime<Utc>) -> Route {
    let tags = &instance.tags;
    if instance.state != "running" {
        return Route::Skip(format!("{}, not running", instance.state));
    }
    if let Some(route) = replica_route(tags) {
        return route;
    }
    if instance.spot {
        return Route::Skip("already Spot".into());
    }
    if tags.contains_key(EXEMPT_TAG) {
        return Route::Skip(format!("tagged {EXEMPT_TAG}"));
    }
    if let Some(k) = tags::cluster_tag(tags) {
        return Route::Skip(format!("Kubernetes node (tag {k}): its autoscaler owns it"));
    }
    if let Some(group) = tags.get(GROUP_TAG) {
        return Route::Swap(group.clone());
    }
    match failover::held_until(tags, now) {
        Some(Ok(until)) => {
            return Route::Skip(format!(
                "held on-demand until {until} after repeated interruptions ({ON_DEMAND_UNTIL_TAG})"
            ));
        }
        Some(Err(text)) => {
            return Route::Skip(format!(
                "{ON_DEMAND_UNTIL_TAG} `{text}` is no time: left alone"
            ));
        }
        None => {}
    }
    // An on-demand replacement a failover launched goes back to Spot once no hold keeps it.
    if tags::is_managed(tags) && tags.get(CREATED_VIA).map(String::as_str) != Some(VIA_FAILOVER) {
        return Route::Skip("launched by the optimizer".into());
    }
    Route::Switch
}

/// Where an instance of a standby-replica workload goes: its standby is left to the failover, a
/// serving instance the optimizer launched keeps a standby (Spot or on-demand alike: the router
/// never switches it again), and a workload not yet on Spot takes the atomic switch once, like
/// any other (`None`: the ordinary rules apply).
fn replica_route(tags: &Tags) -> Option<Route> {
    if !tags::replica_mode(tags) && !tags::is_standby(tags) {
        return None;
    }
    if tags.contains_key(EXEMPT_TAG) {
        return Some(Route::Skip(format!("tagged {EXEMPT_TAG}")));
    }
    if tags::is_standby(tags) {
        let primary = tags.get(tags::SOURCE_TAG).map_or("?", String::as_str);
        return Some(Route::Skip(format!(
            "the standby of {primary}: the replica mode keeps it"
        )));
    }
    if tags.contains_key(GROUP_TAG) || tags::cluster_tag(tags).is_some() {
        return Some(Route::Skip(format!(
            "{REPLICA_TAG} is for standalone instances: a group's members stand in for each other"
        )));
    }
    failover::workload(tags).map(|_| Route::Standby)
}

/// The name of the router's request to keep `primary`'s standby: one per target, mode and UTC
/// hour, so a standby lost to anything but a signal (which the failover replaces at once) is back
/// within the hour the router next runs in.
pub fn standby_execution_name(
    account: &str,
    region: &str,
    primary: &str,
    mode: SagaMode,
    now: DateTime<Utc>,
) -> String {
    format!(
        "standby-{account}-{region}-{primary}-{}-{}",
        mode.as_str(),
        now.format("%Y%m%d%H")
    )
}

/// An execution name (at most 80 of `[A-Za-z0-9-_]`) that is the same for the same target, mode
/// and UTC day: Step Functions refuses a second execution of a name, so a re-run (or a retried
/// schedule) starts nothing twice, and a target still on-demand tomorrow is tried again.
pub fn execution_name(
    kind: &str,
    account: &str,
    region: &str,
    target: &str,
    mode: SagaMode,
    now: DateTime<Utc>,
) -> String {
    let clean: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mode = mode.as_str();
    let fixed = format!("{kind}-{account}-{region}--{mode}-{}", now.format("%Y%m%d"));
    let room = 80usize.saturating_sub(fixed.len());
    let target = if clean.len() <= room {
        clean
    } else {
        // Long group names: a prefix and a hash of the whole, so two long names never collide.
        let hash = fnv1a(target.as_bytes());
        format!("{}{hash:08x}", &clean[..room.saturating_sub(8)])
    };
    format!(
        "{kind}-{account}-{region}-{target}-{mode}-{}",
        now.format("%Y%m%d")
    )
}

/// FNV-1a, 32 bits: stable across builds, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn instance(tags: &[(&str, &str)]) -> Routable {
        Routable {
            instance_id: "i-0abc".into(),
            state: "running".into(),
            spot: false,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn route_now(instance: &Routable) -> Route {
        route(
            instance,
            Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap(),
        )
    }

    #[test]
    fn an_on_demand_failover_replacement_is_held_then_goes_back_to_spot() {
        let replacement = [
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "EmergencyFailover"),
        ];
        let mut held = replacement.to_vec();
        held.push((ON_DEMAND_UNTIL_TAG, "2026-12-10T00:00:00Z"));
        match route_now(&instance(&held)) {
            Route::Skip(why) => assert!(why.contains("held on-demand until 2026-12-10"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut over = replacement.to_vec();
        over.push((ON_DEMAND_UNTIL_TAG, "2026-12-01T00:00:00Z"));
        assert_eq!(route_now(&instance(&over)), Route::Switch);
        assert_eq!(route_now(&instance(&replacement)), Route::Switch);
        // The original a failover started under a hold is held too; a garbled hold holds.
        let origin = [(ON_DEMAND_UNTIL_TAG, "next week")];
        assert!(matches!(route_now(&instance(&origin)), Route::Skip(_)));
        // A switch's clone or a swap's member is never routed as a source.
        let clone = [
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "AtomicSwitch"),
        ];
        assert!(matches!(route_now(&instance(&clone)), Route::Skip(_)));
    }

    #[test]
    fn standalone_instances_switch_group_members_swap_and_the_rest_is_skipped_with_a_reason() {
        assert_eq!(route_now(&instance(&[("Name", "db")])), Route::Switch);
        assert_eq!(
            route_now(&instance(&[(GROUP_TAG, "web")])),
            Route::Swap("web".into())
        );
        let skipped = |r: Route, what: &str| match r {
            Route::Skip(why) => assert!(why.contains(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        };
        skipped(
            route_now(&instance(&[
                ("eks:cluster-name", "prod"),
                (GROUP_TAG, "ng"),
            ])),
            "Kubernetes",
        );
        skipped(
            route_now(&instance(&[("karpenter.sh/nodepool", "default")])),
            "Kubernetes",
        );
        skipped(
            route_now(&instance(&[("kubernetes.io/cluster/prod", "owned")])),
            "Kubernetes",
        );
        skipped(route_now(&instance(&[(EXEMPT_TAG, "")])), "exempt");
        skipped(
            route_now(&instance(&[("ManagedBy", "SpotOptimizer")])),
            "optimizer",
        );
        skipped(
            route_now(&Routable {
                spot: true,
                ..instance(&[])
            }),
            "Spot",
        );
        skipped(
            route_now(&Routable {
                state: "stopped".into(),
                ..instance(&[])
            }),
            "not running",
        );
    }

    #[test]
    fn a_replica_workload_keeps_its_standby_and_is_never_switched_again() {
        let opted = ("spot-optimizer:replica", "standby");
        let clone = [
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "AtomicSwitch"),
            ("SourceInstance", "i-0aaaaaaaaaaaaaaaa"),
            opted,
        ];
        let spot = Routable {
            spot: true,
            ..instance(&clone)
        };
        assert_eq!(route_now(&spot), Route::Standby);
        // An on-demand fallback of a replica workload is not switched back: it keeps a standby.
        let fallback = [
            ("ManagedBy", "SpotOptimizer"),
            ("CreatedVia", "EmergencyFailover"),
            ("spot-optimizer:origin", "i-0aaaaaaaaaaaaaaaa"),
            opted,
        ];
        assert_eq!(route_now(&instance(&fallback)), Route::Standby);
        assert_eq!(
            route_now(&instance(&fallback[..3])),
            Route::Switch,
            "without the opt-in it goes back to Spot"
        );
        // The standby itself, a group member, an exempt one: skipped with why.
        let mut standby = fallback.to_vec();
        standby.push(("spot-optimizer:role", "standby"));
        standby.push(("SourceInstance", "i-0bbbbbbbbbbbbbbbb"));
        let skipped = |r: Route, what: &str| match r {
            Route::Skip(why) => assert!(why.contains(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        };
        skipped(
            route_now(&Routable {
                spot: true,
                ..instance(&standby)
            }),
            "standby of i-0bbbbbbbbbbbbbbbb",
        );
        skipped(
            route_now(&instance(&[opted, (GROUP_TAG, "web")])),
            "standalone",
        );
        let mut exempt = clone.to_vec();
        exempt.push((EXEMPT_TAG, ""));
        skipped(route_now(&instance(&exempt)), "exempt");
        // Not yet on Spot: the first switch enrols it.
        assert_eq!(route_now(&instance(&[opted])), Route::Switch);
        let name = standby_execution_name(
            "123456789012",
            "ap-southeast-2",
            "i-0123456789abcdef0",
            SagaMode::Shadow,
            Utc.with_ymd_and_hms(2026, 12, 4, 17, 5, 0).unwrap(),
        );
        assert_eq!(
            name,
            "standby-123456789012-ap-southeast-2-i-0123456789abcdef0-shadow-2026120417"
        );
        assert!(name.len() <= 80);
    }

    #[test]
    fn names_are_stable_per_day_and_fit() {
        let day = Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
        let later = Utc.with_ymd_and_hms(2026, 11, 28, 23, 0, 0).unwrap();
        let a = execution_name(
            "sw",
            "123456789012",
            "us-east-1",
            "i-0abc",
            SagaMode::Shadow,
            day,
        );
        assert_eq!(a, "sw-123456789012-us-east-1-i-0abc-shadow-20261128");
        assert_eq!(
            a,
            execution_name(
                "sw",
                "123456789012",
                "us-east-1",
                "i-0abc",
                SagaMode::Shadow,
                later
            )
        );
        assert_ne!(
            a,
            execution_name(
                "sw",
                "123456789012",
                "us-east-1",
                "i-0abc",
                SagaMode::Live,
                day
            )
        );
        let long = "a-very-long-auto-scaling-group-name/with:odd characters".repeat(3);
        let other = format!("{long}x");
        let n1 = execution_name(
            "asg",
            "123456789012",
            "ap-southeast-2",
            &long,
            SagaMode::Live,
            day,
        );
        let n2 = execution_name(
            "asg",
            "123456789012",
            "ap-southeast-2",
            &other,
            SagaMode::Live,
            day,
        );
        assert!(n1.len() <= 80 && n2.len() <= 80, "{n1}");
        assert_ne!(n1, n2);
        assert!(
            n1.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{n1}"
        );
    }

    #[test]
    fn requests_are_checked_and_lower_the_mode_only() {
        assert_eq!(
            RouteRequest::parse(json!({"source": "aws.events"})).unwrap(),
            RouteRequest::default()
        );
        let r = RouteRequest::parse(
            json!({"accounts": ["123456789012"], "mode": "shadow", "instance_id": "i-0abc1234"}),
        )
        .unwrap();
        assert_eq!(
            r.scope(),
            json!({"accounts": ["123456789012"], "mode": "audit"})
        );
        assert!(RouteRequest::parse(json!({"instance_id": "vol-1"})).is_err());
        assert!(RouteRequest::parse(json!({"mode": "yolo"})).is_err());
        assert!(
            RouteRequest::parse(json!({"acounts": []})).is_err(),
            "typos are refused"
        );
        assert_eq!(saga_mode(Mode::Audit), SagaMode::Shadow);
    }
}
