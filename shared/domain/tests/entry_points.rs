//! Every entry point's parsing, against arbitrary JSON and against mutations of real inputs (the
//! sample events in `events/`, requests as the router and the state machines write them): it never
//! panics, and it answers with a value that keeps every identifier rule or with one of the
//! documented error names. What the handlers do with a parsed input is tested beside them; this is
//! the gate in front of all of them.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use spot_domain::ErrorName;
use spot_domain::Signal;
use spot_domain::governance::scope::RunRequest;
use spot_domain::ids::Field;
use spot_domain::saga::StepError;
use spot_domain::saga::approval::ApprovalInput;
use spot_domain::saga::route::RouteRequest;
use spot_domain::saga::swap::{DiscoverInput, SwapInput, SwapRollbackInput, SwapRollbackView};
use spot_domain::saga::switch::{PlanInput, RollbackInput, RollbackView, SwitchInput};

fn sample(file: &str) -> Value {
    let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

/// Real inputs of every entry point, as their callers write them.
fn samples() -> Vec<(&'static str, Value)> {
    let switch = json!({"account_id": "123456789012", "region": "us-east-1",
        "instance_id": "i-0123456789abcdef0", "mode": "live",
        "target": {"instance_types": ["m6i.large"], "az_ids": ["use1-az1"]},
        "settings": {"wait_seconds": 1, "image_checks": 3, "health_checks": 3}});
    let swap = json!({"account_id": "123456789012", "region": "us-east-1", "asg_name": "web",
        "mode": "shadow", "settings": {"wait_seconds": 1}});
    vec![
        ("event", sample("spot-interruption-warning.json")),
        ("event", sample("rebalance-recommendation.json")),
        (
            "run",
            json!({"accounts": ["123456789012"], "regions": ["us-east-1"], "mode": "live"}),
        ),
        (
            "route",
            json!({"accounts": ["123456789012"], "instance_id": "i-0123456789abcdef0"}),
        ),
        (
            "switch-plan",
            json!({"request": switch, "execution": "switch-1"}),
        ),
        (
            "switch-step",
            json!({"state": {"request": switch}, "execution": "switch-1"}),
        ),
        (
            "switch-rollback",
            json!({"state": {"request": switch, "error": {"Error": "x"}},
            "execution": "switch-1", "phase": "finish"}),
        ),
        (
            "swap-discover",
            json!({"request": swap, "execution": "swap-1"}),
        ),
        (
            "swap-step",
            json!({"state": {"request": swap}, "execution": "swap-1", "phase": "restore"}),
        ),
        (
            "swap-rollback",
            json!({"state": {"request": swap}, "execution": "swap-1"}),
        ),
        (
            "approval",
            json!({"execution": "switch-1", "token": "t", "saga": "AtomicSwitch",
            "account_id": "123456789012", "region": "us-east-1", "target": "i-0123456789abcdef0",
            "risk": "HIGH", "reasons": ["a"], "summary": "s", "timeout_seconds": 60}),
        ),
    ]
}

/// Arbitrary JSON: short and very long strings (with the characters that break parsers), huge
/// and negative numbers, nesting.
fn any_json() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[a-z0-9:./ -]{0,24}".prop_map(Value::from),
        (0usize..6000, any::<char>()).prop_map(|(n, c)| Value::from(c.to_string().repeat(n))),
        any::<String>().prop_map(Value::from),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text,
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_-]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every path to a value in `v`.
fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let mut p = at.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(x, p, out);
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            let mut p = at.clone();
            p.push(i.to_string());
            out.push(p.clone());
            paths(x, p, out);
        }),
        _ => {}
    }
}

/// `v` with the value at `path` replaced by `with` (or removed when `with` is `None`).
fn mutate(mut v: Value, path: &[String], with: Option<Value>) -> Value {
    let Some((last, parents)) = path.split_last() else {
        return with.unwrap_or(Value::Null);
    };
    let mut at = &mut v;
    for key in parents {
        at = match at {
            Value::Object(m) => m.get_mut(key).expect("a path of v"),
            Value::Array(a) => &mut a[key.parse::<usize>().expect("an index")],
            _ => unreachable!("paths only go through containers"),
        };
    }
    match (at, with) {
        (Value::Object(m), Some(x)) => {
            m.insert(last.clone(), x);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(x)) => a[last.parse::<usize>().expect("an index")] = x,
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("an index"));
        }
        _ => unreachable!("paths only go through containers"),
    }
    v
}

