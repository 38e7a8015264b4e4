//! What a scheduled run covers: accounts, regions and the mode of each, from the request (a
//! schedule's event or a direct `{"accounts", "regions", "mode"}`), the registry and the settings.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::account::{Access, Account, AccountView, Environment};
use crate::governance::mode::{LiveSwitch, Mode};
use crate::ids::Field;

/// A direct invocation. Unknown fields are refused, so a typo never widens or narrows a run silently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub accounts: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    pub mode: Option<Mode>,
    /// The fan-out execution this invocation serves (its `Map` state passes it): it names the
    /// sessions in the members' CloudTrail.
    pub execution: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid request: {0}")]
pub struct RequestError(pub String);

impl RequestError {
    pub fn error_name(&self) -> crate::ErrorName {
        crate::ErrorName::InvalidRequest
    }
}

impl RunRequest {
    /// An EventBridge schedule (`source: aws.events`) runs the default scope; any other input must
    /// be a run request.
    pub fn parse(input: Value) -> Result<Self, RequestError> {
        if input.get("source").and_then(Value::as_str) == Some("aws.events") {
            return Ok(Self::default());
        }
        if input.is_null() {
            return Ok(Self::default());
        }
        let request: Self =
            serde_json::from_value(input).map_err(|e| RequestError(e.to_string()))?;
        check_scope(request.accounts.as_deref(), request.regions.as_deref())?;
        if let Some(execution) = &request.execution {
            Field::ExecutionName
                .check(execution)
                .map_err(|e| RequestError(e.to_string()))?;
        }
        Ok(request)
    }
}

/// Most accounts one request may name (an organisation's worth; more is a mistake).
pub const MAX_ACCOUNTS: usize = 5000;
/// Most regions one request may name (AWS has fewer).
pub const MAX_REGIONS: usize = 64;

/// A request's accounts and regions: each well-formed, each list non-empty when given and bounded.
pub fn check_scope(
    accounts: Option<&[String]>,
    regions: Option<&[String]>,
) -> Result<(), RequestError> {
    for (list, max, field) in [
        (accounts, MAX_ACCOUNTS, Field::AccountId),
        (regions, MAX_REGIONS, Field::Region),
    ] {
        let Some(list) = list else { continue };
        if list.is_empty() {
            return Err(RequestError(
                "an empty list scans nothing; omit it for the default".into(),
            ));
        }
        if list.len() > max {
            return Err(RequestError(format!(
                "{} {field}s: at most {max} per request",
                list.len()
            )));
        }
        for value in list {
            field
                .check(value)
                .map_err(|e| RequestError(e.to_string()))?;
        }
    }
    Ok(())
}

/// One account and region to scan, how to reach it, and in which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub access: Access,
    pub mode: Mode,
    /// The fan-out execution, when the run serves one (names the member sessions).
    pub execution: Option<String>,
}

/// An account the run was asked to cover but cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub account: String,
    pub reason: String,
}

/// The deployment's settings that shape a run.
#[derive(Debug, Clone)]
pub struct Defaults<'a> {
    /// The account the function runs in.
    pub home: &'a str,
    /// `REGIONS`, or the function's own region: for accounts whose item names none.
    pub regions: &'a [String],
    pub switch: &'a LiveSwitch,
}

