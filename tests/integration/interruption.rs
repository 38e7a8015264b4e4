//! The interruption handler's binary, end to end against the bed.

use anyhow::Result;
use serde_json::Value;
use spot_domain::Environment;
use spot_domain::ErrorName;
use testbed::{Bed, Event, Fault, HOME_ACCOUNT, Launch};

use crate::support::*;

const FIFTEEN_DAYS: i64 = 1_296_000;
const WARNING_TYPE: &str = "EC2 Spot Instance Interruption Warning";
const REBALANCE_TYPE: &str = "EC2 Instance Rebalance Recommendation";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interruption_warning_quarantines_the_pool_by_az_id_for_fifteen_days() -> Result<()> {
    let mut h = Harness::start("warning").await?;
    // us-east-1d is use1-az4 in the bed's account.
    let instance = Launch::new("m5.large")
        .in_az("us-east-1d")
        .spot()
        .run(&h.bed.ec2())
        .await?;
    let e = event(WARNING, &instance)?;

    let response = h.invoke(&e).await?.ok()?;

    let pool = "us-east-1#use1-az4#m5.large";
    assert_eq!(response["action"], "quarantined");
    assert_eq!(response["pool"], pool);
    let time =
        chrono::DateTime::parse_from_rfc3339(e.json()["time"].as_str().unwrap())?.timestamp();
    let item = h.item(pool).await?.expect("quarantine item");
    assert_eq!(n(&item, "expires_at"), time + FIFTEEN_DAYS);
    assert_eq!(s(&item, "reason"), WARNING_TYPE);
    assert_eq!(n(&item, "interruptions"), 1);
    assert_eq!(s(&item, "last_event_id"), e.json()["id"].as_str().unwrap());
    assert_eq!(ss(&item, "source_accounts"), vec![HOME_ACCOUNT]);
    assert_eq!(s(&item, "first_seen"), s(&item, "last_seen"));
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(s(&item, "first_seen"))?.timestamp(),
        time
    );
    assert_eq!(
        (
            s(&item, "region"),
            s(&item, "az_id"),
            s(&item, "instance_type")
        ),
        ("us-east-1", "use1-az4", "m5.large")
    );

    // One JSON log line for the decision, and one EMF metric.
    let logs = h.handler.json_logs();
    let decision = logs
        .iter()
        .find(|l| l["message"] == "decision")
        .expect("a decision log line");
    assert_eq!(decision["action"], "quarantined");
    assert_eq!(decision["instance_id"], instance.as_str());
    assert_eq!(decision["pool"], pool);
    assert_eq!(decision["account"], HOME_ACCOUNT);
    let emf = logs
        .iter()
        .find(|l| l.get("_aws").is_some())
        .expect("an EMF line");
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SpotOptimizer"
    );
    assert_eq!(emf["PoolQuarantine"], 1);
    assert_eq!(emf["pool"], pool);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_recommendation_quarantines_for_its_own_configured_duration() -> Result<()> {
    let mut h =
        Harness::start_with("rebalance", &[("QUARANTINE_SECONDS_REBALANCE", "3600")]).await?;
    let instance = Launch::new("c5.large")
        .in_az("us-east-1a")
        .spot()
        .run(&h.bed.ec2())
        .await?;
    let e = event(REBALANCE, &instance)?;

    let response = h.invoke(&e).await?.ok()?;

    assert_eq!(response["action"], "quarantined");
    assert_eq!(response["pool"], "us-east-1#use1-az6#c5.large");
    let item = h.item("us-east-1#use1-az6#c5.large").await?.unwrap();
    let time =
        chrono::DateTime::parse_from_rfc3339(e.json()["time"].as_str().unwrap())?.timestamp();
    assert_eq!(n(&item, "expires_at"), time + 3600);
    assert_eq!(s(&item, "reason"), REBALANCE_TYPE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_counts_once_and_changes_nothing() -> Result<()> {
    let mut h = Harness::start("duplicate").await?;
    let instance = Launch::new("m5.xlarge")
        .in_az("us-east-1b")
        .spot()
        .run(&h.bed.ec2())
        .await?;
    let e = event(WARNING, &instance)?;
    assert_eq!(h.invoke(&e).await?.ok()?["action"], "quarantined");
    let before = h.items().await?;

    let again = h.invoke(&e).await?.ok()?;

    assert_eq!(again["action"], "duplicate");
    assert_eq!(again["interruptions"], 1);
    assert_eq!(h.items().await?, before, "the duplicate must not write");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signal_for_a_quarantined_pool_extends_it_and_counts() -> Result<()> {
    let mut h = Harness::start("extend").await?;
    let ec2 = h.bed.ec2();
    let first = Launch::new("r5.large")
        .in_az("us-east-1c")
        .spot()
        .run(&ec2)
        .await?;
    let second = Launch::new("r5.large")
        .in_az("us-east-1c")
        .spot()
        .run(&ec2)
        .await?;
    let t1 = now() - chrono::TimeDelta::hours(2);
    let rebalance = event(REBALANCE, &first)?.time(&t1.to_rfc3339());
    h.invoke(&rebalance).await?.ok()?;
    let warning = event(WARNING, &second)?;

    let response = h.invoke(&warning).await?.ok()?;

    let pool = "us-east-1#use1-az2#r5.large";
    assert_eq!(response["action"], "extended");
    assert_eq!(response["pool"], pool);
    assert_eq!(response["interruptions"], 2);
    let item = h.item(pool).await?.unwrap();
    let t2 =
        chrono::DateTime::parse_from_rfc3339(warning.json()["time"].as_str().unwrap())?.timestamp();
    assert_eq!(
        n(&item, "expires_at"),
        t2 + FIFTEEN_DAYS,
        "pushed out to the newer signal"
    );
    assert_eq!(n(&item, "interruptions"), 2);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(s(&item, "first_seen"))?.timestamp(),
        t1.timestamp()
    );
    assert_eq!(
        s(&item, "reason"),
        WARNING_TYPE,
        "the stronger signal names the reason"
    );
    assert_eq!(
        s(&item, "last_event_id"),
        warning.json()["id"].as_str().unwrap()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_account_signals_never_quarantine_and_only_read_the_instance() -> Result<()> {
    let mut h = Harness::start("lab").await?;
    let lab = "333333333333";
    h.register(lab, Environment::Lab).await?;
    let lab_ec2 = aws_sdk_ec2::Client::new(&h.bed.member(lab).await?);
    let instance = Launch::new("m5.large")
        .in_az("us-east-1a")
        .spot()
        .run(&lab_ec2)
        .await?;
    let e = event(WARNING, &instance)?.account(lab);

    let response = h.invoke(&e).await?.ok()?;

    assert_eq!(response["action"], "ignored_lab");
    assert!(response.get("failover").is_none(), "unmanaged: {response}");
    assert!(h.items().await?.is_empty());
    // The instance is read (a workload the optimizer manages in a LAB account still gets its
    // replacement), through the read-only member role; nothing in the account is changed.
    let calls = operations(&h.calls());
    assert!(
        calls.iter().any(|c| c == "ec2:DescribeInstances"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.starts_with("ec2:") || c.starts_with("states:"))
            .all(|c| c.starts_with("ec2:Describe")),
        "{calls:?}"
    );
    let state = lab_ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await?
        .reservations()[0]
        .instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert_eq!(state, Some(aws_sdk_ec2::types::InstanceStateName::Running));
    Ok(())
}

/// The stack as deployed for an organisation whose member stacks share one ExternalId.
const ORGANISATION: [(&str, &str); 2] = [
    ("ORGANIZATION_ID", "o-abcdefghij"),
    ("MEMBER_EXTERNAL_ID", "bed-external-id"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_account_of_the_organisation_is_read_through_the_member_role_convention()
-> Result<()> {
    let mut h = Harness::start_with("unregistered", &ORGANISATION).await?;
    let stranger = "444444444444";
    let instance = Launch::new("m6i.large")
        .in_az("us-east-1e")
        .spot()
        .run(&aws_sdk_ec2::Client::new(&h.bed.member(stranger).await?))
        .await?;
    let e = event(WARNING, &instance)?.account(stranger);

    let response = h.invoke(&e).await?.ok()?;

    assert_eq!(response["action"], "quarantined", "{response}");
    let pool = response["pool"].as_str().unwrap_or_default().to_owned();
    let item = h.item(&pool).await?.unwrap();
    assert_eq!(ss(&item, "source_accounts"), vec![stranger]);
    let assumed = h.proxy.forwarder.assumed_roles();
    assert!(
        assumed.iter().any(|r| r.starts_with(&format!(
            "arn:aws:iam::{stranger}:role/SpotOptimizerMember "
        ))),
        "{assumed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_account_outside_the_organisation_is_refused_and_nothing_written()
-> Result<()> {
    let mut h = Harness::start("stranger").await?;
    let instance = Launch::new("m6i.large")
        .in_az("us-east-1e")
        .spot()
        .run(&h.bed.ec2())
        .await?;

    let outcome = h
        .invoke(&event(WARNING, &instance)?.account("444444444444"))
        .await?;

    let error = outcome.err()?;
    assert_eq!(error.error_type, ErrorName::AccountMisconfigured.as_str());
    assert!(
        error.error_message.contains("OrganizationId"),
        "{}",
        error.error_message
    );
    assert!(h.items().await?.is_empty());
    assert!(!operations(&h.calls()).iter().any(|c| c.starts_with("ec2:")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_environment_lab_ignores_unregistered_accounts() -> Result<()> {
    let mut h = Harness::start_with(
        "default-lab",
        &[
            ORGANISATION[0],
            ORGANISATION[1],
            ("DEFAULT_ENVIRONMENT", "LAB"),
        ],
    )
    .await?;
    let stranger = "444444444444";
    let instance = Launch::new("m6i.large")
        .in_az("us-east-1e")
        .spot()
        .run(&aws_sdk_ec2::Client::new(&h.bed.member(stranger).await?))
        .await?;

    let response = h
        .invoke(&event(WARNING, &instance)?.account(stranger))
        .await?
        .ok()?;

    assert_eq!(response["action"], "ignored_lab");
    assert!(h.items().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_account_instance_is_located_through_its_role() -> Result<()> {
    let mut h = Harness::start("member").await?;
    let member = "222222222222";
    h.register(member, Environment::Prod).await?;
    let member_ec2 = aws_sdk_ec2::Client::new(&h.bed.member(member).await?);
    let instance = Launch::new("c5.xlarge")
        .in_az("us-east-1b")
        .spot()
        .run(&member_ec2)
        .await?;
    // The home account cannot see it: only the member role can.
    assert!(
        h.bed
            .ec2()
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .is_err()
    );

    let response = h
        .invoke(&event(WARNING, &instance)?.account(member))
        .await?
        .ok()?;

    assert_eq!(response["action"], "quarantined");
    assert_eq!(response["pool"], "us-east-1#use1-az1#c5.xlarge");
    let calls = operations(&h.calls());
    assert_eq!(
        calls.iter().filter(|c| *c == "sts:AssumeRole").count(),
        1,
        "{calls:?}"
    );
    // The read-only role, in a session named after the function.
    let assumed = h.proxy.forwarder.assumed_roles();
    assert_eq!(
        assumed,
        [format!(
            "{} spot-optimizer-interruption-handler",
            testbed::Bed::role_arn(member)
        )]
    );

    // A second signal from the same member reuses the assumed credentials.
    let second = Launch::new("c5.xlarge")
        .in_az("us-east-1b")
        .spot()
        .run(&member_ec2)
        .await?;
    let response = h
        .invoke(&event(WARNING, &second)?.account(member))
        .await?
        .ok()?;
    assert_eq!(response["action"], "extended");
    let calls = operations(&h.calls());
    assert_eq!(
        calls.iter().filter(|c| *c == "sts:AssumeRole").count(),
        1,
        "{calls:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_role_that_cannot_be_assumed_is_access_denied_and_writes_nothing() -> Result<()> {
    let mut h = Harness::start("denied").await?;
    let member = "555555555555";
    h.register(member, Environment::Prod).await?;
    h.proxy
        .forwarder
        .inject(Fault::new("AssumeRole", "AccessDenied", 403));

    let error = h
        .invoke(&event(WARNING, "i-0bbbbbbbbbbbbbbbb")?.account(member))
        .await?
        .err()?;

    assert_eq!(
        error.error_type,
        ErrorName::AccessDenied.as_str(),
        "{}",
        error.error_message
    );
    assert!(h.items().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_or_ignored_result_and_writes_nothing() -> Result<()> {
    let mut h = Harness::start("bad-input").await?;

    let malformed =
        std::fs::read(testbed::template::workspace_root().join("events/bad/malformed.json"))?;
    let error = h.handler.invoke_raw(malformed).await?.err()?;
    assert!(
        error.error_message.contains("failed to deserialize"),
        "{error:?}"
    );

    for (file, error_type) in [
        ("bad/unknown-detail-type.json", ErrorName::UnsupportedEvent),
        ("bad/spoofed-source.json", ErrorName::UnsupportedEvent),
        ("bad/missing-instance-id.json", ErrorName::InvalidEvent),
    ] {
        let error = h
            .invoke(&Event::load(file)?.time(&now().to_rfc3339()))
            .await?
            .err()?;
        assert_eq!(
            error.error_type,
            error_type.as_str(),
            "{file}: {}",
            error.error_message
        );
    }
    let mut no_account = event(WARNING, "i-0ccccccccccccccc0")?;
    no_account.0.as_object_mut().unwrap().remove("account");
    let error = h.invoke(&no_account).await?.err()?;
    assert_eq!(error.error_type, ErrorName::InvalidEvent.as_str());
    assert!(
        error.error_message.contains("account"),
        "{}",
        error.error_message
    );

    // Events no EC2 delivery carries: dated after their receipt, or with over-long fields. The
    // real instance they name is running Spot; none of them is even looked up.
    let target = Launch::new("t3.small").spot().run(&h.bed.ec2()).await?;
    let calls_before = h.calls().len();
    let long = "a".repeat(5000);
    for (what, bad) in [
        (
            "year 9999",
            event(WARNING, &target)?.time("9999-12-31T23:59:59Z"),
        ),
        (
            "a day ahead",
            event(WARNING, &target)?.time(&(now() + chrono::TimeDelta::days(1)).to_rfc3339()),
        ),
        ("a long region", {
            let mut e = event(WARNING, &target)?;
            e.0["region"] = serde_json::json!(long);
            e
        }),
        ("a long instance id", {
            let mut e = event(WARNING, &target)?;
            e.0["detail"]["instance-id"] = serde_json::json!(format!("i-{}", "0".repeat(100_000)));
            e
        }),
    ] {
        let error = h.invoke(&bad).await?.err()?;
        assert_eq!(
            error.error_type,
            ErrorName::InvalidEvent.as_str(),
            "{what}: {error:?}"
        );
        assert!(
            error.error_message.len() < 400,
            "{what}: {}",
            error.error_message
        );
    }
    assert_eq!(
        h.calls().len(),
        calls_before,
        "no AWS call for an impossible event"
    );

    // A well-formed signal about an instance that does not exist: nothing to quarantine.
    let response = h
        .invoke(&event(WARNING, "i-0ddddddddddddddd0")?)
        .await?
        .ok()?;
    assert_eq!(response["action"], "ignored_instance_not_found");

    assert!(h.items().await?.is_empty(), "bad input must write nothing");
    // The process survived every bad event: no panic, no abort.
    let instance = Launch::new("t3.micro").spot().run(&h.bed.ec2()).await?;
    assert_eq!(
        h.invoke(&event(WARNING, &instance)?).await?.ok()?["action"],
        "quarantined"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_persistent_throttling_is_a_transient_error() -> Result<()> {
    let mut h = Harness::start("throttled").await?;
    let instance = Launch::new("m5.2xlarge")
        .in_az("us-east-1f")
        .spot()
        .run(&h.bed.ec2())
        .await?;
    h.proxy
        .forwarder
        .inject(Fault::new("DescribeInstances", "RequestLimitExceeded", 503).times(1));

    let response = h.invoke(&event(WARNING, &instance)?).await?.ok()?;

    assert_eq!(response["action"], "quarantined");
    let describes = operations(&h.calls())
        .iter()
        .filter(|c| *c == "ec2:DescribeInstances")
        .count();
    assert_eq!(describes, 2, "one throttled call, one retry");

    h.proxy.forwarder.inject(Fault::new(
        "PutItem",
        "ProvisionedThroughputExceededException",
        400,
    ));
    let before = h.items().await?;
    let error = h.invoke(&event(WARNING, &instance)?).await?.err()?;
    assert_eq!(
        error.error_type,
        ErrorName::Transient.as_str(),
        "{}",
        error.error_message
    );
    assert_eq!(h.items().await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_path_costs_three_aws_calls_and_one_published_decision() -> Result<()> {
    let mut h = Harness::start("warm").await?;
    let ec2 = h.bed.ec2();
    let a = Launch::new("m5.large")
        .in_az("us-east-1a")
        .spot()
        .run(&ec2)
        .await?;
    let b = Launch::new("m5.large")
        .in_az("us-east-1a")
        .spot()
        .run(&ec2)
        .await?;
    h.invoke(&event(WARNING, &a)?).await?.ok()?;
    let before = h.calls().len();

    h.invoke(&event(WARNING, &b)?).await?.ok()?;

    let warm = operations(&h.proxy.forwarder.calls_since(before));
    assert_eq!(
        warm,
        [
            "ec2:DescribeInstances",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            // Best effort, after the decision is stored: other systems react to it.
            "events:PutEvents"
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signals_for_one_pool_are_all_counted() -> Result<()> {
    let h = Harness::start("concurrent").await?;
    let ec2 = h.bed.ec2();
    // Two more processes on the same tables: three Lambdas racing on one item.
    let mut hosts = vec![h.handler];
    for _ in 0..2 {
        let mut host =
            testbed::LambdaHost::start(h.tables.function("interruption-handler", &h.bed.endpoint)?)
                .await?;
        host.wait_ready().await?;
        hosts.push(host);
    }
    let mut events = Vec::new();
    for _ in 0..9 {
        let instance = Launch::new("c6i.large")
            .in_az("us-east-1d")
            .spot()
            .run(&ec2)
            .await?;
        events.push(event(WARNING, &instance)?);
    }
    let mut tasks = Vec::new();
    for (i, mut host) in hosts.into_iter().enumerate() {
        let mine: Vec<Event> = events.iter().skip(i).step_by(3).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut actions = Vec::new();
            for e in mine {
                // Lambda retries an asynchronous invocation that failed (twice); so does this test.
                let mut outcome = host.invoke(e.json()).await?;
                for _ in 0..2 {
                    match &outcome {
                        testbed::Outcome::Err(err)
                            if err.error_type == ErrorName::Transient.as_str() =>
                        {
                            outcome = host.invoke(e.json()).await?
                        }
                        _ => break,
                    }
                }
                actions.push(outcome.ok()?["action"].clone());
            }
            anyhow::Ok(actions)
        }));
    }
    let mut actions: Vec<Value> = Vec::new();
    for task in tasks {
        actions.extend(task.await??);
    }

    assert_eq!(
        actions.iter().filter(|a| *a == "quarantined").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "extended").count(),
        8,
        "{actions:?}"
    );
    let table = Bed::connect().await?;
    let item = table
        .dynamodb()
        .get_item()
        .table_name(h.tables.name("QuarantineTable"))
        .key(
            "pool",
            aws_sdk_dynamodb::types::AttributeValue::S("us-east-1#use1-az4#c6i.large".into()),
        )
        .consistent_read(true)
        .send()
        .await?
        .item
        .unwrap();
    assert_eq!(n(&item, "interruptions"), 9);
    Ok(())
}
