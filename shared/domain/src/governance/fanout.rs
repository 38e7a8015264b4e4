//! A scheduled function fanned out on Step Functions (`statemachines/scheduled-fanout.asl.json`):
//! the `fanout` function lists the targets (account × region) the function would cover, a `Map`
//! state invokes the function once per target with a bounded concurrency, and the `fanout`
//! function sums up what came back. Only failures travel back whole through the state (a
//! succeeded target is its count of actions), so a run over thousands of targets stays far below
//! Step Functions' 256 KiB.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::account::Account;
use crate::governance::mode::Mode;
use crate::governance::scope::{self, Defaults, RequestError, RunRequest};
use crate::saga::step::SagaMode;

/// The functions a fan-out machine runs (its `FunctionName` substitution).
pub const FANNED_OUT: [&str; 4] = [
    "waste-scanner",
    "security-enforcer",
    "hibernation-reconciler",
    "optimizer",
];

/// One account and region, as the `Map` state iterates them, with the request's mode: each
/// invocation is asked what the whole run was asked (`null`: the function's own mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub account: String,
    pub region: String,
    pub mode: Option<String>,
}

/// What the state machine iterates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetList {
    pub targets: Vec<TargetRef>,
    /// Accounts asked for that cannot be covered, with why (`account: reason`).
    pub unreachable: Vec<String>,
    /// The `Map` state's `MaxConcurrencyPath`.
    pub max_concurrency: u32,
}

/// Takes the `mode` out of a run request for `function`, checked as that function reads it
/// (`audit` or `live` for the scheduled governance functions, `shadow` or `live` for the router):
/// every target is then invoked with it, so a run asked to stay in audit or shadow does, whatever
/// the deployment's mode. The rest of the request is the scope, read by [`RunRequest::parse`].
pub fn take_mode(function: &str, request: &mut Value) -> Result<Option<String>, RequestError> {
    if !FANNED_OUT.contains(&function) {
        return Err(RequestError(format!(
            "no fan-out runs {function:?} (only {})",
            FANNED_OUT.join(", ")
        )));
    }
    let Some(mode) = request.as_object_mut().and_then(|o| o.remove("mode")) else {
        return Ok(None);
    };
    if mode.is_null() {
        return Ok(None);
    }
    let word = if function == "optimizer" {
        serde_json::from_value::<SagaMode>(mode).map(SagaMode::as_str)
    } else {
        serde_json::from_value::<Mode>(mode).map(Mode::as_str)
    }
    .map_err(|e| RequestError(format!("mode for {function}: {e}")))?;
    Ok(Some(word.to_owned()))
}

/// The targets `request` covers, as the function itself would resolve them, each to run in `mode`.
pub fn list(
    request: &RunRequest,
    mode: Option<&str>,
    registry: &[Account],
    defaults: &Defaults<'_>,
    max_concurrency: u32,
) -> TargetList {
    let (targets, unreachable) = scope::targets(request, registry, defaults);
    TargetList {
        targets: targets
            .into_iter()
            .map(|t| TargetRef {
                account: t.account,
                region: t.region,
                mode: mode.map(str::to_owned),
            })
            .collect(),
        unreachable: unreachable
            .into_iter()
            .map(|u| format!("{}: {}", u.account, u.reason))
            .collect(),
        max_concurrency,
    }
}

/// One target's outcome as the `Map` state keeps it: its actions when it succeeded; where and why
/// when it failed (its report's first error, or the invocation's error after the retries).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TargetOutcome {
    Failed {
        account: String,
        region: String,
        error: String,
    },
    Done {
        actions: u64,
    },
}

/// A failed target, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub account: String,
    pub region: String,
    pub error: String,
}

/// What a fanned-out run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub function: String,
    pub targets: usize,
    pub succeeded: usize,
    pub actions: u64,
    pub failed: Vec<Failed>,
    pub unreachable: Vec<String>,
}

