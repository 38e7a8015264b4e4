//! Unit tests of the flow over in-memory ports. The proof against AWS APIs is in `tests/`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::TimeZone;
use serde_json::json;
use spot_domain::instance::Placement;
use spot_domain::testing::{MemoryInstances, MemoryReactions, MemoryRegistry, MemoryStore};
use spot_domain::{Access, Account, FixedClock};

use super::*;

const HOME: &str = "123456789012";
const MEMBER: &str = "222222222222";
const LAB: &str = "333333333333";
const INSTANCE: &str = "i-0123456789abcdef0";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 30).unwrap()
}

fn config() -> Config {
    Config::from_env(&Env(|k: &str| match k {
        "QUARANTINE_TABLE" => Some("q".into()),
        "ACCOUNTS_TABLE" => Some("a".into()),
        "ORGANIZATION_ID" => Some("o-abcdefghij".into()),
        "MEMBER_EXTERNAL_ID" => Some("org-ext".into()),
        _ => None,
    }))
    .unwrap()
}

type TestHandler =
    Handler<MemoryRegistry, MemoryInstances, MemoryStore, FixedClock, MemoryReactions>;

/// A Spot clone of the atomic switch, replacing `ORIGIN`.
const CLONE: &str = "i-0c10e00000000000c";
const ORIGIN: &str = "i-0a0000000000000a0";

fn handler() -> TestHandler {
    let accounts = [
        Account {
            account_id: MEMBER.into(),
            environment: Environment::Prod,
            role_arn: Some(format!("arn:aws:iam::{MEMBER}:role/SpotOptimizerMember")),
            external_id: Some("ext".into()),
            regions: Vec::new(),
        },
        Account {
            account_id: LAB.into(),
            environment: Environment::Lab,
            role_arn: Some(format!("arn:aws:iam::{LAB}:role/SpotOptimizerMember")),
            external_id: None,
            regions: Vec::new(),
        },
    ];
    let placement = Placement {
        instance_type: "m5.large".into(),
        az_name: "us-east-1d".into(),
        az_id: "use1-az4".into(),
        state: "running".into(),
        lifecycle: Some("spot".into()),
        tags: Default::default(),
    };
    let mut clone = placement.clone();
    clone.tags = [
        ("ManagedBy", "SpotOptimizer"),
        ("CreatedVia", "AtomicSwitch"),
        ("SourceInstance", ORIGIN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Handler {
        registry: MemoryRegistry(
            accounts
                .into_iter()
                .map(|a| (a.account_id.clone(), a))
                .collect(),
        ),
        instances: MemoryInstances {
            instances: HashMap::from([(INSTANCE.into(), placement), (CLONE.into(), clone)]),
            ..MemoryInstances::default()
        },
        store: MemoryStore::default(),
        clock: FixedClock(now()),
        reactions: MemoryReactions::default(),
        home_account: HOME.into(),
        config: Config {
            failover_state_machine: Some(
                "arn:aws:states:us-east-1:123456789012:stateMachine:f".into(),
            ),
            ..config()
        },
    }
}

fn event(id: &str, detail_type: &str, account: &str) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": account,
        "time": "2026-11-20T10:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:{account}:instance/{INSTANCE}")],
        "detail": {"instance-id": INSTANCE, "instance-action": "terminate"}
    })
}

const WARNING: &str = "EC2 Spot Instance Interruption Warning";
const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";

#[tokio::test]
async fn each_signal_kind_quarantines_the_pool_by_az_id() {
    for detail_type in [WARNING, REBALANCE] {
        let h = handler();
        let response = h.handle(event("e1", detail_type, HOME)).await.unwrap();
        assert_eq!(response.action, Action::Quarantined);
        assert_eq!(
            response.pool.as_deref(),
            Some("us-east-1#use1-az4#m5.large")
        );
        assert_eq!(response.signal, detail_type);
        let expected = Utc
            .with_ymd_and_hms(2026, 11, 20, 10, 0, 0)
            .unwrap()
            .timestamp()
            + 1_296_000;
        assert_eq!(response.expires_at.unwrap().timestamp(), expected);
        assert_eq!(h.store.snapshot().len(), 1);
    }
}

