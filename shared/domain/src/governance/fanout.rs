//! A scheduled function fanned out on Step Functions (`statemachines/scheduled-fanout.asl.json`):
//! the `fanout` function lists the targets (account × region) the function would cover, a `Map`
//! state invokes the function once per target with a bounded concurrency, and the `fanout`
//! function sums up what came back. Only failures travel back whole through the state (a
//! succeeded target is its count of actions), so a run over thousands of targets stays far below
//! Step Functions' 256 KiB.

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::governance::scope::{self, Defaults, RunRequest};

/// One account and region, as the `Map` state iterates them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    pub account: String,
    pub region: String,
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

/// The targets `request` covers, as the function itself would resolve them.
pub fn list(
    request: &RunRequest,
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
