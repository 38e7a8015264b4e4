//! The scheduled functions fanned out on Step Functions: moto executes
//! statemachines/scheduled-fanout.asl.json, whose `Map` state runs the real `waste-scanner`
//! binary once per account and region, bounded by the `fanout` function's concurrency.

use std::time::Duration;

use anyhow::Result;
use aws_sdk_ec2::types::DomainType;
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{TimeDelta, Utc};
use serde_json::json;
use spot_aws::WasteTable;
use spot_domain::governance::waste::WasteStatus;
use testbed::governance::Flows;
use testbed::saga::SagaBed;
use testbed::{Bed, Fault};

const MACHINE: &str = "WasteScanFanOutStateMachine";

fn accounts(n: usize) -> Vec<String> {
    let base = 500_000_000_000 + (Utc::now().timestamp_micros() as u64 % 400_000_000) * 1000;
    (0..n).map(|i| format!("{:012}", base + i as u64)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_accounts_in_two_regions_are_each_scanned_once_and_the_failures_named() -> Result<()>
{
    let saga = SagaBed::start_machine(MACHINE, "fanout", &[], None).await?;
    let members = accounts(50);
    saga.register_members(&members, &["us-east-1", "us-west-2"])
        .await?;
    for account in &members {
        // One idle address each, in us-east-1: what a scan of that target finds.
        aws_sdk_ec2::Client::new(&saga.bed.member(account).await?)
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await?;
    }
    let (throttled, denied) = (&members[7], &members[23]);
    saga.proxy
        .forwarder
        .inject(Fault::new("AssumeRole", "Throttling", 400).when_body_contains(throttled));
    saga.proxy
        .forwarder
        .inject(Fault::new("AssumeRole", "AccessDenied", 403).when_body_contains(denied));

    let name = saga.name("run");
    let arn = saga
        .start_execution(&name, &json!({"accounts": members}))
        .await?;
    let e = saga.wait(&arn, Duration::from_secs(600)).await?;

    // The run succeeds; its summary counts every target and names the four that failed
    assert_eq!(
        e.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?}",
        e.error,
        e.cause
    );
    let summary = &e.output;
    assert_eq!(summary["function"], "waste-scanner");
    assert_eq!(summary["targets"], 100, "{summary}");
    assert_eq!(summary["succeeded"], 96, "{summary}");
    let failed: Vec<(String, String, String)> = summary["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (text("account"), text("region"), text("error"))
        })
        .collect();
    let mut expected: Vec<(String, String)> = [throttled, denied]
        .iter()
        .flat_map(|a| {
            [
                ((*a).clone(), "us-east-1".to_owned()),
                ((*a).clone(), "us-west-2".to_owned()),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(
        failed
            .iter()
            .map(|(a, r, _)| (a.clone(), r.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    for (account, _, error) in &failed {
        let why = if account == throttled {
            "Throttling"
        } else {
            "AccessDenied"
        };
        assert!(error.contains(why), "{account}: {error}");
    }

    // Each target ran once: one invocation per account and region, two of the lister
    let deliveries = saga.deliveries().await?;
    assert_eq!(
        deliveries.get("waste-scanner"),
        Some(&100),
        "{deliveries:?}"
    );
    assert_eq!(deliveries.get("fanout"), Some(&2), "{deliveries:?}");
    // Every reachable account's address was found, and nothing of the two others recorded
    let records = WasteTable::new(saga.bed.dynamodb(), saga.tables.name("WasteTable"))
        .all()
        .await?;
    for account in &members {
        let found = records.iter().filter(|r| &r.account == account).count();
        let want = usize::from(account != throttled && account != denied);
        assert_eq!(found, want, "{account}");
    }
    // The member sessions name the function and this execution in the members' CloudTrail
    let sessions = saga.proxy.forwarder.assumed_roles();
    let member = &members[0];
    assert!(
        sessions
            .iter()
            .any(|r| r.starts_with(&Bed::role_arn(member))
                && r.ends_with(&format!(" waste-scanner@{name}"))),
        "{sessions:?}"
    );
    // A Map state never holds more than the failures whole: the state stays small
    assert!(e.largest_state < 64 * 1024, "{} bytes", e.largest_state);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_fails_the_run_before_any_target_and_names_why() -> Result<()> {
    let saga = SagaBed::start_machine(MACHINE, "fanout-bad", &[], None).await?;
    let name = saga.name("bad");
    let arn = saga
        .start_execution(&name, &json!({"accounts": ["12345"]}))
        .await?;
    let e = saga.wait(&arn, Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.error.as_deref(), Some("InvalidRequest"), "{:?}", e.cause);
    assert_eq!(saga.deliveries().await?.get("waste-scanner"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_asked_to_stay_in_audit_deletes_nothing_though_the_deployment_is_live() -> Result<()>
{
    let members = accounts(1);
    let member = members[0].as_str();
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", member)];
    let overrides: Vec<(&str, &str, &str)> = live
        .iter()
        .map(|(k, v)| ("waste-scanner", *k, *v))
        .collect();
    let saga = SagaBed::start_machine(MACHINE, "fanout-mode", &overrides, None).await?;
    saga.register_members(&members, &["us-east-1"]).await?;
    let ec2 = aws_sdk_ec2::Client::new(&saga.bed.member(member).await?);
    let ip = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await?
        .allocation_id()
        .unwrap_or_default()
        .to_owned();
    // Scanned 14 and 7 days ago (in-process: the binaries read the system clock): its deletion
    // is due now
    let flows = Flows::new(&saga.tables, &saga.bed.endpoint).await;
    let request = json!({"accounts": [member], "regions": ["us-east-1"]});
    for days in [14, 7] {
        flows
            .scanner(&live, Utc::now() - TimeDelta::days(days))?
            .run(request.clone(), "test-request")
            .await?;
    }
    let records = WasteTable::new(saga.bed.dynamodb(), saga.tables.name("WasteTable"));
    let record = || async {
        let all = records.all().await?;
        anyhow::Ok(all.into_iter().find(|r| r.resource_id == ip))
    };
    let scheduled = record().await?.expect("recorded");
    assert_eq!(scheduled.status, WasteStatus::ScheduledDelete);
    assert!(scheduled.delete_after.is_some_and(|at| at <= Utc::now()));
    let kept = || async {
        let found = ec2.describe_addresses().allocation_ids(&ip).send().await?;
        anyhow::Ok(found.addresses().len() == 1)
    };

    // A mode the scanner does not have fails the run before any target
    let mut shadow = request.clone();
    shadow["mode"] = json!("shadow");
    let arn = saga.start_execution(&saga.name("shadow"), &shadow).await?;
    let e = saga.wait(&arn, Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.error.as_deref(), Some("InvalidRequest"), "{:?}", e.cause);
    assert!(e.cause.unwrap_or_default().contains("shadow"));
    assert_eq!(saga.deliveries().await?.get("waste-scanner"), None);

    // Asked to stay in audit: the target runs in audit, so the due deletion does not happen and
    // is unscheduled (audit keeps nothing scheduled)
    let mut audit = request.clone();
    audit["mode"] = json!("audit");
    let arn = saga.start_execution(&saga.name("audit"), &audit).await?;
    let e = saga.wait(&arn, Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{:?}", e.cause);
    assert_eq!(e.output["succeeded"], 1, "{}", e.output);
    assert!(kept().await?, "released in audit");
    assert_eq!(record().await?.unwrap().status, WasteStatus::Flagged);

    // Asked nothing of the mode: the deployment's, live, which schedules it again with a full
    // grace (the audit run took the first one back), so still nothing is released
    let arn = saga.start_execution(&saga.name("live"), &request).await?;
    let e = saga.wait(&arn, Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{:?}", e.cause);
    let again = record().await?.unwrap();
    assert_eq!(again.status, WasteStatus::ScheduledDelete);
    assert!(
        again
            .delete_after
            .is_some_and(|at| at > Utc::now() + TimeDelta::days(6))
    );
    assert!(kept().await?);
    assert_eq!(saga.deliveries().await?.get("waste-scanner"), Some(&2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enforcer_the_reconciler_and_the_router_run_fanned_out_too() -> Result<()> {
    let members = accounts(3);
    // Each asked to stay in its function's own lower mode, which each invocation accepts
    for (machine, mode) in [
        ("SecurityEnforcementFanOutStateMachine", "audit"),
        ("HibernationFanOutStateMachine", "audit"),
        ("RouterFanOutStateMachine", "shadow"),
    ] {
        let saga = SagaBed::start_machine(machine, "fanout-others", &[], None).await?;
        saga.register_members(&members, &["us-east-1", "us-west-2"])
            .await?;
        let name = saga.name("run");
        let arn = saga
            .start_execution(&name, &json!({"accounts": members, "mode": mode}))
            .await?;
        let e = saga.wait(&arn, Duration::from_secs(300)).await?;
        assert_eq!(
            e.status,
            ExecutionStatus::Succeeded,
            "{machine}: {:?} {:?}",
            e.error,
            e.cause
        );
        assert_eq!(e.output["targets"], 6, "{machine}: {}", e.output);
        assert_eq!(e.output["succeeded"], 6, "{machine}: {}", e.output);
        let function = e.output["function"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            saga.deliveries().await?.get(&function),
            Some(&6),
            "{machine}: one invocation per target"
        );
    }
    Ok(())
}
