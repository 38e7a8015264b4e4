//! The atomic-switch saga end to end: moto executes statemachines/atomic-switch.asl.json and calls
//! the eight step binaries through the bed's gateway; faults are injected by this test's proxy.

use anyhow::Result;
use aws_sdk_ec2::types::{Filter, InstanceStateName};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use testbed::saga::{Execution, SagaBed};
use testbed::{HOME_ACCOUNT, Launch};

use crate::support::s;

/// Step binaries' settings for tests: no approval unless a test wants one.
const NO_APPROVAL: &[(&str, &str, &str)] = &[("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL")];

fn request(instance: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": "us-east-1", "instance_id": instance, "mode": mode,
        // m6i.large (band 2) ranks before m5.large (band 3) at moto's flat Spot price.
        "target": {"instance_types": ["m5.large", "m6i.large"], "az_ids": ["use1-az1", "use1-az2"]},
        "settings": {"wait_seconds": 1, "image_checks": 5, "health_checks": 5, "approval_timeout_seconds": 30}
    })
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<InstanceStateName> {
    let answer = ec2.describe_instances().instance_ids(id).send().await?;
    Ok(answer.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned()
        .unwrap_or(InstanceStateName::Pending))
}

/// Instances the saga launched for `switch_id`, with their states.
async fn clones(
    ec2: &aws_sdk_ec2::Client,
    switch_id: &str,
) -> Result<Vec<(String, InstanceStateName)>> {
    let answer = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:spot-optimizer:switch")
                .values(switch_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag:CreatedVia")
                .values("AtomicSwitch")
                .build(),
        )
        .send()
        .await?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_owned(),
                i.state()
                    .and_then(|s| s.name())
                    .cloned()
                    .unwrap_or(InstanceStateName::Pending),
            )
        })
        .collect())
}

async fn images(ec2: &aws_sdk_ec2::Client, switch_id: &str) -> Result<usize> {
    let answer = ec2
        .describe_images()
        .owners("self")
        .filters(
            Filter::builder()
                .name("name")
                .values(format!("spot-optimizer-switch-{switch_id}"))
                .build(),
        )
        .send()
        .await?;
    Ok(answer.images().len())
}

async fn ledger(saga: &SagaBed, switch_id: &str) -> Result<crate::support::Item> {
    Ok(saga
        .bed
        .dynamodb()
        .get_item()
        .table_name(saga.tables.name("SwitchTable"))
        .key(
            "switch_id",
            aws_sdk_dynamodb::types::AttributeValue::S(switch_id.into()),
        )
        .consistent_read(true)
        .send()
        .await?
        .item
        .unwrap_or_default())
}

fn show(e: &Execution) -> String {
    format!(
        "{:?} {:?} {:?} path {:?} output {}",
        e.status, e.error, e.cause, e.path, e.output
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_clone_replaces_the_source_which_is_stopped_only_at_the_end() -> Result<()> {
    let saga = SagaBed::start("switch-ok", NO_APPROVAL).await?;
    let ec2 = saga.bed.ec2();
    let source = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("Name", "db")
        .tag("Team", "core")
        .run(&ec2)
        .await?;
    let name = saga.name("ok");

    let e = saga.run(&name, &request(&source, "live")).await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let clone = e.output["launch"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(e.output["launch"]["pool"], "us-east-1#use1-az1#m6i.large");
    assert_eq!(state(&ec2, &source).await?, InstanceStateName::Stopped);
    assert_eq!(state(&ec2, &clone).await?, InstanceStateName::Running);
    let answer = ec2.describe_instances().instance_ids(&clone).send().await?;
    let instance = &answer.reservations()[0].instances()[0];
    assert_eq!(
        instance.instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    let tags: std::collections::BTreeMap<_, _> = instance
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert_eq!(tags["Name"], "db");
    assert_eq!(tags["Team"], "core");
    assert_eq!(tags["ManagedBy"], "SpotOptimizer");
    assert_eq!(tags["CreatedVia"], "AtomicSwitch");
    assert_eq!(tags["SourceInstance"], source.as_str());
    // The source is stopped last: every state before CutOver ran with it running.
    let cutover = e.path.iter().position(|s| s == "CutOver").unwrap();
    assert_eq!(e.path[cutover - 1], "Healthy");
    assert!(
        e.path.len() <= 30,
        "{} state transitions: {:?}",
        e.path.len(),
        e.path
    );
    let record = ledger(&saga, &name).await?;
    assert_eq!(s(&record, "status"), "SWITCHED");
    assert_eq!(s(&record, "new_instance_id"), clone);
    println!(
        "switch: {} states, {} Lambda invocations, {:.1} s (waits of 1 s)",
        e.path.len(),
        e.invocations,
        e.wall.as_secs_f64()
    );
    Ok(())
}
