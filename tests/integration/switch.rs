//! The atomic-switch saga end to end: moto executes statemachines/atomic-switch.asl.json and calls
//! the eight step binaries through the bed's gateway; faults are injected by this test's proxy.
//!
//! Invariants checked after every failure: the source runs (and was never stopped before the
//! clone passed its checks), no clone is left running, no image or snapshot of the switch is left,
//! the ledger says why; every launch went through the gatekeeper.

use spot_domain::ErrorName;
use std::collections::BTreeMap;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use spot_domain::pool::quarantine::QuarantineStore;
use spot_domain::saga::ledger::LedgerStatus;
use testbed::saga::{
    ATOMIC_SWITCH, Execution, Inbox, SagaBed, address_holder, clones, elastic_ip, failed_image,
    impaired_status, initializing_status, launched_from, launches_without_gatekeeper, leftovers,
    price_list, spot_prices, state,
};
use testbed::{Fault, HOME_ACCOUNT, LambdaHost, Launch};

use crate::support::{Item, s};

/// Step binaries' settings for tests: no approval unless a test wants one.
const NO_APPROVAL: &[(&str, &str, &str)] = &[("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL")];

/// The best pool for an m5.large source in the bed: m6i.large (advisor band 2) ranks before
/// m5.large (band 3) at moto's flat Spot price, and use1-az1 before use1-az2 on a tie.
const BEST: &str = "us-east-1#use1-az1#m6i.large";
const SECOND: &str = "us-east-1#use1-az2#m6i.large";

fn request(instance: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": "us-east-1", "instance_id": instance, "mode": mode,
        "target": {"instance_types": ["m5.large", "m6i.large"], "az_ids": ["use1-az1", "use1-az2"]},
        "settings": {"wait_seconds": 1, "image_checks": 5, "health_checks": 3, "approval_timeout_seconds": 60}
    })
}

fn show(e: &Execution) -> String {
    format!(
        "{:?} {:?} {:?} path {:?} output {}",
        e.status, e.error, e.cause, e.path, e.output
    )
}

/// A running on-demand m5.large in us-east-1b (use1-az1).
async fn source(saga: &SagaBed) -> Result<String> {
    Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("Name", "db")
        .tag("Team", "core")
        .run(&saga.bed.ec2())
        .await
}

/// A live switch of a fresh source with `faults` injected, which must fail as `error` and roll
/// back with every invariant of [`assert_rolled_back`]. Returns the bed and the execution.
async fn fails_with(
    label: &str,
    faults: Vec<Fault>,
    error: ErrorName,
) -> Result<(SagaBed, Execution)> {
    let saga = SagaBed::start(label, NO_APPROVAL).await?;
    let source = source(&saga).await?;
    for fault in faults {
        saga.proxy.forwarder.inject(fault);
    }
    let name = saga.name(label);

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.error.as_deref(), Some(error.as_str()), "{}", show(&e));
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    Ok((saga, e))
}

/// The invariants after a failed switch.
async fn assert_rolled_back(
    saga: &SagaBed,
    e: &Execution,
    source: &str,
    name: &str,
    status: LedgerStatus,
) -> Result<()> {
    let ec2 = saga.bed.ec2();
    assert_eq!(e.status, ExecutionStatus::Failed, "{}", show(e));
    assert_eq!(
        e.path.last().map(String::as_str),
        Some("RolledBack"),
        "{}",
        show(e)
    );
    assert_eq!(
        state(&ec2, source).await?,
        InstanceStateName::Running,
        "the source runs"
    );
    for (clone, clone_state) in clones(&ec2, name).await? {
        assert_eq!(
            clone_state,
            InstanceStateName::Terminated,
            "clone {clone} left behind"
        );
    }
    assert_eq!(
        leftovers(&ec2, name).await?,
        (vec![], vec![]),
        "images/snapshots left"
    );
    let record = saga.ledger(name).await?.expect("a ledger record");
    assert_eq!(record.status, status, "{record:?}");
    assert!(record.cause.is_some());
    let tags = source_tags(saga, source).await?;
    assert!(
        !tags.contains_key("spot-optimizer:switch"),
        "marker left on the source: {tags:?}"
    );
    assert_ne!(
        lock_holder(saga, source).await?.as_deref(),
        Some(name),
        "lock left"
    );
    assert_eq!(
        launches_without_gatekeeper(
            &saga.proxy.forwarder.calls(),
            saga.tables.name("QuarantineTable")
        ),
        0
    );
    Ok(())
}