#[tokio::test]
async fn a_second_event_extends_and_a_redelivery_is_a_duplicate() {
    let h = handler();
    h.handle(event("e1", REBALANCE, HOME)).await.unwrap();
    let second = h.handle(event("e2", WARNING, HOME)).await.unwrap();
    assert_eq!(second.action, Action::Extended);
    assert_eq!(second.interruptions, Some(2));
    let puts = h.store.puts.load(Ordering::SeqCst);
    let again = h.handle(event("e1", REBALANCE, HOME)).await.unwrap();
    assert_eq!(again.action, Action::Duplicate);
    assert_eq!(again.interruptions, Some(2));
    assert_eq!(
        h.store.puts.load(Ordering::SeqCst),
        puts,
        "a duplicate writes nothing"
    );
}

#[tokio::test]
async fn lab_events_never_write_a_quarantine() {
    let h = handler();
    let response = h.handle(event("e1", WARNING, LAB)).await.unwrap();
    assert_eq!(response.action, Action::IgnoredLab);
    assert_eq!(response.failover, None, "an unmanaged instance");
    assert!(h.store.snapshot().is_empty());
    assert!(h.reactions.started.lock().unwrap().is_empty());
}

fn for_instance(mut e: Value, instance: &str) -> Value {
    e["detail"]["instance-id"] = json!(instance);
    e
}

#[tokio::test]
async fn a_managed_instance_fails_over_once_whatever_the_signals_and_the_decision_is_published() {
    let h = handler();
    let rebalance = "EC2 Instance Rebalance Recommendation";
    let first = h
        .handle(for_instance(event("e1", rebalance, MEMBER), CLONE))
        .await
        .unwrap();
    let failover = first.failover.clone().unwrap();
    assert!(failover.started);
    assert_eq!(failover.workload, ORIGIN);
    assert_eq!(failover.execution, format!("failover-{MEMBER}-{CLONE}"));
    // The warning that follows, and its redelivery: the same failover, nothing new started.
    for id in ["e2", "e2"] {
        let again = h
            .handle(for_instance(event(id, WARNING, MEMBER), CLONE))
            .await
            .unwrap();
        assert_eq!(again.failover.as_ref().map(|f| f.started), Some(false));
    }
    let started = h.reactions.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    let (_, request) = &started[0];
    assert_eq!(request.signal, SignalKind::RebalanceRecommendation);
    assert_eq!(
        request.pool.as_ref().unwrap().to_string(),
        "us-east-1#use1-az4#m5.large"
    );
    assert_eq!(request.received_at, now());
    let published = h.reactions.published.lock().unwrap().clone();
    let types: Vec<&str> = published.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "Spot Pool Quarantined",
            "Spot Failover Started",
            "Spot Pool Quarantine Extended",
            "Spot Signal Duplicate",
        ]
    );
    assert_eq!(
        published[1].1["failover"]["execution"],
        json!(failover.execution)
    );
    assert_eq!(published[0].1["decided_at"], json!(now()));
    // Not an instance of ours: quarantine only.
    let plain = h.handle(event("e3", WARNING, MEMBER)).await.unwrap();
    assert_eq!(plain.failover, None);
}