fn step_error_is_invalid_request(e: &StepError) {
    assert_eq!(e.name, ErrorName::InvalidRequest, "{}", e.message);
    assert!(e.message.chars().count() < 2000, "a bounded message");
}

/// Parses `input` as entry point `kind` parses it, and checks the answer.
fn gate(kind: &str, input: Value) {
    match kind {
        "event" => match Signal::parse(input) {
            Ok(s) => {
                for (field, value) in [
                    (Field::EventId, &s.event_id),
                    (Field::AccountId, &s.account),
                    (Field::Region, &s.region),
                    (Field::InstanceId, &s.instance_id),
                ] {
                    assert!(field.accepts(value), "{field} `{value}` got through");
                }
            }
            Err(e) => assert!(
                matches!(
                    e.error_name(),
                    ErrorName::InvalidEvent | ErrorName::UnsupportedEvent
                ),
                "{e}"
            ),
        },
        "run" => {
            if let Err(e) = RunRequest::parse(input) {
                assert_eq!(e.error_name(), ErrorName::InvalidRequest);
            }
        }
        "route" => {
            if let Err(e) = RouteRequest::parse(input) {
                assert_eq!(e.error_name(), ErrorName::InvalidRequest);
            }
        }
        "switch-plan" => {
            if let Ok(i) = serde_json::from_value::<PlanInput>(input) {
                match i.request.validate() {
                    Ok(()) => assert!(Field::InstanceId.accepts(&i.request.instance_id)),
                    Err(e) => step_error_is_invalid_request(&e),
                }
            }
        }
        "switch-step" => {
            if let Ok(i) = serde_json::from_value::<SwitchInput>(input)
                && let Err(e) = i.state.request.validate()
            {
                step_error_is_invalid_request(&e);
            }
        }
        "switch-rollback" => {
            if let Ok(i) = serde_json::from_value::<RollbackInput>(input) {
                let _ = RollbackView::read(&i.state);
            }
        }
        "swap-discover" => {
            if let Ok(i) = serde_json::from_value::<DiscoverInput>(input)
                && let Err(e) = i.request.validate()
            {
                step_error_is_invalid_request(&e);
            }
        }
        "swap-step" => {
            if let Ok(i) = serde_json::from_value::<SwapInput>(input)
                && let Err(e) = i.state.request.validate()
            {
                step_error_is_invalid_request(&e);
            }
        }
        "swap-rollback" => {
            if let Ok(i) = serde_json::from_value::<SwapRollbackInput>(input) {
                let _ = SwapRollbackView::read(&i.state);
            }
        }
        "approval" => {
            let _ = serde_json::from_value::<ApprovalInput>(input);
        }
        other => panic!("no gate for {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_any_entry_point(input in any_json()) {
        for (kind, _) in samples() {
            gate(kind, input.clone());
        }
    }

    #[test]
    fn mutated_real_inputs_are_parsed_or_refused_by_name(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        with in prop::option::weighted(0.85, any_json()),
    ) {
        let all = samples();
        let (kind, input) = all[which.index(all.len())].clone();
        let mut every = Vec::new();
        paths(&input, Vec::new(), &mut every);
        let path = every[at.index(every.len())].clone();
        gate(kind, mutate(input, &path, with));
    }
}

#[test]
fn the_real_inputs_pass_their_gates() {
    for (kind, input) in samples() {
        gate(kind, input.clone());
    }
    for (kind, input) in samples() {
        let parsed_ok = match kind {
            "event" => Signal::parse(input).is_ok(),
            "run" => RunRequest::parse(input).is_ok(),
            "route" => RouteRequest::parse(input).is_ok(),
            "switch-plan" => serde_json::from_value::<PlanInput>(input)
                .is_ok_and(|i| i.request.validate().is_ok()),
            "switch-step" => serde_json::from_value::<SwitchInput>(input).is_ok(),
            "switch-rollback" => serde_json::from_value::<RollbackInput>(input).is_ok(),
            "swap-discover" => serde_json::from_value::<DiscoverInput>(input)
                .is_ok_and(|i| i.request.validate().is_ok()),
            "swap-step" => serde_json::from_value::<SwapInput>(input).is_ok(),
            "swap-rollback" => serde_json::from_value::<SwapRollbackInput>(input).is_ok(),
            "approval" => serde_json::from_value::<ApprovalInput>(input).is_ok(),
            _ => false,
        };
        assert!(
            parsed_ok,
            "the sample {kind} input is refused: the mutations start from nothing"
        );
    }
}