/// The targets of `request`: every registered account plus the home account by default, each in the
/// regions of its registry item, else the default regions; a request narrows accounts and regions
/// and may lower the mode.
pub fn targets(
    request: &RunRequest,
    registry: &[Account],
    defaults: &Defaults<'_>,
) -> (Vec<Target>, Vec<Unreachable>) {
    let accounts: BTreeSet<String> = match &request.accounts {
        Some(accounts) => accounts.iter().cloned().collect(),
        None => registry
            .iter()
            .map(|a| a.account_id.clone())
            .chain([defaults.home.to_owned()])
            .collect(),
    };
    let mut targets = Vec::new();
    let mut unreachable = Vec::new();
    for account in accounts {
        let item = registry.iter().find(|a| a.account_id == account);
        if item.is_none() && account != defaults.home {
            // Own credentials would scan the home account under another account's name.
            unreachable.push(Unreachable {
                account,
                reason: "not in the accounts table".into(),
            });
            continue;
        }
        let view = AccountView::new(&account, item.cloned(), Environment::Prod);
        let access = match view.access(defaults.home) {
            Ok(access) => access,
            Err(e) => {
                unreachable.push(Unreachable {
                    account,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let regions: Vec<String> = match (&request.regions, item.map(|a| &a.regions)) {
            (Some(regions), _) => regions.clone(),
            (None, Some(own)) if !own.is_empty() => own.clone(),
            _ => defaults.regions.to_vec(),
        };
        let mode = defaults.switch.effective(request.mode, &account);
        for region in regions {
            targets.push(Target {
                account: account.clone(),
                region,
                access: access.clone(),
                mode,
                execution: request.execution.clone(),
            });
        }
    }
    (targets, unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOME: &str = "111111111111";

    fn member(id: &str, regions: &[&str]) -> Account {
        Account {
            account_id: id.into(),
            environment: Environment::Prod,
            role_arn: Some(format!("arn:aws:iam::{id}:role/SpotOptimizerMember")),
            external_id: Some("x".into()),
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn run(
        request: &RunRequest,
        registry: &[Account],
        switch: &LiveSwitch,
    ) -> (Vec<Target>, Vec<Unreachable>) {
        let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        targets(
            request,
            registry,
            &Defaults {
                home: HOME,
                regions: &regions,
                switch,
            },
        )
    }

    #[test]
    fn a_schedule_scans_every_registered_account_and_home_in_their_regions() {
        let request = RunRequest::parse(
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        )
        .unwrap();
        let registry = [
            member("222222222222", &["ap-south-1"]),
            member("333333333333", &[]),
        ];
        let (targets, unreachable) = run(&request, &registry, &LiveSwitch::default());
        let got: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.account.clone(), t.region.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (HOME.into(), "us-east-1".into()),
                (HOME.into(), "eu-west-1".into()),
                ("222222222222".into(), "ap-south-1".into()),
                ("333333333333".into(), "us-east-1".into()),
                ("333333333333".into(), "eu-west-1".into()),
            ]
        );
        assert!(unreachable.is_empty());
        assert_eq!(targets[0].access, Access::Own);
        assert!(matches!(targets[2].access, Access::AssumeRole { .. }));
        assert!(targets.iter().all(|t| t.mode == Mode::Audit));
    }

    #[test]
    fn a_request_narrows_scope_and_live_needs_the_switch_and_the_allowlist() {
        let registry = [member("222222222222", &["ap-south-1"])];
        let switch = LiveSwitch {
            mode: Mode::Live,
            live_accounts: BTreeSet::from(["222222222222".to_owned()]),
        };
        let request = RunRequest::parse(
            json!({"accounts": ["222222222222", HOME], "regions": ["us-west-2"], "mode": "live"}),
        )
        .unwrap();
        let (targets, _) = run(&request, &registry, &switch);
        assert_eq!(targets.len(), 2);
        assert!(targets.iter().all(|t| t.region == "us-west-2"));
        let mode = |a: &str| targets.iter().find(|t| t.account == a).unwrap().mode;
        assert_eq!(mode("222222222222"), Mode::Live);
        assert_eq!(mode(HOME), Mode::Audit, "home is not on the allowlist");
    }

    #[test]
    fn an_unregistered_account_is_reported_not_scanned_with_own_credentials() {
        let request = RunRequest::parse(json!({"accounts": ["999999999999"]})).unwrap();
        let (targets, unreachable) = run(&request, &[], &LiveSwitch::default());
        assert!(targets.is_empty());
        assert_eq!(unreachable[0].account, "999999999999");
    }

    #[test]
    fn bad_requests_are_refused() {
        for bad in [
            json!({"acounts": ["222222222222"]}),
            json!({"accounts": ["22"]}),
            json!({"regions": ["Mars"]}),
            json!({"mode": "yolo"}),
            json!({"accounts": []}),
            json!("scan please"),
            json!({"execution": "a:b"}),
            json!({"execution": "x".repeat(81)}),
        ] {
            let err = RunRequest::parse(bad.clone()).unwrap_err();
            assert_eq!(err.error_name(), crate::ErrorName::InvalidRequest, "{bad}");
        }
        assert_eq!(RunRequest::parse(json!({})).unwrap(), RunRequest::default());
        let fanned = RunRequest::parse(json!({"accounts": ["222222222222"], "execution": "run-1"}));
        assert_eq!(fanned.unwrap().execution.as_deref(), Some("run-1"));
        assert_eq!(
            RunRequest::parse(Value::Null).unwrap(),
            RunRequest::default()
        );
    }
}