#[tokio::test]
async fn a_lab_workload_is_replaced_without_quarantining_its_pool() {
    let h = handler();
    let response = h
        .handle(for_instance(event("e1", WARNING, LAB), CLONE))
        .await
        .unwrap();
    assert_eq!(response.action, Action::IgnoredLab);
    assert!(response.failover.unwrap().started);
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn a_rebalance_only_quarantines_when_so_configured_and_no_machine_means_no_failover() {
    let mut h = handler();
    h.config.rebalance_action = RebalanceAction::Quarantine;
    let r = h
        .handle(for_instance(
            event("e1", "EC2 Instance Rebalance Recommendation", MEMBER),
            CLONE,
        ))
        .await
        .unwrap();
    assert_eq!((r.action, r.failover), (Action::Quarantined, None));
    let w = h
        .handle(for_instance(event("e2", WARNING, MEMBER), CLONE))
        .await
        .unwrap();
    assert!(w.failover.unwrap().started, "the warning still fails over");
    h.config.failover_state_machine = None;
    let none = h
        .handle(for_instance(event("e3", WARNING, HOME), CLONE))
        .await
        .unwrap();
    assert_eq!(none.failover, None);
}

#[tokio::test]
async fn a_failover_that_cannot_start_fails_the_signal_after_the_quarantine_is_written() {
    let mut h = handler();
    h.reactions.fail_starts = true;
    let err = h
        .handle(for_instance(event("e1", WARNING, MEMBER), CLONE))
        .await
        .unwrap_err();
    assert_eq!(err.error_name(), ErrorName::Transient);
    assert_eq!(
        h.store.snapshot().len(),
        1,
        "the pool is quarantined anyway"
    );
    // Lambda's retry: a duplicate for the quarantine, the start tried again.
    h.reactions.fail_starts = false;
    let retried = h
        .handle(for_instance(event("e1", WARNING, MEMBER), CLONE))
        .await
        .unwrap();
    assert_eq!(retried.action, Action::Duplicate);
    assert!(retried.failover.unwrap().started);
}

#[tokio::test]
async fn members_are_read_through_their_role_and_unregistered_ones_by_the_member_role_convention() {
    let h = handler();
    h.handle(event("e1", WARNING, MEMBER)).await.unwrap();
    h.handle(event("e2", WARNING, "444444444444"))
        .await
        .unwrap();
    let lookups = h.instances.lookups.lock().unwrap().clone();
    assert_eq!(
        lookups[0].0,
        Access::AssumeRole {
            role_arn: format!("arn:aws:iam::{MEMBER}:role/SpotOptimizerMember"),
            external_id: Some("ext".into())
        }
    );
    assert_eq!(
        lookups[1].0,
        Access::AssumeRole {
            role_arn: "arn:aws:iam::444444444444:role/SpotOptimizerMember".into(),
            external_id: Some("org-ext".into())
        }
    );
    let record = h.store.snapshot().into_values().next().unwrap();
    assert_eq!(record.source_accounts.len(), 2);
}

#[tokio::test]
async fn an_unregistered_account_outside_the_organisation_is_refused_and_nothing_written() {
    let mut h = handler();
    h.config.unregistered.organization_id = None;
    let err = h
        .handle(event("e1", WARNING, "444444444444"))
        .await
        .unwrap_err();
    assert_eq!(err.error_name(), ErrorName::AccountMisconfigured);
    assert!(err.to_string().contains("not registered"), "{err}");
    assert!(h.instances.lookups.lock().unwrap().is_empty());
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn unregistered_accounts_follow_the_default_environment() {
    let mut h = handler();
    h.config.default_environment = Environment::Lab;
    let response = h
        .handle(event("e1", WARNING, "444444444444"))
        .await
        .unwrap();
    assert_eq!(response.action, Action::IgnoredLab);
}

#[tokio::test]
async fn a_vanished_instance_is_ignored_and_writes_nothing() {
    let h = handler();
    let mut e = event("e1", WARNING, HOME);
    e["detail"]["instance-id"] = json!("i-00000000000000000");
    let response = h.handle(e).await.unwrap();
    assert_eq!(response.action, Action::IgnoredInstanceNotFound);
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn bad_input_is_an_error_with_a_stable_name_and_writes_nothing() {
    let h = handler();
    let mut missing_instance = event("e1", WARNING, HOME);
    missing_instance["detail"] = json!({"instance-action": "terminate"});
    let cases = [
        (json!("not an event"), ErrorName::InvalidEvent),
        (missing_instance, ErrorName::InvalidEvent),
        (
            event("e2", "EC2 Instance State-change Notification", HOME),
            ErrorName::UnsupportedEvent,
        ),
    ];
    for (bad, name) in cases {
        let err = h.handle(bad).await.unwrap_err();
        assert_eq!(err.error_name(), name, "{err}");
        assert_eq!(Diagnostic::from(err).error_type, name.as_str());
    }
    assert!(h.instances.lookups.lock().unwrap().is_empty());
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn a_member_registered_without_role_is_misconfigured() {
    let mut h = handler();
    h.registry.0.get_mut(MEMBER).unwrap().role_arn = None;
    let err = h.handle(event("e1", WARNING, MEMBER)).await.unwrap_err();
    assert_eq!(err.error_name(), ErrorName::AccountMisconfigured);
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn lost_races_are_retried_then_reported_as_transient() {
    let h = handler();
    h.store.conflicts.store(2, Ordering::SeqCst);
    let response = h.handle(event("e1", WARNING, HOME)).await.unwrap();
    assert_eq!(response.action, Action::Quarantined);

    let h = handler();
    h.store
        .conflicts
        .store(spot_domain::MAX_WRITE_ATTEMPTS, Ordering::SeqCst);
    let err = h.handle(event("e1", WARNING, HOME)).await.unwrap_err();
    assert_eq!(err.error_name(), ErrorName::Transient);
    assert!(h.store.snapshot().is_empty());
}

#[tokio::test]
async fn an_old_replayed_event_is_stale() {
    let h = handler();
    let mut e = event("e1", WARNING, HOME);
    e["time"] = json!("2026-10-01T00:00:00Z");
    assert_eq!(h.handle(e).await.unwrap().action, Action::IgnoredStale);
    assert!(h.store.snapshot().is_empty());
}

#[test]
fn config_requires_tables_and_validates_numbers() {
    let base = |k: &str| match k {
        "QUARANTINE_TABLE" => Some("q".to_owned()),
        "ACCOUNTS_TABLE" => Some("a".to_owned()),
        _ => None,
    };
    let c = Config::from_env(&Env(base)).unwrap();
    assert_eq!(c.default_environment, Environment::Prod);
    assert_eq!(c.policy.interruption.num_seconds(), 1_296_000);
    assert!(
        Config::from_env(&Env(|k: &str| (k == "QUARANTINE_TABLE").then(|| "q".into()))).is_err()
    );
    let with = |key: &'static str, value: &'static str| {
        move |k: &str| {
            if k == key {
                Some(value.to_owned())
            } else {
                base(k)
            }
        }
    };
    assert_eq!(
        Config::from_env(&Env(with("QUARANTINE_SECONDS_REBALANCE", "3600")))
            .unwrap()
            .policy
            .rebalance
            .num_seconds(),
        3600
    );
    assert!(Config::from_env(&Env(with("QUARANTINE_SECONDS_REBALANCE", "-1"))).is_err());
    assert!(Config::from_env(&Env(with("QUARANTINE_SECONDS_INTERRUPTION", "soon"))).is_err());
    assert!(Config::from_env(&Env(with("DEFAULT_ENVIRONMENT", "STAGING"))).is_err());
    assert_eq!(c.accounts.cache, Accounts::DEFAULT_CACHE);
    assert_eq!(
        Config::from_env(&Env(with("ACCOUNT_CACHE_SECONDS", "0")))
            .unwrap()
            .accounts
            .cache,
        TimeDelta::zero(),
        "0 turns the cache off"
    );
    assert_eq!(
        Config::from_env(&Env(with("DEFAULT_ENVIRONMENT", "lab")))
            .unwrap()
            .default_environment,
        Environment::Lab
    );
}

#[tokio::test]
async fn events_dated_after_their_receipt_are_refused_and_near_ones_count_from_receipt() {
    // `now()` is 10:00:30; the rule is 15 days from the event, never from later than receipt.
    for future in [
        "9999-12-31T23:59:59Z",
        "2026-11-21T10:00:00Z",
        "2026-11-20T10:06:00Z",
    ] {
        let h = handler();
        let mut e = event("e1", WARNING, HOME);
        e["time"] = json!(future);
        let err = h.handle(e).await.unwrap_err();
        assert_eq!(err.error_name(), ErrorName::InvalidEvent, "{future}: {err}");
        assert!(err.to_string().contains("after its receipt"), "{err}");
        assert!(h.instances.lookups.lock().unwrap().is_empty());
        assert!(h.store.snapshot().is_empty());
    }
    let h = handler();
    let mut e = event("e1", WARNING, HOME);
    e["time"] = json!("2026-11-20T10:03:00Z");
    let response = h.handle(e).await.unwrap();
    assert_eq!(response.action, Action::Quarantined);
    assert_eq!(
        response.expires_at.unwrap(),
        now() + h.config.policy.interruption,
        "from receipt, not from the skewed event time"
    );
}

#[tokio::test]
async fn over_long_fields_are_invalid_events_and_never_reach_aws() {
    let long = "a".repeat(5000);
    let cases = [
        ("region", json!(format!("us-{long}-1"))),
        ("region", json!(long.clone())),
        ("id", json!(long.clone())),
        ("account", json!("1".repeat(5000))),
    ];
    for (field, value) in cases {
        let h = handler();
        let mut e = event("e1", WARNING, HOME);
        e[field] = value;
        let err = h.handle(e).await.unwrap_err();
        assert_eq!(err.error_name(), ErrorName::InvalidEvent, "{field}");
        assert!(
            err.to_string().len() < 400,
            "{field}: the message shows a bounded value"
        );
        assert!(h.instances.lookups.lock().unwrap().is_empty(), "{field}");
    }
    for detail in [
        json!({"instance-id": format!("i-{}", "0".repeat(100_000)), "instance-action": "terminate"}),
        json!({"instance-id": INSTANCE, "instance-action": long}),
    ] {
        let h = handler();
        let mut e = event("e1", WARNING, HOME);
        e["detail"] = detail;
        let err = h.handle(e).await.unwrap_err();
        assert_eq!(err.error_name(), ErrorName::InvalidEvent);
        assert!(h.instances.lookups.lock().unwrap().is_empty());
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A value to put in place of a field: well-formed ones of other kinds, long ones, odd ones.
    fn replacement() -> impl Strategy<Value = Option<Value>> {
        prop::option::weighted(
            0.9,
            prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                (0usize..6000, any::<char>())
                    .prop_map(|(n, c)| Value::from(c.to_string().repeat(n))),
                prop::sample::select(vec![
                    "us-east-1",
                    "i-0123abcd",
                    MEMBER,
                    LAB,
                    "2026-11-20T10:00:00Z",
                    "9999-12-31T23:59:59Z",
                    "1970-01-01T00:00:00Z",
                    "stop",
                    "aws.ec2",
                    "EC2 Instance Rebalance Recommendation",
                ])
                .prop_map(Value::from),
                Just(json!({"instance-id": INSTANCE})),
                Just(json!([])),
            ],
        )
    }

    fn field() -> impl Strategy<Value = (bool, &'static str)> {
        prop::sample::select(vec![
            (false, "id"),
            (false, "detail-type"),
            (false, "source"),
            (false, "account"),
            (false, "time"),
            (false, "region"),
            (false, "detail"),
            (false, "version"),
            (true, "instance-id"),
            (true, "instance-action"),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever a broken forwarder or an attacker sends: no panic, a documented answer, and
        /// nothing looked up or written unless the event was a well-formed signal.
        #[test]
        fn a_mutated_event_gets_a_documented_answer_and_writes_only_when_valid(
            mutations in prop::collection::vec((field(), replacement()), 1..4),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let h = handler();
            let mut e = event("e1", WARNING, HOME);
            for ((in_detail, name), with) in mutations {
                let target = if in_detail { &mut e["detail"] } else { &mut e };
                if let Value::Object(m) = target {
                    match with {
                        Some(v) => { m.insert(name.to_owned(), v); }
                        None => { m.remove(name); }
                    }
                }
            }
            match runtime.block_on(h.handle(e)) {
                Ok(r) => prop_assert!(matches!(
                    r.action,
                    Action::Quarantined | Action::Extended | Action::Duplicate | Action::IgnoredLab
                        | Action::IgnoredInstanceNotFound | Action::IgnoredStale
                )),
                Err(err) => {
                    prop_assert!(
                        matches!(err.error_name(), ErrorName::InvalidEvent | ErrorName::UnsupportedEvent),
                        "{}", err
                    );
                    prop_assert!(h.instances.lookups.lock().unwrap().is_empty());
                    prop_assert!(h.store.snapshot().is_empty());
                }
            }
        }
    }
}