/// Sums up a run's outcomes.
pub fn summarise(
    function: &str,
    outcomes: Vec<TargetOutcome>,
    unreachable: Vec<String>,
) -> Summary {
    let targets = outcomes.len();
    let mut actions = 0;
    let mut failed = Vec::new();
    for outcome in outcomes {
        match outcome {
            TargetOutcome::Done { actions: n } => actions += n,
            TargetOutcome::Failed {
                account,
                region,
                error,
            } => failed.push(Failed {
                account,
                region,
                error,
            }),
        }
    }
    failed.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    Summary {
        function: function.into(),
        targets,
        succeeded: targets - failed.len(),
        actions,
        failed,
        unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Environment;
    use crate::governance::mode::LiveSwitch;
    use serde_json::json;

    #[test]
    fn lists_every_registered_account_in_its_regions_and_names_the_unreachable() {
        let registry = vec![
            Account {
                account_id: "222222222222".into(),
                environment: Environment::Prod,
                role_arn: Some("arn:aws:iam::222222222222:role/M".into()),
                external_id: None,
                regions: vec!["eu-west-1".into()],
            },
            Account {
                account_id: "333333333333".into(),
                environment: Environment::Prod,
                role_arn: None,
                external_id: None,
                regions: Vec::new(),
            },
        ];
        let regions = vec!["us-east-1".to_owned(), "us-west-2".to_owned()];
        let list = list(
            &RunRequest::default(),
            Some("audit"),
            &registry,
            &Defaults {
                home: "111111111111",
                regions: &regions,
                switch: &LiveSwitch::default(),
            },
            10,
        );
        let names: Vec<String> = list
            .targets
            .iter()
            .map(|t| format!("{}/{}", t.account, t.region))
            .collect();
        assert_eq!(
            names,
            [
                "111111111111/us-east-1",
                "111111111111/us-west-2",
                "222222222222/eu-west-1"
            ]
        );
        assert_eq!(list.unreachable.len(), 1);
        assert!(list.unreachable[0].starts_with("333333333333: "));
        assert_eq!(list.max_concurrency, 10);
        assert!(
            list.targets
                .iter()
                .all(|t| t.mode.as_deref() == Some("audit"))
        );
    }

    #[test]
    fn the_mode_asked_of_a_run_is_checked_as_its_function_reads_it_and_taken_out_of_the_scope() {
        let mut request = json!({"accounts": ["222222222222"], "mode": "audit"});
        assert_eq!(
            take_mode("waste-scanner", &mut request).unwrap().as_deref(),
            Some("audit")
        );
        assert_eq!(request, json!({"accounts": ["222222222222"]}));
        let mut request = json!({"mode": "shadow"});
        assert_eq!(
            take_mode("optimizer", &mut request).unwrap().as_deref(),
            Some("shadow")
        );
        // Each function's own words: a scanner has no shadow, the router no audit
        assert!(take_mode("security-enforcer", &mut json!({"mode": "shadow"})).is_err());
        assert!(take_mode("optimizer", &mut json!({"mode": "audit"})).is_err());
        assert!(take_mode("waste-scanner", &mut json!({"mode": 3})).is_err());
        // No mode, a null one, a schedule's event: the function's own mode
        assert_eq!(
            take_mode("hibernation-reconciler", &mut json!({})).unwrap(),
            None
        );
        assert_eq!(
            take_mode("waste-scanner", &mut json!({"mode": null})).unwrap(),
            None
        );
        let mut event = json!({"source": "aws.events", "detail": {}});
        assert_eq!(take_mode("waste-scanner", &mut event).unwrap(), None);
        assert!(take_mode("switch-plan", &mut json!({})).is_err());
    }

    #[test]
    fn the_summary_counts_actions_and_names_each_failure() {
        let outcomes: Vec<TargetOutcome> = serde_json::from_value(json!([
            {"actions": 3},
            {"account": "222222222222", "region": "us-east-1", "error": "AccessDenied"},
            {"actions": 0},
            {"account": "111111111111", "region": "eu-west-1", "error": "Throttling"}
        ]))
        .unwrap();
        let s = summarise("waste-scanner", outcomes, vec!["4: x".into()]);
        assert_eq!((s.targets, s.succeeded, s.actions), (4, 2, 3));
        assert_eq!(s.failed[0].account, "111111111111", "sorted");
        assert_eq!(s.failed[1].error, "AccessDenied");
        assert_eq!(s.unreachable, ["4: x"]);
    }
}
