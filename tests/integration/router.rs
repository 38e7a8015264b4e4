//! The optimizer router against the bed: it routes a fresh member account's instances to the two
//! sagas' state machines (which moto then executes, in shadow mode) and starts nothing twice.

use anyhow::Result;
use chrono::Utc;
use serde_json::json;
use spot_aws::AccountsTable;
use spot_domain::ErrorName;
use spot_domain::{Account, Environment};
use testbed::saga::SagaBed;
use testbed::swap::GroupSpec;
use testbed::{Bed, LambdaHost, Launch};

fn fresh_account() -> String {
    format!(
        "{:012}",
        300_000_000_000 + Utc::now().timestamp_micros() as u64 % 600_000_000_000
    )
}

async fn register(bed: &Bed, table: &str, account: &str) -> Result<()> {
    AccountsTable::new(bed.dynamodb(), table)
        .put(&Account {
            account_id: account.into(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(account)),
            external_id: Some("bed-external-id".into()),
            regions: vec!["us-east-1".into()],
        })
        .await?;
    Ok(())
}

async fn executions(saga: &SagaBed) -> Result<Vec<String>> {
    let answer = saga
        .sfn
        .list_executions()
        .state_machine_arn(&saga.machine)
        .send()
        .await?;
    Ok(answer
        .executions()
        .iter()
        .map(|e| e.name().to_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_routed_to_the_right_saga_once() -> Result<()> {
    let switch = SagaBed::start("router-switch", &[]).await?;
    let swap = SagaBed::swap("router-swap", &[]).await?;
    let account = fresh_account();
    register(&switch.bed, switch.tables.name("AccountsTable"), &account).await?;
    register(&swap.bed, swap.tables.name("AccountsTable"), &account).await?;
    let member = switch.bed.member(&account).await?;
    let ec2 = aws_sdk_ec2::Client::new(&member);
    let standalone = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("Name", "db")
        .run(&ec2)
        .await?;
    let spot = Launch::new("m5.large")
        .in_az("us-east-1b")
        .spot()
        .run(&ec2)
        .await?;
    let node = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("eks:cluster-name", "prod")
        .run(&ec2)
        .await?;
    // Asleep at every hour: the router leaves it to the hibernation reconciler.
    spot_aws::SchedulesTable::new(switch.bed.dynamodb(), switch.tables.name("SchedulesTable"))
        .put(&spot_domain::hibernation::Schedule::new(
            "never",
            "UTC",
            spot_domain::hibernation::Week::from_matrix(&"0".repeat(168))?,
        )?)
        .await?;
    let sleeper = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag(spot_domain::tags::SCHEDULE_TAG, "never")
        .run(&ec2)
        .await?;
    let web = format!("web-{account}");
    GroupSpec::new(&web).size(2, 4).create_in(&member).await?;
    let batch = format!("batch-{account}");
    GroupSpec::new(&batch)
        .size(1, 2)
        .not_opted_in()
        .create_in(&member)
        .await?;

    let spec = switch.tables.function_with(
        "optimizer",
        &switch.proxy.endpoint(),
        &[
            ("AtomicSwitchStateMachine", &switch.machine),
            ("AsgSwapStateMachine", &swap.machine),
        ],
    )?;
    let mut router = LambdaHost::start(spec).await?;
    let request = json!({"accounts": [account]});

    let report = router.invoke(&request).await?.ok()?;
    let actions = report["targets"][0]["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let outcome = |action: &str, resource: &str| {
        actions
            .iter()
            .find(|a| a["action"] == action && a["resource_id"] == resource)
            .and_then(|a| a["outcome"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {action} of {resource} in {report}"))
    };
    assert!(outcome("start_switch", &standalone).starts_with("started"));
    assert!(outcome("start_swap", &format!("asg/{web}")).starts_with("started"));
    assert!(outcome("skip", &spot).contains("Spot"));
    assert!(outcome("skip", &node).contains("Kubernetes"));
    assert!(outcome("skip", &sleeper).contains("asleep by schedule `never`"));
    assert!(outcome("skip_group", &format!("asg/{batch}")).contains("not opted in"));
    assert_eq!(
        report["targets"][0]["mode"], "audit",
        "shadow unless the deployment is live"
    );
    assert_eq!(
        report["targets"][0]["counts"]["instance"]["swap"], 3,
        "{report}"
    );

    // A re-run (the next schedule, a retry) starts nothing.
    let again = router.invoke(&request).await?.ok()?;
    let started = again.to_string().matches("\"started ").count();
    assert_eq!(started, 0, "{again}");
    assert!(again.to_string().contains("already started"));
    let switches = executions(&switch).await?;
    let swaps = executions(&swap).await?;
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(swaps.len(), 1, "{swaps:?}");
    assert!(
        switches[0].contains(&standalone) && switches[0].contains("shadow"),
        "{switches:?}"
    );

    // The started executions are real: the shadow switch records its counterfactual saving.
    let arn = format!(
        "{}:{}",
        switch.machine.replace(":stateMachine:", ":execution:"),
        switches[0]
    );
    let e = switch
        .wait(&arn, std::time::Duration::from_secs(60))
        .await?;
    assert_eq!(
        e.path,
        ["Plan", "ShadowOrLive", "Shadow"],
        "{:?} {:?}",
        e.error,
        e.cause
    );
    // In the member's CloudTrail, the plan's session names the function and the execution, and
    // the role it assumed is the read-only one, as registered (a shadow plan only reads).
    let assumed = switch.proxy.forwarder.assumed_roles();
    let session = spot_domain::saga::step::session_name("switch-plan", &switches[0]);
    assert!(
        assumed
            .iter()
            .any(|r| *r == format!("{} {session}", testbed::Bed::role_arn(&account))),
        "{assumed:?}"
    );

    // One instance, directly.
    let one = router
        .invoke(&json!({"accounts": [account], "instance_id": spot}))
        .await?
        .ok()?;
    assert_eq!(one["targets"][0]["scanned"]["instance"], 1, "{one}");
    let bad = router
        .invoke(&json!({"instance_id": "vol-1"}))
        .await?
        .err()?;
    assert_eq!(bad.error_type, ErrorName::InvalidRequest.as_str());
    Ok(())
}