async fn source_tags(saga: &SagaBed, id: &str) -> Result<BTreeMap<String, String>> {
    let answer = saga
        .bed
        .ec2()
        .describe_instances()
        .instance_ids(id)
        .send()
        .await?;
    Ok(answer.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// The approval request of `switch_id`, raw.
async fn approval(saga: &SagaBed, switch_id: &str) -> Result<Item> {
    Ok(saga
        .bed
        .dynamodb()
        .get_item()
        .table_name(saga.tables.name("ApprovalsTable"))
        .key("saga_id", AttributeValue::S(switch_id.into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .unwrap_or_default())
}

/// Who holds the per-instance lock of `instance`.
async fn lock_holder(saga: &SagaBed, instance: &str) -> Result<Option<String>> {
    let key = format!("lock#{HOME_ACCOUNT}#us-east-1#{instance}");
    let item = saga
        .bed
        .dynamodb()
        .get_item()
        .table_name(saga.tables.name("LedgerTable"))
        .key("switch_id", AttributeValue::S(key))
        .consistent_read(true)
        .send()
        .await?
        .item;
    Ok(item.map(|i| s(&i, "owner").to_owned()))
}

/// How many times a step asked EC2 to stop an instance.
fn stop_calls(saga: &SagaBed) -> usize {
    saga.proxy.forwarder.count("StopInstances")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_clone_replaces_the_source_which_is_stopped_only_at_the_end() -> Result<()> {
    let saga = SagaBed::start("switch-ok", NO_APPROVAL).await?;
    let notices = saga.notices().await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let name = saga.name("ok");
    // The first status check still initialises: the Wait/Choice loop goes round once.
    saga.proxy.forwarder.inject(initializing_status().times(1));
    // Real prices: the cheapest pool is not the best once the interruption band weighs in.
    // Scores (price × band penalty): m5.large az1 0.0350 × 1.20 = 0.0420; m6i.large az2
    // 0.0390 × 1.10 = 0.0429; m6i.large az1 0.0400 × 1.10 = 0.0440; m5.large az2 0.0450 × 1.20.
    saga.proxy.forwarder.inject(spot_prices(&[
        ("m6i.large", "us-east-1b", 0.0400),
        ("m6i.large", "us-east-1c", 0.0390),
        ("m5.large", "us-east-1b", 0.0350),
        ("m5.large", "us-east-1c", 0.0450),
    ]));

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let clone = e.output["launch"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(e.output["launch"]["pool"], "us-east-1#use1-az1#m5.large");
    let saving = e.output["launch"]["saving_per_hour"].as_f64().unwrap();
    assert!((saving - (0.096 - 0.035)).abs() < 1e-9, "{saving}");
    // The owner is told, once, what now runs and what it saves.
    let told = notices
        .wait_for(&format!("Switch to Spot of {source}"))
        .await?;
    let message = told["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{clone} (m5.large) runs on Spot"))
            && message.contains("$0.0610 an hour"),
        "{message}"
    );
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "finished");
    assert_eq!(told["MessageAttributes"]["kind"]["Value"], "switch");
    assert_eq!(told["MessageAttributes"]["account"]["Value"], HOME_ACCOUNT);
    assert_eq!(notices.notifications().await?.len(), 1);
    let record = saga.ledger(&name).await?.expect("a ledger record");
    assert_eq!(
        record.downtime_ms, None,
        "no address to move: nothing measured"
    );
    let ranked: Vec<&str> = e.output["plan"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pool"].as_str().unwrap())
        .collect();
    assert_eq!(
        ranked,
        [
            "us-east-1#use1-az1#m5.large",
            "us-east-1#use1-az2#m6i.large",
            "us-east-1#use1-az1#m6i.large",
            "us-east-1#use1-az2#m5.large"
        ]
    );
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    assert_eq!(state(&ec2, &clone).await?, InstanceStateName::Running);
    let answer = ec2.describe_instances().instance_ids(&clone).send().await?;
    let instance = &answer.reservations()[0].instances()[0];
    assert_eq!(
        instance.instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    // Inherited network: the chosen candidate's subnet, the source's security groups.
    let chosen = e.output["plan"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pool"] == e.output["launch"]["pool"])
        .unwrap();
    assert_eq!(instance.subnet_id(), chosen["subnet_id"].as_str());
    let groups = |i: &aws_sdk_ec2::types::Instance| -> Vec<String> {
        i.security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect()
    };
    let answer_source = ec2
        .describe_instances()
        .instance_ids(&source)
        .send()
        .await?;
    assert_eq!(
        groups(instance),
        groups(&answer_source.reservations()[0].instances()[0])
    );
    let tags = source_tags(&saga, &clone).await?;
    assert_eq!(tags["Name"], "db");
    assert_eq!(tags["Team"], "core");
    assert_eq!(tags["ManagedBy"], "SpotOptimizer");
    assert_eq!(tags["CreatedVia"], "AtomicSwitch");
    assert_eq!(tags["SourceInstance"], source);
    // The source is stopped last: every state before CutOver ran with it running.
    let cutover = e.path.iter().position(|s| s == "CutOver").unwrap();
    assert_eq!(e.path[cutover - 1], "Healthy");
    assert_eq!(
        e.path.iter().filter(|s| *s == "CheckHealth").count(),
        2,
        "{:?}",
        e.path
    );
    assert_eq!(stop_calls(&saga), 1);
    assert!(
        e.path.len() <= 30,
        "{} state transitions: {:?}",
        e.path.len(),
        e.path
    );
    let record = saga.ledger(&name).await?.unwrap();
    assert_eq!(record.status, LedgerStatus::Switched);
    assert_eq!(record.new_instance_id.as_deref(), Some(clone.as_str()));
    assert!((record.saving_per_hour.unwrap() - saving).abs() < 1e-9);
    assert_eq!(
        launches_without_gatekeeper(
            &saga.proxy.forwarder.calls(),
            saga.tables.name("QuarantineTable")
        ),
        0
    );
    // The image stays: it is the clone's AMI (and the way back).
    assert_eq!(leftovers(&ec2, &name).await?.0.len(), 1);
    println!(
        "switch: {} states, {} Lambda invocations, {:.1} s (waits of 1 s)",
        e.path.len(),
        e.invocations,
        e.wall.as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_the_counterfactual_saving_and_touches_nothing() -> Result<()> {
    let saga = SagaBed::start("switch-shadow", &[]).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let name = saga.name("shadow");
    // The live on-demand price (here 0.1070, not the shipped table's 0.0960) is the baseline.
    saga.proxy
        .forwarder
        .inject(price_list("m5.large", "us-east-1", 0.107));

    let e = saga.run(&name, &request(&source, "shadow")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.path, ["Plan", "ShadowOrLive", "Shadow"]);
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Running);
    assert!(clones(&ec2, &name).await?.is_empty());
    assert_eq!(leftovers(&ec2, &name).await?, (vec![], vec![]));
    let record = saga.ledger(&name).await?.unwrap();
    assert_eq!(record.status, LedgerStatus::Shadow);
    assert_eq!(
        record.pool.as_ref().map(|p| p.to_string()).as_deref(),
        Some(BEST)
    );
    assert_eq!(record.on_demand_price, Some(0.107));
    // moto quotes every Spot price at 0.00001.
    assert!(
        (record.saving_per_hour.unwrap() - (0.107 - 0.00001)).abs() < 1e-9,
        "{record:?}"
    );
    let mutations: Vec<String> = saga
        .proxy
        .forwarder
        .calls()
        .iter()
        .filter(|c| c.service == "ec2" && !c.operation.starts_with("Describe"))
        .map(ToString::to_string)
        .collect();
    assert!(mutations.is_empty(), "{mutations:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_switch_moves_the_elastic_ip_to_the_clone() -> Result<()> {
    // Default threshold (MEDIUM): the home account counts as PROD and the address adds a concern.
    let topic = format!("approvals-{}", std::process::id());
    let saga = SagaBed::start(
        "switch-approve",
        &[("saga-approval", "APPROVAL_TOPIC_ARN", &Inbox::arn(&topic))],
    )
    .await?;
    let inbox = Inbox::start(&saga.bed, &topic).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let (allocation, _) = elastic_ip(&ec2, &source).await?;
    let name = saga.name("approve");
    let arn = saga
        .start_execution(&name, &request(&source, "live"))
        .await?;

    saga.wait_for_approval(&name).await?;
    let list = saga.spotctl(&["approvals", "list"])?;
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("HIGH") && text.contains("Elastic IP"),
        "{text}"
    );
    // The operators were told, with the commands to answer.
    let told = inbox.wait_for(&name).await?;
    let message = told["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("spotctl approvals approve {name}")),
        "{message}"
    );
    assert!(
        told["Subject"]
            .as_str()
            .unwrap_or_default()
            .contains(&source),
        "{told}"
    );
    assert!(
        clones(&ec2, &name).await?.is_empty(),
        "nothing happens before the answer"
    );
    // Step Functions refuses the answer (an outage): the request stays pending, to answer again.
    saga.proxy
        .forwarder
        .inject(Fault::new("SendTaskSuccess", "ServiceUnavailable", 503).times(5));
    let refused = saga.spotctl(&["approvals", "approve", &name, "--by", "alice"])?;
    assert!(!refused.status.success(), "{refused:?}");
    saga.proxy.forwarder.clear_faults();
    let list = saga.spotctl(&["approvals", "list", "--json"])?;
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("\"status\":\"PENDING\""),
        "{list:?}"
    );
    let approve = saga.spotctl(&["approvals", "approve", &name, "--by", "alice"])?;
    assert!(approve.status.success(), "{approve:?}");
    let again = saga.spotctl(&["approvals", "approve", &name])?;
    assert!(!again.status.success(), "answered once only");
    let e = saga.wait(&arn, std::time::Duration::from_secs(120)).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let clone = e.output["launch"]["instance_id"].as_str().unwrap();
    assert_eq!(
        address_holder(&ec2, &allocation).await?.as_deref(),
        Some(clone)
    );
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    // The downtime is measured and recorded: stop request to the address on the clone.
    let record = saga.ledger(&name).await?.expect("a ledger record");
    let downtime = record
        .downtime_ms
        .expect("measured: the source had an address");
    assert!(downtime < 10_000, "{downtime} ms");
    assert_eq!(e.output["approval"]["approved_by"], "alice");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_switch_changes_nothing() -> Result<()> {
    let saga = SagaBed::start("switch-reject", &[]).await?;
    let source = source(&saga).await?;
    let name = saga.name("reject");
    let arn = saga
        .start_execution(&name, &request(&source, "live"))
        .await?;

    saga.wait_for_approval(&name).await?;
    let reject = saga.spotctl(&["approvals", "reject", &name, "--reason", "change freeze"])?;
    assert!(reject.status.success(), "{reject:?}");
    let e = saga.wait(&arn, std::time::Duration::from_secs(60)).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::ApprovalRejected.as_str()),
        "{}",
        show(&e)
    );
    assert!(!e.path.contains(&"CreateImage".to_owned()), "{:?}", e.path);
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::Rejected).await?;
    let answer = approval(&saga, &name).await?;
    assert_eq!(s(&answer, "status"), "REJECTED");
    assert_eq!(s(&answer, "answer_note"), "change freeze");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_times_out_as_a_rejection() -> Result<()> {
    let saga = SagaBed::start("switch-timeout", &[]).await?;
    let source = source(&saga).await?;
    let name = saga.name("timeout");
    let mut input = request(&source, "live");
    input["settings"]["approval_timeout_seconds"] = json!(2);

    let e = saga.run(&name, &input).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::ApprovalRejected.as_str()),
        "{}",
        show(&e)
    );
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::Rejected).await?;
    let list = saga.spotctl(&["approvals", "list", "--json"])?;
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "closed"
    );
    assert_eq!(s(&approval(&saga, &name).await?, "status"), "EXPIRED");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_best_pool_is_skipped_with_its_reason() -> Result<()> {
    let saga = SagaBed::start("switch-quarantine", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.quarantine(BEST).await?;
    let name = saga.name("quarantine");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.output["launch"]["pool"], SECOND);
    let exclusions = e.output["plan"]["exclusions"].as_array().unwrap();
    assert!(
        exclusions
            .iter()
            .any(|x| x["what"] == BEST && x["reason"] == "quarantined"),
        "{exclusions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_in_the_best_pool_holds_it_and_the_next_pool_is_used() -> Result<()> {
    let saga = SagaBed::start("switch-ice", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy
        .forwarder
        .inject(Fault::new("RunInstances", "InsufficientInstanceCapacity", 500).times(1));
    let name = saga.name("ice");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.output["launch"]["pool"], SECOND);
    assert_eq!(e.output["launch"]["skipped"][0]["what"], BEST);
    assert_eq!(e.output["launch"]["skipped"][0]["reason"], "no_capacity");
    // Every launch path now passes over the pool for a while.
    let hold = saga.quarantine_table().get(&BEST.parse()?).await?.unwrap();
    assert!(hold.is_active(chrono::Utc::now()));
    assert!(hold.expires_at <= chrono::Utc::now() + chrono::TimeDelta::seconds(600));
    assert_eq!(hold.reason, spot_domain::SignalKind::CapacityShortage);
    assert_eq!(clones(&saga.bed.ec2(), &name).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_refuses_the_type_is_passed_over_without_a_capacity_hold() -> Result<()> {
    let saga = SagaBed::start("switch-unsupported", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    // EC2's answer when the image lacks what the type needs (ENA, NVMe, boot mode): another type
    // may take it, and the pool has nothing wrong with its capacity.
    saga.proxy
        .forwarder
        .inject(Fault::new("RunInstances", "InvalidParameterCombination", 400).times(1));
    let name = saga.name("unsupported");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.output["launch"]["pool"], SECOND);
    assert_eq!(e.output["launch"]["skipped"][0]["what"], BEST);
    assert_eq!(e.output["launch"]["skipped"][0]["reason"], "launch_refused");
    assert!(saga.quarantine_table().get(&BEST.parse()?).await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_refused_in_every_pool_rolls_back_as_an_aws_error() -> Result<()> {
    let refused = Fault::new("RunInstances", "Unsupported", 400);
    let (saga, e) =
        fails_with("switch-unsupported-all", vec![refused], ErrorName::AwsError).await?;
    assert!(show(&e).contains("Unsupported"), "{}", show(&e));
    assert_eq!(stop_calls(&saga), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_anywhere_rolls_back() -> Result<()> {
    let ice = Fault::new("RunInstances", "InsufficientInstanceCapacity", 500);
    let (saga, _) =
        fails_with("switch-ice-all", vec![ice], ErrorName::InsufficientCapacity).await?;
    assert_eq!(stop_calls(&saga), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_image_rolls_back() -> Result<()> {
    let refused = Fault::new("CreateImage", "InvalidParameterValue", 400);
    fails_with("switch-create-image", vec![refused], ErrorName::ImageFailed).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_refused_for_the_spot_service_linked_role_is_access_denied_and_rolls_back()
-> Result<()> {
    // What EC2 answers the first Spot launch of an account whose caller may not create
    // AWSServiceRoleForEC2Spot: a permission to fix, not a capacity problem to route around.
    let refused = Fault::new(
        "RunInstances",
        "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
        403,
    );
    let (saga, _) = fails_with("switch-slr", vec![refused], ErrorName::AccessDenied).await?;
    assert_eq!(
        saga.proxy.forwarder.count("RunInstances"),
        1,
        "no other pool tried"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_image_is_removed_with_its_snapshots() -> Result<()> {
    let saga = SagaBed::start("switch-image-failed", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy.forwarder.inject(failed_image().times(1));
    let name = saga.name("image-failed");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::ImageFailed.as_str()),
        "{}",
        show(&e)
    );
    assert!(!e.path.contains(&"LaunchSpot".to_owned()));
    // moto made a real image and snapshot: the rollback removed both.
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    let undone = e.cause.unwrap_or_default();
    assert!(undone.contains("failed"), "{undone}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impaired_status_checks_roll_back_before_the_source_is_touched() -> Result<()> {
    let saga = SagaBed::start("switch-impaired", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy.forwarder.inject(impaired_status());
    let name = saga.name("impaired");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::HealthCheckFailed.as_str()),
        "{}",
        show(&e)
    );
    assert_eq!(
        clones(&saga.bed.ec2(), &name).await?.len(),
        1,
        "one clone was launched"
    );
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    assert_eq!(stop_calls(&saga), 0, "the source was never stopped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_xen_era_source_is_never_planned_onto_a_nitro_type() -> Result<()> {
    // An m4 runs on Xen without ENA or NVMe: its OS has not shown the drivers an m5 needs, and
    // would hang at boot there. An r4 (Xen, ENA optional) can take it.
    let saga = SagaBed::start("switch-xen", NO_APPROVAL).await?;
    let xen = Launch::new("m4.large")
        .in_az("us-east-1b")
        .run(&saga.bed.ec2())
        .await?;
    let mut shadow = request(&xen, "shadow");
    shadow["target"]["instance_types"] = json!(["m5.large", "r4.large"]);
    let name = saga.name("xen");

    let e = saga.run(&name, &shadow).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let plan = &e.output["plan"];
    let planned: Vec<&str> = plan["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["instance_type"].as_str())
        .collect();
    assert!(
        !planned.is_empty() && planned.iter().all(|t| *t == "r4.large"),
        "{plan}"
    );
    let m5 = plan["exclusions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["what"] == "m5.large")
        .unwrap_or_else(|| panic!("m5.large is not excluded: {plan}"));
    assert_eq!(m5["reason"], "incompatible", "{m5}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_wait_grows_with_the_sources_volumes() -> Result<()> {
    let saga = SagaBed::start("switch-big", NO_APPROVAL).await?;
    let big = Launch::new("m5.large")
        .in_az("us-east-1b")
        .volume_gib(500)
        .run(&saga.bed.ec2())
        .await?;
    let mut shadow = request(&big, "shadow");
    // The stack's pacing (120 image checks, 15 s apart: 30 minutes), as a request without its own.
    shadow["settings"] = json!({"wait_seconds": 15});
    let name = saga.name("big");

    let e = saga.run(&name, &shadow).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    // 30 minutes plus 10 s per GiB of 500 GiB: (1800 + 5000) / 15 = 454 checks, or more.
    let checks = e.output["plan"]["settings"]["image_checks"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (454..=1000).contains(&checks),
        "{checks}: {}",
        e.output["plan"]["settings"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_not_yet_visible_is_waited_for_not_rolled_back() -> Result<()> {
    let saga = SagaBed::start("switch-unseen", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    // EC2 is eventually consistent: right after RunInstances, describe calls may answer NotFound.
    saga.proxy
        .forwarder
        .inject(Fault::new("DescribeInstanceStatus", "InvalidInstanceID.NotFound", 400).times(2));
    let name = saga.name("unseen");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(clones(&saga.bed.ec2(), &name).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_refused_right_after_marking_the_source_is_retried_not_rolled_back() -> Result<()> {
    // IAM lets the cut-over stop only a source carrying the switch's mark, which it writes just
    // before: until the tag reaches IAM, StopInstances may be refused.
    let saga = SagaBed::start("switch-mark-lag", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy
        .forwarder
        .inject(Fault::new("StopInstances", "UnauthorizedOperation", 403).times(1));
    let name = saga.name("mark-lag");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(
        state(&saga.bed.ec2(), &source).await?,
        InstanceStateName::Stopped
    );
    assert_eq!(stop_calls(&saga), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_answered_not_found_is_confirmed_so_no_clone_leaks() -> Result<()> {
    // The rollback's TerminateInstances answers NotFound (the clone is not visible to it yet):
    // taken as done, the clone would run on; confirmed with a describe, it is retried.
    let (saga, _) = fails_with(
        "switch-terminate-unseen",
        vec![
            impaired_status(),
            Fault::new("TerminateInstances", "InvalidInstanceID.NotFound", 400).times(1),
        ],
        ErrorName::HealthCheckFailed,
    )
    .await?;
    assert_eq!(saga.proxy.forwarder.count("TerminateInstances"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_checks_that_never_pass_in_time_roll_back() -> Result<()> {
    let saga = SagaBed::start("switch-slow", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy.forwarder.inject(initializing_status());
    let name = saga.name("slow");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::HealthCheckFailed.as_str()),
        "{}",
        show(&e)
    );
    assert_eq!(
        e.path.iter().filter(|s| *s == "CheckHealth").count(),
        3,
        "bounded: {:?}",
        e.path
    );
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    assert_eq!(stop_calls(&saga), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stop_of_the_source_rolls_back() -> Result<()> {
    let saga = SagaBed::start("switch-stop", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy
        .forwarder
        .inject(Fault::new("StopInstances", "IncorrectInstanceState", 400));
    let name = saga.name("stop");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::AwsError.as_str()),
        "{}",
        show(&e)
    );
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_stop_restarts_the_source_with_its_address() -> Result<()> {
    let saga = SagaBed::start("switch-after-stop", NO_APPROVAL).await?;
    let notices = saga.notices().await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let (allocation, _) = elastic_ip(&ec2, &source).await?;
    // The address cannot move: the cut-over fails after the source was stopped.
    saga.proxy
        .forwarder
        .inject(Fault::new("AssociateAddress", "InvalidParameterValue", 400).times(1));
    let name = saga.name("after-stop");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(stop_calls(&saga), 1, "the cut-over had stopped the source");
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    assert_eq!(
        address_holder(&ec2, &allocation).await?.as_deref(),
        Some(source.as_str())
    );
    let undone = e.cause.unwrap_or_default();
    assert!(undone.contains("AssociateAddress"), "{undone}");
    // The owner hears why, and what was put back.
    let told = notices
        .wait_for(&format!("Switch to Spot of {source}"))
        .await?;
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "rolled_back");
    let message = told["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("AssociateAddress") && message.contains(&format!("{source} runs again")),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_step_is_retried_and_the_switch_completes() -> Result<()> {
    let saga = SagaBed::start("switch-throttled", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    // More than the SDK's own three attempts: the step fails `Transient`, the ASL retries it.
    saga.proxy
        .forwarder
        .inject(Fault::new("DescribeInstanceStatus", "RequestLimitExceeded", 503).times(3));
    let name = saga.name("throttled");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(clones(&saga.bed.ec2(), &name).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_source_is_refused_because_it_would_be_priced_as_linux() -> Result<()> {
    let saga = SagaBed::start("switch-windows", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    // EC2 names the billing platform in `platformDetails`; moto leaves it out.
    saga.proxy.forwarder.inject(Fault::rewrite(
        "DescribeInstances",
        "<instanceType>m5.large</instanceType>",
        "<instanceType>m5.large</instanceType><platformDetails>Windows</platformDetails>",
    ));
    let name = saga.name("windows");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::NotEligible.as_str()),
        "{}",
        show(&e)
    );
    assert!(show(&e).contains("runs Windows"), "{}", show(&e));
    assert_eq!(
        state(&saga.bed.ec2(), &source).await?,
        InstanceStateName::Running
    );
    assert!(clones(&saga.bed.ec2(), &name).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_must_not_move_are_refused_and_nothing_changes() -> Result<()> {
    let saga = SagaBed::start("switch-refused", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let in_asg = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("aws:autoscaling:groupName", "web")
        .run(&ec2)
        .await?;
    let spot = Launch::new("m5.large")
        .in_az("us-east-1b")
        .spot()
        .run(&ec2)
        .await?;
    let exempt = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("spot-optimizer:exempt", "")
        .run(&ec2)
        .await?;
    let protected = Launch::new("m5.large")
        .in_az("us-east-1b")
        .run(&ec2)
        .await?;
    ec2.modify_instance_attribute()
        .instance_id(&protected)
        .disable_api_termination(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await?;
    for (what, instance) in [
        ("Auto Scaling", &in_asg),
        ("Spot", &spot),
        ("exempt", &exempt),
        ("termination protection", &protected),
    ] {
        let name = saga.name(&format!("refused-{}", &instance[2..10]));
        let e = saga.run(&name, &request(instance, "live")).await?;
        assert_eq!(
            e.error.as_deref(),
            Some(ErrorName::NotEligible.as_str()),
            "{what}: {}",
            show(&e)
        );
        assert!(
            e.cause.as_deref().unwrap_or_default().contains(what),
            "{what}: {:?}",
            e.cause
        );
        assert_eq!(
            e.path,
            [
                "Plan",
                "Rollback",
                "SourceRestored",
                "RollbackFinish",
                "RolledBack"
            ]
        );
        assert_rolled_back(&saga, &e, instance, &name, LedgerStatus::NotEligible).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clone_keeps_the_sources_posture_and_its_user_data_never_enters_the_history()
-> Result<()> {
    let saga = SagaBed::start("switch-posture", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let source = Launch::new("m5.large")
        .in_az("us-east-1b")
        .monitored()
        .run(&ec2)
        .await?;
    // IMDSv2 only, two hops (containers), tags in the metadata: what a downgrade would lose.
    ec2.modify_instance_metadata_options()
        .instance_id(&source)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
        .http_put_response_hop_limit(2)
        // Named although unchanged: moto forgets the settings a modification leaves out.
        .http_endpoint(aws_sdk_ec2::types::InstanceMetadataEndpointState::Enabled)
        .instance_metadata_tags(aws_sdk_ec2::types::InstanceMetadataTagsState::Enabled)
        .send()
        .await?;
    let secret = "DB_PASSWORD=correct-horse-battery-staple";
    ec2.modify_instance_attribute()
        .instance_id(&source)
        .user_data(
            aws_sdk_ec2::types::SecureBlobAttributeValue::builder()
                // ModifyInstanceAttribute takes the user data base64-encoded inside the blob.
                .value(aws_sdk_ec2::primitives::Blob::new(
                    aws_smithy_types::base64::encode(format!("#!/bin/sh\nexport {secret}\n")),
                ))
                .build(),
        )
        .send()
        .await?;
    let name = saga.name("posture");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let clone = e.output["launch"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let describe = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let answer = ec2.describe_instances().instance_ids(id).send().await?;
            anyhow::Ok(answer.reservations()[0].instances()[0].clone())
        }
    };
    let (was, now) = (
        describe(source.clone()).await?,
        describe(clone.clone()).await?,
    );
    let posture = |i: &aws_sdk_ec2::types::Instance| {
        let m = i.metadata_options().expect("metadata options");
        (
            m.http_tokens().cloned(),
            m.http_put_response_hop_limit(),
            m.http_endpoint().cloned(),
            m.instance_metadata_tags().cloned(),
            i.monitoring().and_then(|m| m.state()).cloned(),
        )
    };
    assert_eq!(posture(&now), posture(&was));
    assert_eq!(
        posture(&now).0,
        Some(aws_sdk_ec2::types::HttpTokensState::Required)
    );
    assert_eq!(
        posture(&now).4,
        Some(aws_sdk_ec2::types::MonitoringState::Enabled)
    );
    let user_data = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let answer = ec2
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                .send()
                .await?;
            anyhow::Ok(
                answer
                    .user_data()
                    .and_then(|u| u.value())
                    .map(str::to_owned),
            )
        }
    };
    let source_data = user_data(source.clone()).await?;
    assert!(source_data.is_some());
    assert_eq!(user_data(clone.clone()).await?, source_data);
    // Neither the secret nor its base64 form is in any event of the execution's history.
    let history: Vec<_> = saga
        .sfn
        .get_execution_history()
        .execution_arn(&e.arn)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    let text = format!("{history:?}");
    assert!(!text.contains("correct-horse"), "user data in the history");
    assert!(
        !text.contains(source_data.as_deref().unwrap()),
        "base64 user data in the history"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_start_or_a_redelivered_launch_launches_once() -> Result<()> {
    let saga = SagaBed::start("switch-dup", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let name = saga.name("dup");
    let input = request(&source, "live");

    // Step Functions: the same name and input while running is the same execution.
    let first = saga.start_execution(&name, &input).await?;
    let second = saga.start_execution(&name, &input).await?;
    assert_eq!(first, second);
    let e = saga
        .wait(&first, std::time::Duration::from_secs(120))
        .await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    // Once ended, the name cannot start another switch.
    assert!(saga.start_execution(&name, &input).await.is_err());

    // Lambda: the launch step delivered again (at least once) finds the clone it launched.
    let mut state = e.output.clone();
    for done in ["launch", "health", "cutover"] {
        state.as_object_mut().unwrap().remove(done);
    }
    let mut launch = saga.held_step("switch-launch", &name).await?;
    let again = launch
        .invoke(&json!({"state": state, "execution": name}))
        .await?
        .ok()?;
    assert_eq!(again["instance_id"], e.output["launch"]["instance_id"]);
    assert_eq!(clones(&ec2, &name).await?.len(), 1, "launched once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_delivered_twice_switches_once_and_rolls_back_once() -> Result<()> {
    // Every invocation runs twice, the second after the first did its work; the saga gets the
    // second answer. Orphans are counted from the calls the steps made and from the image's
    // lineage, not only from the optimizer's own tags.
    let saga = SagaBed::delivering_twice(ATOMIC_SWITCH, "switch-twice", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let count = |operation: &str| saga.proxy.forwarder.count(operation);

    let source = source(&saga).await?;
    let name = saga.name("twice");
    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let delivered = saga.deliveries().await?;
    assert_eq!(
        delivered.values().sum::<u32>() as usize,
        2 * e.invocations,
        "every step ran twice: {delivered:?}"
    );
    assert_eq!(count("RunInstances"), 1, "launched once");
    assert_eq!(count("CreateImage"), 1, "imaged once");
    let image = e.output["image"]["image_id"].as_str().unwrap_or_default();
    let launched = launched_from(&ec2, image).await?;
    assert_eq!(
        launched,
        [e.output["launch"]["instance_id"]
            .as_str()
            .unwrap_or_default()],
        "one instance from the switch's image"
    );
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    let record = saga.ledger(&name).await?.expect("a ledger record");
    assert_eq!(record.status, LedgerStatus::Switched);

    // A rollback delivered twice: one clone, terminated; no image left; the source runs.
    let failing = self::source(&saga).await?;
    saga.proxy.forwarder.inject(impaired_status());
    let before = count("RunInstances");
    let failed_name = saga.name("twice-rollback");
    let failed = saga.run(&failed_name, &request(&failing, "live")).await?;
    assert_eq!(
        failed.error.as_deref(),
        Some(ErrorName::HealthCheckFailed.as_str()),
        "{}",
        show(&failed)
    );
    assert_eq!(count("RunInstances") - before, 1, "launched once");
    assert_rolled_back(
        &saga,
        &failed,
        &failing,
        &failed_name,
        LedgerStatus::RolledBack,
    )
    .await?;
    println!(
        "delivered twice: switch {} invocations, rollback {} invocations",
        e.invocations, failed.invocations
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_every_step_throttled_twice_still_switches_once() -> Result<()> {
    let saga = SagaBed::start("switch-throttle-all", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    for (operation, code, status) in testbed::saga::throttles(testbed::saga::SWITCH_OPERATIONS) {
        saga.proxy
            .forwarder
            .inject(Fault::new(operation, code, status).times(2));
    }
    let name = saga.name("throttled-all");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let throttled = testbed::saga::throttled(&saga.proxy.forwarder.calls());
    assert!(
        throttled.len() >= 10 && throttled.values().all(|n| (1..=2).contains(n)),
        "{throttled:?}"
    );
    assert_eq!(clones(&ec2, &name).await?.len(), 1);
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_killed_right_after_its_aws_call_is_run_again_and_switches_once() -> Result<()> {
    // The process dies after its call reached AWS and before it answered: Step Functions gets
    // Runtime.ExitError and runs the step again, which must find its own work done.
    for (operation, binary) in [
        // The plan's one write: the lock on the source.
        ("PutItem", "switch-plan"),
        ("CreateImage", "switch-image"),
        ("RunInstances", "switch-launch"),
        ("StopInstances", "switch-cutover"),
    ] {
        let saga = SagaBed::start(&format!("kill-{binary}"), NO_APPROVAL).await?;
        let ec2 = saga.bed.ec2();
        let source = source(&saga).await?;
        let name = saga.name("kill");
        saga.kill_after(operation, binary);

        let e = saga.run(&name, &request(&source, "live")).await?;

        assert_eq!(
            e.status,
            ExecutionStatus::Succeeded,
            "{binary}: {}",
            show(&e)
        );
        let runs = saga.deliveries().await?.get(binary).copied().unwrap_or(0);
        assert!(runs >= 2, "{binary} was killed and run again ({runs} runs)");
        let images = saga.proxy.forwarder.count("CreateImage");
        assert_eq!(images, 1, "{binary}: imaged once");
        let image = e.output["image"]["image_id"].as_str().unwrap_or_default();
        let launched = launched_from(&ec2, image).await?.len();
        assert_eq!(
            launched, 1,
            "{binary}: one instance from the switch's image"
        );
        assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
        let record = saga.ledger(&name).await?.expect("a ledger record");
        assert_eq!(record.status, LedgerStatus::Switched, "{binary}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_launch_finds_its_clone_by_client_token_when_the_tag_filter_lags() -> Result<()> {
    let saga = SagaBed::start("switch-token", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    // The best pool has no capacity: the clone goes to the second one; then the launch step dies
    // before answering, and its retry tries the best pool first again.
    saga.proxy
        .forwarder
        .inject(Fault::new("RunInstances", "InsufficientInstanceCapacity", 500).times(1));
    saga.kill_after("RunInstances", "switch-launch");
    // Both lookups by the switch's tag answer nothing yet, as a lagging tag filter may.
    saga.proxy.forwarder.inject(
        Fault::respond(
            "DescribeInstances",
            r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bed</requestId><reservationSet/></DescribeInstancesResponse>"#,
        )
        .when_body_contains("tag%3Aspot-optimizer%3Aswitch")
        .times(2),
    );
    let name = saga.name("token");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.output["launch"]["pool"], SECOND, "{}", show(&e));
    assert_eq!(clones(&saga.bed.ec2(), &name).await?.len(), 1, "one clone");
    assert_eq!(saga.proxy.forwarder.count("RunInstances"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_refused_in_the_plan_fails_named_and_touches_nothing() -> Result<()> {
    let denied = Fault::new("DescribeInstances", "UnauthorizedOperation", 403).times(1);
    let (saga, _) = fails_with("switch-f-plan", vec![denied], ErrorName::AccessDenied).await?;
    for mutation in ["CreateImage", "RunInstances", "StopInstances", "CreateTags"] {
        assert_eq!(saga.proxy.forwarder.count(mutation), 0, "{mutation}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_every_call_is_throttled_twice_still_undoes_everything() -> Result<()> {
    // The calls only the rollback makes (the clone, the image, its snapshots, the lock).
    let undoing = [
        ("ec2", "TerminateInstances"),
        ("ec2", "DeregisterImage"),
        ("ec2", "DeleteSnapshot"),
        ("dynamodb", "DeleteItem"),
    ];
    let mut faults = vec![impaired_status()];
    for (operation, code, status) in testbed::saga::throttles(&undoing) {
        faults.push(Fault::new(operation, code, status).times(2));
    }
    let (saga, _) = fails_with("switch-throttle-rb", faults, ErrorName::HealthCheckFailed).await?;
    let throttled = testbed::saga::throttled(&saga.proxy.forwarder.calls());
    for (_, operation) in undoing {
        assert_eq!(throttled.get(operation), Some(&2), "{throttled:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_right_after_terminating_the_clone_finishes_when_run_again() -> Result<()>
{
    let saga = SagaBed::start("kill-switch-rollback", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    saga.proxy.forwarder.inject(impaired_status());
    saga.kill_after("TerminateInstances", "switch-rollback");
    let name = saga.name("kill-rb");

    let e = saga.run(&name, &request(&source, "live")).await?;

    let runs = saga.deliveries().await?.get("switch-rollback").copied();
    assert!(
        runs >= Some(2),
        "the rollback was killed and run again ({runs:?})"
    );
    assert_rolled_back(&saga, &e, &source, &name, LedgerStatus::RolledBack).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_step_carries_the_saga_account_region_and_target() -> Result<()> {
    let saga = SagaBed::start("switch-spans", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    let name = saga.name("spans");
    let mut plan = saga.held_step("switch-plan", &name).await?;
    let planned = plan
        .invoke(&json!({"request": request(&source, "shadow"), "execution": name}))
        .await?
        .ok()?;
    assert_eq!(planned["plan"]["switch_id"], name.as_str());
    let gone = "i-0000000000000dead";
    let refused = plan
        .invoke(&json!({"request": request(gone, "shadow"), "execution": name}))
        .await?
        .err()?;
    assert_eq!(refused.error_type, ErrorName::NotEligible.as_str());

    // The Lambda runtime's own line about a returned error stays in its span (with the request
    // id); every line the step writes is in the step's. Lines arrive through a pipe: give the
    // last one a moment.
    let step_lines = || -> Vec<Value> {
        plan.json_logs()
            .into_iter()
            .filter(|l| l.get("level").is_some())
            .filter(|l| l["span"]["name"] != "Lambda runtime invoke")
            .collect()
    };
    for _ in 0..50 {
        if step_lines()
            .iter()
            .any(|l| l["level"] == "WARN" && l.get("error").is_some())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lines = step_lines();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let span = &line["span"];
        assert_eq!(span["saga_id"], name.as_str(), "{line}");
        assert_eq!(span["account"], HOME_ACCOUNT, "{line}");
        assert_eq!(span["region"], "us-east-1", "{line}");
        assert!(
            span["target"] == source.as_str() || span["target"] == gone,
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("NotEligible"))),
        "the failure is logged in the step's span with its name: {lines:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_switch_of_the_same_instance_waits_its_turn() -> Result<()> {
    // Default threshold: the first switch pauses for approval, holding the instance's lock.
    let saga = SagaBed::start("switch-lock", &[]).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let first = saga.name("lock-first");
    let arn = saga
        .start_execution(&first, &request(&source, "live"))
        .await?;
    saga.wait_for_approval(&first).await?;
    assert_eq!(
        lock_holder(&saga, &source).await?.as_deref(),
        Some(first.as_str())
    );

    let second = saga.name("lock-second");
    let e = saga.run(&second, &request(&source, "live")).await?;
    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::NotEligible.as_str()),
        "{}",
        show(&e)
    );
    assert!(
        e.cause.as_deref().unwrap_or_default().contains(&first),
        "{:?}",
        e.cause
    );
    assert_eq!(
        lock_holder(&saga, &source).await?.as_deref(),
        Some(first.as_str()),
        "kept"
    );
    // A shadow plan takes no lock and is not refused.
    let shadow = saga
        .run(&saga.name("lock-shadow"), &request(&source, "shadow"))
        .await?;
    assert_eq!(
        shadow.status,
        ExecutionStatus::Succeeded,
        "{}",
        show(&shadow)
    );

    let approve = saga.spotctl(&["approvals", "approve", &first])?;
    assert!(approve.status.success(), "{approve:?}");
    let e = saga.wait(&arn, std::time::Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(clones(&ec2, &first).await?.len(), 1);
    assert!(clones(&ec2, &second).await?.is_empty());
    assert_eq!(
        lock_holder(&saga, &source).await?,
        None,
        "released by the cut-over"
    );
    Ok(())
}

// ---- issue 10: gates, a rollback that trusts nothing but its marks, and one that never leaves
// ---- less running than before

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_request_runs_in_shadow_unless_the_stack_is_live_for_its_account() -> Result<()> {
    // The template's defaults: the sagas' live switch is off. `StartExecution` alone must not be
    // enough to act.
    let saga = SagaBed::start(
        "switch-gate",
        &[
            ("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
            ("switch-plan", "MODE", "shadow"),
        ],
    )
    .await?;
    let source = source(&saga).await?;
    let name = saga.name("gate");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.path, ["Plan", "ShadowOrLive", "Shadow"], "{}", show(&e));
    assert_eq!(
        e.output["request"]["mode"], "shadow",
        "lowered by the stack"
    );
    let record = saga.ledger(&name).await?.expect("a ledger record");
    assert_eq!(record.status, LedgerStatus::Shadow);
    assert_eq!(
        state(&saga.bed.ec2(), &source).await?,
        InstanceStateName::Running
    );
    assert!(clones(&saga.bed.ec2(), &name).await?.is_empty());
    assert!(lock_holder(&saga, &source).await?.is_none(), "no lock");

    // Live for another account only: still shadow here.
    let other = SagaBed::start(
        "switch-gate-other",
        &[
            ("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
            ("switch-plan", "LIVE_ACCOUNTS", "999999999999"),
        ],
    )
    .await?;
    let source = Launch::new("m5.large")
        .in_az("us-east-1b")
        .run(&other.bed.ec2())
        .await?;
    let e = other
        .run(&other.name("gate-other"), &request(&source, "live"))
        .await?;
    assert_eq!(e.output["request"]["mode"], "shadow", "{}", show(&e));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_injected_into_a_request_are_refused_and_nothing_is_touched() -> Result<()> {
    let saga = SagaBed::start("switch-injected", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    // A completed switch whose clone and image a forged request names.
    let victim = source(&saga).await?;
    let first = saga.name("victim");
    let done = saga.run(&first, &request(&victim, "live")).await?;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{}", show(&done));
    let clone = done.output["launch"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (images, _) = leftovers(&ec2, &first).await?;
    assert_eq!(images.len(), 1, "a successful switch keeps its image");

    // A request for an instance that must not move (Spot), carrying the victim's resources.
    let spot = Launch::new("m5.large")
        .in_az("us-east-1b")
        .spot()
        .run(&ec2)
        .await?;
    let mut forged = request(&spot, "live");
    forged["launch"] = json!({"instance_id": clone, "pool": BEST, "instance_type": "m6i.large",
        "az_name": "us-east-1b", "spot_price": 0.01, "saving_per_hour": 0.01});
    forged["image"] = json!({"image_id": images[0], "state": "available", "checks": 1});
    let name = saga.name("forged");
    let e = saga.run(&name, &forged).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::InvalidRequest.as_str()),
        "{}",
        show(&e)
    );
    assert_eq!(state(&ec2, &clone).await?, InstanceStateName::Running);
    assert_eq!(
        leftovers(&ec2, &first).await?.0,
        images,
        "the image is kept"
    );

    // The rollback invoked directly (not by the state machine) with a state naming the victim's
    // clone, for either ended execution: refused before any call but Step Functions'.
    let mut forged_state = done.output.clone();
    forged_state["error"] = json!({"Error": "HealthCheckFailed", "Cause": "forged"});
    let spec = saga
        .tables
        .function("switch-rollback", &saga.proxy.endpoint())?;
    let mut rollback = LambdaHost::start(spec).await?;
    let since = saga.proxy.forwarder.calls().len();
    for execution in [&name, &first, &"switch-made-up".to_owned()] {
        let refused = rollback
            .invoke(&json!({"state": forged_state, "execution": execution, "phase": "finish"}))
            .await?
            .err()?;
        assert_eq!(refused.error_type, ErrorName::InvalidRequest.as_str());
        assert!(
            refused.error_message.contains("not a running execution"),
            "{refused:?}"
        );
    }
    let calls: Vec<String> = saga
        .proxy
        .forwarder
        .calls_since(since)
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(
        calls.iter().all(|c| c == "states:DescribeExecution"),
        "{calls:?}"
    );
    assert_eq!(state(&ec2, &clone).await?, InstanceStateName::Running);

    // Even for a running execution, the rollback checks the instance, which carries another
    // switch's mark, so it is left alone.
    let mut rollback = saga.held_step("switch-rollback", &name).await?;
    for phase in ["restore", "finish"] {
        rollback
            .invoke(&json!({"state": forged_state, "execution": name, "phase": phase}))
            .await?
            .ok()?;
    }
    assert_eq!(state(&ec2, &clone).await?, InstanceStateName::Running);
    assert_eq!(state(&ec2, &victim).await?, InstanceStateName::Stopped);
    assert_eq!(leftovers(&ec2, &first).await?.0, images);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_step_invoked_outside_a_running_execution_does_nothing() -> Result<()> {
    // Lambda's InvokeFunction alone must not be enough to run a step: each asks Step Functions
    // whether the execution its payload names is running in its own state machine, first.
    let saga = SagaBed::start("switch-outside", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    let steps: Vec<String> = testbed::functions::binaries()?
        .into_iter()
        .filter(|b| b.starts_with("switch-") || b.starts_with("swap-") || b == "saga-approval")
        // Not a step: an operator's request (`spotctl switch revert`), which IAM gates by who
        // may invoke it, and which acts only on a recorded, completed switch.
        .filter(|b| b != "switch-revert")
        .collect();
    assert_eq!(steps.len(), 18, "{steps:?}");
    for binary in &steps {
        let spec = saga.tables.function(binary, &saga.proxy.endpoint())?;
        let mut host = LambdaHost::start(spec).await?;
        let since = saga.proxy.forwarder.calls().len();
        let payload = json!({"execution": saga.name("made-up"), "request": request(&source, "live"),
            "state": {"request": request(&source, "live")}, "phase": "finish"});
        let refused = host.invoke(&payload).await?.err()?;
        assert_eq!(
            refused.error_type,
            ErrorName::InvalidRequest.as_str(),
            "{binary}"
        );
        assert!(
            refused.error_message.contains("not a running execution"),
            "{binary}: {refused:?}"
        );
        let forged = json!({"execution": "x".repeat(100_000), "state": {}});
        let long = host.invoke(&forged).await?.err()?;
        assert_eq!(
            long.error_type,
            ErrorName::InvalidRequest.as_str(),
            "{binary}"
        );
        assert!(
            long.error_message.len() < 400,
            "{binary}: a bounded message"
        );
        let unnamed = host.invoke(&json!({"state": {}})).await?.err()?;
        assert_eq!(
            unnamed.error_type,
            ErrorName::InvalidRequest.as_str(),
            "{binary}"
        );
        let calls: Vec<String> = saga
            .proxy
            .forwarder
            .calls_since(since)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            !calls.is_empty() && calls.iter().all(|c| c == "states:DescribeExecution"),
            "{binary}: {calls:?}"
        );
    }
    assert_eq!(
        state(&saga.bed.ec2(), &source).await?,
        InstanceStateName::Running
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_out_of_bounds_are_refused_before_anything_is_done() -> Result<()> {
    let saga = SagaBed::start("switch-bounds", NO_APPROVAL).await?;
    let source = source(&saga).await?;
    for (key, value) in [
        ("wait_seconds", json!(0)),
        ("image_checks", json!(4_000_000_000u32)),
        ("health_checks", json!(4_000_000_000u32)),
    ] {
        let mut input = request(&source, "live");
        input["settings"][key] = value;
        let name = saga.name(&format!("bounds-{key}"));
        let e = saga.run(&name, &input).await?;
        assert_eq!(
            e.error.as_deref(),
            Some(ErrorName::InvalidRequest.as_str()),
            "{key}: {}",
            show(&e)
        );
        assert!(e.cause.unwrap_or_default().contains(key));
        assert!(clones(&saga.bed.ec2(), &name).await?.is_empty());
    }
    assert_eq!(
        state(&saga.bed.ec2(), &source).await?,
        InstanceStateName::Running
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_start_again_keeps_its_clone_running() -> Result<()> {
    let saga = SagaBed::start("switch-no-restart", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let source = source(&saga).await?;
    let (allocation, _) = elastic_ip(&ec2, &source).await?;
    // The cut-over fails after the stop; the source's capacity is gone for good.
    saga.proxy
        .forwarder
        .inject(Fault::new("AssociateAddress", "InvalidParameterValue", 400).times(1));
    saga.proxy.forwarder.inject(Fault::new(
        "StartInstances",
        "InsufficientInstanceCapacity",
        500,
    ));
    let name = saga.name("no-restart");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::RollbackIncomplete.as_str()),
        "{}",
        show(&e)
    );
    assert!(
        e.path.iter().filter(|s| *s == "WaitForSource").count() >= 2,
        "{:?}",
        e.path
    );
    assert!(
        !e.path.contains(&"RollbackFinish".to_owned()),
        "{:?}",
        e.path
    );
    let running: Vec<_> = clones(&ec2, &name)
        .await?
        .into_iter()
        .filter(|(_, s)| *s == InstanceStateName::Running)
        .collect();
    assert_eq!(running.len(), 1, "the clone keeps serving");
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    // Nothing moved the address after the cut-over failed to: it is where the owner had it.
    assert_eq!(
        address_holder(&ec2, &allocation).await?.as_deref(),
        Some(source.as_str())
    );
    let record = saga.ledger(&name).await?.expect("a ledger record");
    assert_eq!(record.status, LedgerStatus::RollbackIncomplete);
    Ok(())
}

/// An approval notice's links, answered through the real `approval-link` binary with function
/// URL events: opening a link only shows what is asked; a forged token, the other decision's
/// token, a replay and an expired request change nothing and say why; the button answers once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_links_answer_once_and_forged_replayed_or_expired_ones_change_nothing()
-> Result<()> {
    let topic = format!("approval-links-{}", std::process::id());
    let saga = SagaBed::start(
        "switch-links",
        &[("saga-approval", "APPROVAL_TOPIC_ARN", &Inbox::arn(&topic))],
    )
    .await?;
    let inbox = Inbox::start(&saga.bed, &topic).await?;
    let ec2 = saga.bed.ec2();
    let first = source(&saga).await?;
    let name = saga.name("links");
    let arn = saga
        .start_execution(&name, &request(&first, "live"))
        .await?;
    saga.wait_for_approval(&name).await?;
    let told = inbox.wait_for(&name).await?;
    let message = told["Message"].as_str().unwrap_or_default().to_owned();
    let link = |label: &str| -> String {
        message
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    };
    let (approve, reject) = (link("Approve: https"), link("Reject:  https"));
    assert!(!approve.is_empty() && !reject.is_empty(), "{message}");
    let query = |url: &str| {
        url.split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default()
    };
    let token_of = |url: &str| {
        form_urlencoded::parse(query(url).as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let mut host =
        LambdaHost::start(saga.tables.function("approval-link", &saga.bed.endpoint)?).await?;
    host.wait_ready().await?;
    let get =
        |q: String| json!({"rawQueryString": q, "requestContext": {"http": {"method": "GET"}}});
    let post = |saga_id: &str, decision: &str, token: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("saga", saga_id)
            .append_pair("decision", decision)
            .append_pair("token", token)
            .finish();
        json!({"body": base64_encode(&body), "isBase64Encoded": true,
            "requestContext": {"http": {"method": "POST"}}})
    };
    let status = |answer: &Value| answer["statusCode"].as_u64().unwrap_or_default();
    let pending =
        || async { Ok::<_, anyhow::Error>(s(&approval(&saga, &name).await?, "status").to_owned()) };

    // Opening the link shows the question and a button; nothing is answered.
    let page = host.invoke(&get(query(&approve))).await?.ok()?;
    assert_eq!(status(&page), 200, "{page}");
    let body = page["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("MEDIUM risk") && body.contains("<button"),
        "{body}"
    );
    assert_eq!(pending().await?, "PENDING");
    // Forged: a made-up token, the reject token on approve, an unknown saga.
    for (saga_id, decision, token) in [
        (name.as_str(), "approve", "0".repeat(64)),
        (name.as_str(), "approve", token_of(&reject)),
        ("switch-unknown", "approve", token_of(&approve)),
    ] {
        let answer = host.invoke(&post(saga_id, decision, &token)).await?.ok()?;
        assert_eq!(status(&answer), 403, "{answer}");
        assert!(
            answer["body"]
                .as_str()
                .unwrap_or_default()
                .contains("nothing was changed")
        );
    }
    assert_eq!(pending().await?, "PENDING");
    assert!(
        clones(&ec2, &name).await?.is_empty(),
        "nothing happens before the answer"
    );

    // The button: approved once; the saga goes on.
    let answer = host
        .invoke(&post(&name, "approve", &token_of(&approve)))
        .await?
        .ok()?;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(pending().await?, "APPROVED");
    let e = saga.wait(&arn, std::time::Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.output["approval"]["approved_by"], "approval link");
    // What the operator was asked is in the Approval state's input.
    let asked = &e.exited["AskForApproval"]["approval"]["asked"];
    assert_eq!(asked["risk"], "MEDIUM", "{asked}");
    assert!(
        asked["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "{asked}"
    );
    assert!(
        asked["plan"].as_str().is_some_and(|p| p.contains(&first)),
        "{asked}"
    );
    // Replayed, either link: already answered, nothing changes.
    for (decision, url) in [("approve", &approve), ("reject", &reject)] {
        let again = host
            .invoke(&post(&name, decision, &token_of(url)))
            .await?
            .ok()?;
        assert_eq!(status(&again), 410, "{again}");
        assert!(
            again["body"]
                .as_str()
                .unwrap_or_default()
                .contains("works once")
        );
    }
    assert_eq!(pending().await?, "APPROVED");

    // Expired: a request whose time is over, its token good.
    let token = "ab".repeat(32);
    let now = chrono::Utc::now();
    spot_aws::ApprovalsTable::new(saga.bed.dynamodb(), saga.tables.name("ApprovalsTable"))
        .request(&spot_domain::saga::approval::ApprovalRequest {
            saga_id: "switch-expired".into(),
            saga: spot_domain::saga::approval::Saga::AtomicSwitch,
            task_token: "no-task".into(),
            account_id: HOME_ACCOUNT.into(),
            region: "us-east-1".into(),
            target: "i-0expired".into(),
            risk: spot_domain::saga::Risk::High,
            reasons: vec![],
            summary: String::new(),
            requested_at: now - chrono::TimeDelta::hours(2),
            expires_at: now - chrono::TimeDelta::hours(1),
            status: spot_domain::saga::approval::ApprovalStatus::Pending,
            answered_by: None,
            answer_note: None,
            link_digests: Some(spot_domain::saga::approval::LinkDigests {
                approve: spot_domain::saga::approval::token_digest(&token),
                reject: spot_domain::saga::approval::token_digest(&token),
            }),
        })
        .await?;
    let expired = host
        .invoke(&post("switch-expired", "approve", &token))
        .await?
        .ok()?;
    assert_eq!(status(&expired), 410, "{expired}");
    assert!(
        expired["body"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );

    // The reject link of another switch: rejected once, nothing changed.
    let other = source(&saga).await?;
    let second = saga.name("links-reject");
    let arn = saga
        .start_execution(&second, &request(&other, "live"))
        .await?;
    saga.wait_for_approval(&second).await?;
    let told = inbox.wait_for(&second).await?;
    let reject = told["Message"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Reject:  https"))
        .map(|l| format!("https{l}"))
        .unwrap_or_default();
    let answer = host
        .invoke(&post(&second, "reject", &token_of(&reject)))
        .await?
        .ok()?;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        answer["body"]
            .as_str()
            .unwrap_or_default()
            .contains("Rejected")
    );
    let e = saga.wait(&arn, std::time::Duration::from_secs(60)).await?;
    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::ApprovalRejected.as_str()),
        "{}",
        show(&e)
    );
    assert!(clones(&ec2, &second).await?.is_empty());
    assert_eq!(s(&approval(&saga, &second).await?, "status"), "REJECTED");
    Ok(())
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
