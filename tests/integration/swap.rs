//! The ASG swap end to end: moto executes statemachines/asg-swap.asl.json and calls the swap's
//! step binaries through the bed's gateway; a sampler reads the group's in-service count all along;
//! faults are injected by the test's proxy.
//!
//! Invariants checked after every execution: the in-service count never fell below its start, no
//! instance the swap launched is left running outside the group, MaxSize and processes are as the
//! owner had them, and an old member was terminated only if its replacement was InService.

use anyhow::Result;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use spot_domain::ErrorName;
use spot_domain::saga::ledger::LedgerStatus;
use testbed::HOME_ACCOUNT;
use testbed::saga::{ASG_SWAP, Execution, SagaBed};
use testbed::swap::{GroupSpec, Sampler, replacements, snapshot};

/// The `spot-optimizer:swap` tag of an instance, if any.
async fn swap_mark(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<String>> {
    let answer = ec2.describe_instances().instance_ids(id).send().await?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.tags())
        .find(|t| t.key() == Some("spot-optimizer:swap"))
        .and_then(|t| t.value().map(str::to_owned)))
}

/// No approval unless a test wants one.
const NO_APPROVAL: &[(&str, &str, &str)] = &[("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL")];

fn request(group: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": "us-east-1", "asg_name": group, "mode": mode,
        "settings": {"wait_seconds": 1, "health_checks": 3, "approval_timeout_seconds": 60}
    })
}

fn show(e: &Execution) -> String {
    format!(
        "{:?} {:?} {:?} path {:?} output {}",
        e.status, e.error, e.cause, e.path, e.output
    )
}

struct Swap {
    saga: SagaBed,
    autoscaling: aws_sdk_autoscaling::Client,
    group: String,
}

impl Swap {
    async fn start(
        label: &str,
        overrides: &[(&str, &str, &str)],
        spec: impl FnOnce(String) -> GroupSpec,
    ) -> Result<Self> {
        Self::on(SagaBed::swap(label, overrides).await?, label, spec).await
    }

    /// As [`Swap::start`], on a bed already started (e.g. delivering each step twice).
    async fn on(
        saga: SagaBed,
        label: &str,
        spec: impl FnOnce(String) -> GroupSpec,
    ) -> Result<Self> {
        let group = saga.name(label);
        spec(group.clone()).create(&saga.bed).await?;
        let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
        Ok(Self {
            saga,
            autoscaling,
            group,
        })
    }

    /// Runs the swap while sampling the group; returns the execution and the lowest in-service
    /// count seen.
    async fn run(&self, name: &str, mode: &str) -> Result<(Execution, usize)> {
        let sampler = Sampler::start(self.autoscaling.clone(), &self.group);
        let e = self.saga.run(name, &request(&self.group, mode)).await?;
        let samples = sampler.stop().await?;
        assert!(samples.len() > 10, "too few samples: {}", samples.len());
        Ok((e, samples.iter().map(|s| s.in_service).min().unwrap_or(0)))
    }

    /// No instance launched by `swap_id` runs outside the group.
    async fn assert_no_orphan(&self, swap_id: &str) -> Result<()> {
        let members = snapshot(&self.autoscaling, &self.group).await?.members;
        for (id, state, _) in replacements(&self.saga.bed.ec2(), swap_id).await? {
            assert!(
                members.contains(&id) || state == "terminated" || state == "shutting-down",
                "{id} is {state} outside the group"
            );
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_network_interfaces_gets_the_pools_subnet_on_its_primary_interface()
-> Result<()> {
    // EC2 refuses a top-level SubnetId beside a template's interfaces (the bed too).
    let swap = Swap::start("swap-eni", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(1, 2).with_network_interfaces()
    })
    .await?;
    let name = swap.saga.name("eni");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 1, "in service fell to {lowest}");
    let ec2 = swap.saga.bed.ec2();
    let launched = replacements(&ec2, &name).await?;
    assert_eq!(launched.len(), 1);
    let answer = ec2
        .describe_instances()
        .instance_ids(&launched[0].0)
        .send()
        .await?;
    let replacement = &answer.reservations()[0].instances()[0];
    let planned: Vec<&str> = e.output["plan"]["members"][0]["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["subnet_id"].as_str())
        .collect();
    let subnet = replacement.subnet_id().unwrap_or_default();
    assert!(
        planned.contains(&subnet),
        "{subnet} is no planned pool's subnet: {planned:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_member_is_left_out_because_it_would_be_priced_as_linux() -> Result<()> {
    let swap = Swap::start("swap-windows", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(2, 3)
    })
    .await?;
    // EC2 names the billing platform in `platformDetails`, moto leaves it out: the first member
    // of each answer runs Windows.
    swap.saga.proxy.forwarder.inject(testbed::Fault::rewrite(
        "DescribeInstances",
        "<instanceType>m5.large</instanceType>",
        "<instanceType>m5.large</instanceType><platformDetails>Windows</platformDetails>",
    ));
    let name = swap.saga.name("windows");

    let (e, _) = swap.run(&name, "shadow").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let plan = &e.output["plan"];
    assert_eq!(plan["members"].as_array().map(Vec::len), Some(1), "{plan}");
    let skipped = plan["skipped"].as_array().cloned().unwrap_or_default();
    assert!(
        skipped.iter().any(|x| x["reason"] == "unpriced_platform"
            && x["detail"]
                .as_str()
                .is_some_and(|d| d.contains("runs Windows"))),
        "{plan}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detach_waits_for_the_target_groups_deregistration_delay() -> Result<()> {
    // Three checks allowed by the request's settings; the replaced member drains for six
    // (the target group's delay is 10 s, checks are 1 s apart).
    let swap = Swap::start("swap-drain", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(1, 2).draining_for(10)
    })
    .await?;
    let old = snapshot(&swap.autoscaling, &swap.group).await?.members[0].clone();
    swap.saga.proxy.forwarder.inject(
        testbed::Fault::respond(
            "DescribeTargetHealth",
            r#"<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>{Targets.member.1.Id}</Id><Port>80</Port></Target><TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason></TargetHealth></member></TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>bed</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"#,
        )
        .when_body_contains(&old)
        .times(6),
    );
    let name = swap.saga.name("drain");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 1, "in service fell to {lowest}");
    assert!(
        e.path.iter().filter(|s| *s == "CheckDetached").count() > 3,
        "{:?}",
        e.path
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_refused_right_after_marking_the_member_is_retried() -> Result<()> {
    // IAM lets the detach step terminate only a member carrying the swap's mark, written just
    // before: until the tag reaches IAM, TerminateInstances may be refused.
    let swap = Swap::start("swap-mark-lag", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(1, 2)
    })
    .await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    swap.saga
        .proxy
        .forwarder
        .inject(testbed::Fault::new("TerminateInstances", "UnauthorizedOperation", 403).times(1));
    let name = swap.saga.name("mark-lag");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 1, "in service fell to {lowest}");
    let old = &before.members[0];
    let answer = swap
        .saga
        .bed
        .ec2()
        .describe_instances()
        .instance_ids(old)
        .send()
        .await?;
    let state = answer.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned());
    assert_eq!(state.as_deref(), Some("terminated"), "{old}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_on_demand_member_is_replaced_and_capacity_never_drops() -> Result<()> {
    let swap = Swap::start("swap-ok", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(3, 4).with_target_group()
    })
    .await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!(before.in_service, 3);
    let name = swap.saga.name("ok");
    let notices = swap.saga.notices().await?;

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 3, "in service fell to {lowest}");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (3, 4, 3));
    assert!(after.suspended.is_empty(), "{:?}", after.suspended);
    assert!(
        after.marks.is_empty(),
        "the swap's mark is gone: {:?}",
        after.marks
    );
    let ec2 = swap.saga.bed.ec2();
    let launched = replacements(&ec2, &name).await?;
    assert_eq!(launched.len(), 3);
    for (id, state, spot) in &launched {
        assert!(after.members.contains(id), "{id} not in the group");
        assert_eq!((state.as_str(), *spot), ("running", true));
        assert!(
            swap_mark(&ec2, id).await?.is_none(),
            "{id} keeps no standing permission to terminate it"
        );
    }
    for old in &before.members {
        assert!(!after.members.contains(old));
        let answer = ec2.describe_instances().instance_ids(old).send().await?;
        let state = answer.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned());
        assert_eq!(state.as_deref(), Some("terminated"), "{old}");
    }
    for old in &before.members {
        let record = swap
            .saga
            .ledger(&format!("{name}#{old}"))
            .await?
            .expect("a ledger record");
        assert_eq!(record.status, LedgerStatus::Switched);
        assert_eq!(record.group.as_deref(), Some(swap.group.as_str()));
    }
    swap.assert_no_orphan(&name).await?;
    let told = notices
        .wait_for(&format!(
            "Auto Scaling group swap to Spot of asg/{}",
            swap.group
        ))
        .await?;
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "finished");
    let message = told["Message"].as_str().unwrap_or_default();
    for old in &before.members {
        assert!(
            message.contains(&format!("{old} replaced by Spot instance")),
            "{message}"
        );
    }
    let per_member = e.path.iter().filter(|s| *s == "LaunchBatch").count();
    println!(
        "swap of 3: {} states ({} per member), {} Lambda invocations, {:.1} s (waits of 1 s), lowest in service {lowest}",
        e.path.len(),
        (e.path.len() - 7) / per_member.max(1),
        e.invocations,
        e.wall.as_secs_f64()
    );
    Ok(())
}

/// The invariants after a failed swap: capacity, orphans, MaxSize and processes back, old members
/// running unless their replacement served, the failure recorded, the lock released.
async fn assert_rolled_back(
    swap: &Swap,
    e: &Execution,
    lowest: usize,
    start: &testbed::swap::Snapshot,
    name: &str,
) -> Result<()> {
    assert_eq!(e.status, ExecutionStatus::Failed, "{}", show(e));
    assert_eq!(
        e.path.last().map(String::as_str),
        Some("RolledBack"),
        "{}",
        show(e)
    );
    assert!(
        lowest >= start.in_service,
        "in service fell to {lowest} (start {})",
        start.in_service
    );
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!(after.max, start.max, "MaxSize restored");
    assert_eq!(after.desired, start.desired, "desired capacity as it began");
    assert_eq!(after.suspended, start.suspended, "processes restored");
    assert!(after.in_service >= start.in_service);
    swap.assert_no_orphan(name).await?;
    let ec2 = swap.saga.bed.ec2();
    for old in &start.members {
        if after.members.contains(old) {
            let answer = ec2.describe_instances().instance_ids(old).send().await?;
            let state = answer.reservations()[0].instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned());
            assert_eq!(
                state.as_deref(),
                Some("running"),
                "{old} in the group must run"
            );
        }
    }
    let lock = swap
        .saga
        .bed
        .dynamodb()
        .get_item()
        .table_name(swap.saga.tables.name("LedgerTable"))
        .key(
            "switch_id",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "lock#{HOME_ACCOUNT}#us-east-1#asg/{}",
                swap.group
            )),
        )
        .consistent_read(true)
        .send()
        .await?
        .item;
    assert!(lock.is_none(), "the group's lock was released");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_each_members_saving_and_changes_nothing() -> Result<()> {
    let swap = Swap::start("swap-shadow", &[], |n| GroupSpec::new(&n).size(2, 4)).await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    let name = swap.saga.name("shadow");

    let (e, lowest) = swap.run(&name, "shadow").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(e.path, ["Discover", "Plan", "ShadowOrLive", "Shadow"]);
    assert_eq!(lowest, 2);
    assert_eq!(snapshot(&swap.autoscaling, &swap.group).await?, before);
    assert!(replacements(&swap.saga.bed.ec2(), &name).await?.is_empty());
    for old in &before.members {
        let record = swap
            .saga
            .ledger(&format!("{name}#{old}"))
            .await?
            .expect("a shadow record");
        assert_eq!(record.status, LedgerStatus::Shadow);
        assert!(record.saving_per_hour.unwrap_or_default() > 0.0);
    }
    let mutations: Vec<String> = swap
        .saga
        .proxy
        .forwarder
        .calls()
        .iter()
        .filter(|c| {
            matches!(c.service.as_str(), "ec2" | "autoscaling")
                && !c.operation.starts_with("Describe")
        })
        .map(ToString::to_string)
        .collect();
    assert!(mutations.is_empty(), "{mutations:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_at_max_size_gets_room_for_one_more_and_its_max_back() -> Result<()> {
    let swap = Swap::start("swap-at-max", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(2, 2)
    })
    .await?;
    let name = swap.saga.name("at-max");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 2);
    let calls = swap.saga.proxy.forwarder.calls();
    let raised = calls
        .iter()
        .filter(|c| c.operation == "UpdateAutoScalingGroup")
        .count();
    assert_eq!(raised, 2, "raised once, restored once");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (2, 2, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_configuration_group_is_swapped_two_at_a_time_with_batch_percent() -> Result<()> {
    // 67 % of 3 = 2 at a time: MaxSize 4 is raised to 5 for the first batch, then restored.
    let overrides = [
        ("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
        ("swap-discover", "BATCH_PERCENT", "67"),
    ];
    let swap = Swap::start("swap-lc", &overrides, |n| {
        GroupSpec::new(&n).size(3, 4).with_launch_configuration()
    })
    .await?;
    let name = swap.saga.name("lc");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(
        e.path.iter().filter(|s| *s == "LaunchBatch").count(),
        2,
        "two batches: {:?}",
        e.path
    );
    assert!(lowest >= 3);
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (3, 4, 3));
    let launched = replacements(&swap.saga.bed.ec2(), &name).await?;
    assert_eq!(
        launched
            .iter()
            .filter(|(_, s, spot)| s == "running" && *spot)
            .count(),
        3
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_twenty_five_is_attached_and_detached_twenty_ids_per_call() -> Result<()> {
    // One batch of 25 (100 %, MAX_MEMBERS 25): Auto Scaling takes at most 20 ids per call, and
    // the bed refuses more, as AWS does.
    let overrides = [
        ("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
        ("swap-discover", "BATCH_PERCENT", "100"),
        ("swap-discover", "MAX_MEMBERS", "25"),
    ];
    let swap = Swap::start("swap-25", &overrides, |n| GroupSpec::new(&n).size(25, 25)).await?;
    let name = swap.saga.name("twenty-five");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(
        e.path.iter().filter(|s| *s == "LaunchBatch").count(),
        1,
        "one batch"
    );
    assert!(lowest >= 25, "in service fell to {lowest}");
    for operation in ["AttachInstances", "DetachInstances"] {
        assert_eq!(
            swap.saga.proxy.forwarder.count(operation),
            2,
            "{operation}: 20 + 5"
        );
    }
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.in_service), (25, 25));
    swap.assert_no_orphan(&name).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_member_group_is_swapped_twenty_at_a_time_within_step_functions_limits()
-> Result<()> {
    // MAX_MEMBERS at its default (20): this run replaces 20 members, ten at a time (17 % of 60),
    // and lists the other 40 as deferred to the next day's run.
    let overrides = [
        ("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
        ("swap-discover", "BATCH_PERCENT", "17"),
    ];
    let swap = Swap::start("swap-60", &overrides, |n| GroupSpec::new(&n).size(60, 60)).await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!(before.in_service, 60);
    let name = swap.saga.name("sixty");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 60, "in service fell to {lowest}");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (60, 60, 60));
    let launched = replacements(&swap.saga.bed.ec2(), &name).await?;
    let serving = launched
        .iter()
        .filter(|(id, s, spot)| s == "running" && *spot && after.members.contains(id))
        .count();
    assert_eq!(serving, 20, "{launched:?}");
    let kept = before
        .members
        .iter()
        .filter(|m| after.members.contains(m))
        .count();
    assert_eq!(kept, 40, "40 old members stay for the next run");
    let deferred: Vec<&Value> = e.output["discover"]["excluded"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["reason"] == "deferred").collect())
        .unwrap_or_default();
    assert_eq!(deferred.len(), 40, "{}", e.output["discover"]["excluded"]);
    assert_eq!(
        e.path.iter().filter(|s| *s == "LaunchBatch").count(),
        2,
        "two batches of ten"
    );
    // Step Functions fails an execution whose state exceeds 256 KiB, or whose history exceeds
    // 25,000 events, without running its rollback: the cap keeps both far away.
    assert!(
        e.largest_state < 128 * 1024,
        "largest state {} bytes",
        e.largest_state
    );
    assert!(e.events < 2_500, "{} history events", e.events);
    swap.assert_no_orphan(&name).await?;
    println!(
        "swap of 20 of 60: {} states, {} history events, largest state {} bytes, {:.1} s",
        e.path.len(),
        e.events,
        e.largest_state,
        e.wall.as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_mixed_spot_and_hooked_groups_are_skipped_with_their_reason() -> Result<()> {
    let saga = SagaBed::swap("swap-skip", NO_APPROVAL).await?;
    let cases = [
        (
            "not opted in",
            GroupSpec::new(&saga.name("skip-out")).not_opted_in(),
        ),
        (
            "MixedInstancesPolicy",
            GroupSpec::new(&saga.name("skip-mixed")).with_spot_share(50),
        ),
        (
            "lifecycle hook",
            GroupSpec::new(&saga.name("skip-hook")).with_launch_hook(),
        ),
    ];
    let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
    for (why, spec) in cases {
        spec.create(&saga.bed).await?;
        let before = snapshot(&autoscaling, &spec.name).await?;
        let e = saga
            .run(&format!("{}-run", spec.name), &request(&spec.name, "live"))
            .await?;
        assert_eq!(
            e.error.as_deref(),
            Some(ErrorName::NotEligible.as_str()),
            "{why}: {}",
            show(&e)
        );
        assert!(
            e.cause.as_deref().unwrap_or_default().contains(why),
            "{why}: {:?}",
            e.cause
        );
        assert_eq!(
            e.path,
            ["Discover", "Rollback", "RollbackFinish", "RolledBack"]
        );
        assert_eq!(
            snapshot(&autoscaling, &spec.name).await?,
            before,
            "{why}: untouched"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_swap_of_the_same_group_is_refused_while_one_runs() -> Result<()> {
    // Default threshold: the first swap pauses for approval, holding the group's lock.
    let swap = Swap::start("swap-lock", &[], |n| GroupSpec::new(&n).size(2, 4)).await?;
    let first = swap.saga.name("lock-first");
    let arn = swap
        .saga
        .start_execution(&first, &request(&swap.group, "live"))
        .await?;
    swap.saga.wait_for_approval(&first).await?;

    let second = swap
        .saga
        .run(
            &swap.saga.name("lock-second"),
            &request(&swap.group, "live"),
        )
        .await?;
    assert_eq!(
        second.error.as_deref(),
        Some(ErrorName::NotEligible.as_str()),
        "{}",
        show(&second)
    );
    assert!(
        second.cause.as_deref().unwrap_or_default().contains(&first),
        "{:?}",
        second.cause
    );

    let list = swap.saga.spotctl(&["approvals", "list"])?;
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("AsgSwap") && text.contains(&format!("asg/{}", swap.group)),
        "{text}"
    );
    let reject = swap
        .saga
        .spotctl(&["approvals", "reject", &first, "--reason", "not today"])?;
    assert!(reject.status.success(), "{reject:?}");
    let e = swap
        .saga
        .wait(&arn, std::time::Duration::from_secs(60))
        .await?;
    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::ApprovalRejected.as_str()),
        "{}",
        show(&e)
    );
    assert!(replacements(&swap.saga.bed.ec2(), &first).await?.is_empty());
    // The lock is free again: a shadow swap and a new live one may start.
    let shadow = swap
        .saga
        .run(
            &swap.saga.name("lock-shadow"),
            &request(&swap.group, "shadow"),
        )
        .await?;
    assert_eq!(
        shadow.status,
        ExecutionStatus::Succeeded,
        "{}",
        show(&shadow)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_delivered_twice_replaces_each_member_once_and_rolls_back_once() -> Result<()> {
    // Every invocation runs twice, the second after the first did its work; the saga gets the
    // second answer. Launches are counted from the calls the steps made, not only by tag.
    let twice = |label| SagaBed::delivering_twice(ASG_SWAP, label, NO_APPROVAL);
    let swap = Swap::on(twice("swap-twice").await?, "swap-twice", |n| {
        GroupSpec::new(&n).size(3, 4)
    })
    .await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    let name = swap.saga.name("twice");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 3, "in service fell to {lowest}");
    let delivered = swap.saga.deliveries().await?;
    assert_eq!(
        delivered.values().sum::<u32>() as usize,
        2 * e.invocations,
        "every step ran twice: {delivered:?}"
    );
    let runs = |swap: &Swap| swap.saga.proxy.forwarder.count("RunInstances");
    assert_eq!(runs(&swap), 3, "one launch per member");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (3, 4, 3));
    assert!(
        after.suspended.is_empty() && after.marks.is_empty(),
        "{after:?}"
    );
    assert!(before.members.iter().all(|m| !after.members.contains(m)));
    swap.assert_no_orphan(&name).await?;

    // A rollback delivered twice.
    let failing = Swap::on(twice("swap-twice-rb").await?, "swap-twice-rb", |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    let start = snapshot(&failing.autoscaling, &failing.group).await?;
    failing
        .saga
        .proxy
        .forwarder
        .inject(testbed::saga::impaired_status());
    let failed_name = failing.saga.name("twice-rb");
    let (failed, lowest) = failing.run(&failed_name, "live").await?;
    assert_eq!(
        failed.error.as_deref(),
        Some("HealthCheckFailed"),
        "{}",
        show(&failed)
    );
    assert_eq!(runs(&failing), 1, "launched once");
    assert_rolled_back(&failing, &failed, lowest, &start, &failed_name).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_every_step_throttled_twice_still_swaps_with_capacity() -> Result<()> {
    let swap = Swap::start("swap-throttle-all", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(2, 4).with_target_group()
    })
    .await?;
    for (operation, code, status) in testbed::saga::throttles(testbed::saga::SWAP_OPERATIONS) {
        swap.saga
            .proxy
            .forwarder
            .inject(testbed::Fault::new(operation, code, status).times(2));
    }
    let name = swap.saga.name("throttled-all");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    let throttled = testbed::saga::throttled(&swap.saga.proxy.forwarder.calls());
    assert!(
        throttled.len() >= 15 && throttled.values().all(|n| (1..=2).contains(n)),
        "{throttled:?}"
    );
    assert!(lowest >= 2, "in service fell to {lowest}");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (2, 4, 2));
    swap.assert_no_orphan(&name).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_killed_right_after_its_aws_call_is_run_again_and_capacity_holds() -> Result<()> {
    // The process dies after its call reached AWS and before it answered: Step Functions gets
    // Runtime.ExitError and runs the step again, which must find its own work done.
    for (operation, binary) in [
        // Discover's one write: the lock on the group.
        ("PutItem", "swap-discover"),
        ("SuspendProcesses", "swap-prepare"),
        ("RunInstances", "swap-launch"),
        ("AttachInstances", "swap-attach"),
        ("DetachInstances", "swap-detach"),
        ("TerminateInstances", "swap-detach"),
        ("ResumeProcesses", "swap-restore"),
    ] {
        let label = format!("kill-{}", operation.to_lowercase());
        let swap = Swap::start(&label, NO_APPROVAL, |n| GroupSpec::new(&n).size(2, 4)).await?;
        let before = snapshot(&swap.autoscaling, &swap.group).await?;
        let name = swap.saga.name("kill");
        swap.saga.kill_after(operation, binary);

        let (e, lowest) = swap.run(&name, "live").await?;

        assert_eq!(
            e.status,
            ExecutionStatus::Succeeded,
            "{operation}: {}",
            show(&e)
        );
        let runs = swap
            .saga
            .deliveries()
            .await?
            .get(binary)
            .copied()
            .unwrap_or(0);
        assert!(runs >= 2, "{binary} was killed and run again ({runs} runs)");
        assert!(lowest >= 2, "{operation}: in service fell to {lowest}");
        let after = snapshot(&swap.autoscaling, &swap.group).await?;
        assert_eq!(
            (after.desired, after.max, after.in_service),
            (2, 4, 2),
            "{operation}"
        );
        assert!(
            after.suspended.is_empty() && after.marks.is_empty(),
            "{operation}: {after:?}"
        );
        assert!(
            before.members.iter().all(|m| !after.members.contains(m)),
            "{operation}"
        );
        let launched = replacements(&swap.saga.bed.ec2(), &name).await?;
        let running = launched.iter().filter(|(_, s, _)| s == "running").count();
        assert_eq!(running, 2, "{operation}: {launched:?}");
        swap.assert_no_orphan(&name).await?;
    }
    Ok(())
}

/// A fault injected at one step; every case asserts the rollback's invariants.
async fn fails_at(
    label: &str,
    fault: testbed::Fault,
    error: &str,
    spec: fn(String) -> GroupSpec,
) -> Result<(Swap, Execution)> {
    let swap = Swap::start(label, NO_APPROVAL, spec).await?;
    let start = snapshot(&swap.autoscaling, &swap.group).await?;
    swap.saga.proxy.forwarder.inject(fault);
    let name = swap.saga.name(label);
    let (e, lowest) = swap.run(&name, "live").await?;
    assert_eq!(e.error.as_deref(), Some(error), "{}", show(&e));
    assert_rolled_back(&swap, &e, lowest, &start, &name).await?;
    Ok((swap, e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_for_any_member_rolls_back_and_leaves_the_group_as_it_was() -> Result<()> {
    let fault = testbed::Fault::new("RunInstances", "InsufficientInstanceCapacity", 500);
    let (swap, _) = fails_at(
        "swap-f-launch",
        fault,
        ErrorName::InsufficientCapacity.as_str(),
        |n| GroupSpec::new(&n).size(2, 2),
    )
    .await?;
    let holds = swap.saga.quarantine_table();
    let held = spot_domain::pool::quarantine::QuarantineStore::all(&holds).await?;
    assert!(
        !held.is_empty(),
        "the refused pools are held for every launch path"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impaired_replacement_is_terminated_before_it_joins() -> Result<()> {
    let (swap, e) = fails_at(
        "swap-f-health",
        testbed::saga::impaired_status(),
        "HealthCheckFailed",
        |n| GroupSpec::new(&n).size(2, 4),
    )
    .await?;
    assert!(!e.path.contains(&"Attach".to_owned()));
    let launched = replacements(&swap.saga.bed.ec2(), &swap.saga.name("swap-f-health")).await?;
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].1, "terminated");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_attach_terminates_the_replacement() -> Result<()> {
    let fault = testbed::Fault::new("AttachInstances", "ValidationError", 400).times(1);
    let (swap, _) = fails_at("swap-f-attach", fault, ErrorName::AwsError.as_str(), |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    let launched = replacements(&swap.saga.bed.ec2(), &swap.saga.name("swap-f-attach")).await?;
    assert_eq!(launched[0].1, "terminated");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_never_healthy_in_its_target_group_is_detached_with_decrement() -> Result<()>
{
    let unhealthy = testbed::Fault::respond(
        "DescribeTargetHealth",
        r#"<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeTargetHealthResult><TargetHealthDescriptions><member><Target><Id>{Targets.member.1.Id}</Id><Port>80</Port></Target><TargetHealth><State>unhealthy</State><Reason>Target.FailedHealthChecks</Reason></TargetHealth></member></TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>bed</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"#,
    );
    let (swap, e) = fails_at(
        "swap-f-tg",
        unhealthy,
        ErrorName::AttachFailed.as_str(),
        |n| GroupSpec::new(&n).size(2, 4).with_target_group(),
    )
    .await?;
    assert_eq!(
        e.path.iter().filter(|s| *s == "CheckAttached").count(),
        3,
        "bounded: {:?}",
        e.path
    );
    let calls = swap.saga.proxy.forwarder.calls();
    assert!(
        calls.iter().any(|c| c.operation == "DetachInstances"),
        "the replacement was detached"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_detach_removes_the_replacement_and_keeps_the_member() -> Result<()> {
    let fault = testbed::Fault::new("DetachInstances", "ValidationError", 400).times(1);
    fails_at("swap-f-detach", fault, ErrorName::AwsError.as_str(), |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_terminate_keeps_the_serving_replacement_and_finishes_the_old_member() -> Result<()>
{
    let fault = testbed::Fault::new("TerminateInstances", "IncorrectInstanceState", 400).times(1);
    let (swap, _) = fails_at(
        "swap-f-terminate",
        fault,
        ErrorName::AwsError.as_str(),
        |n| GroupSpec::new(&n).size(2, 4),
    )
    .await?;
    // The first member's swap was complete but for the terminate: the rollback finished it.
    let name = swap.saga.name("swap-f-terminate");
    let launched = replacements(&swap.saga.bed.ec2(), &name).await?;
    let serving: Vec<_> = launched.iter().filter(|(_, s, _)| s == "running").collect();
    assert_eq!(serving.len(), 1, "{launched:?}");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert!(after.members.contains(&serving[0].0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_in_discover_or_plan_fails_named_and_leaves_the_group_as_it_was()
-> Result<()> {
    for (label, operation, code) in [
        (
            "swap-f-discover",
            "DescribeAutoScalingGroups",
            "AccessDenied",
        ),
        (
            "swap-f-plan",
            "DescribeSpotPriceHistory",
            "UnauthorizedOperation",
        ),
    ] {
        let fault = testbed::Fault::new(operation, code, 403).times(1);
        let (swap, _) = fails_at(label, fault, ErrorName::AccessDenied.as_str(), |n| {
            GroupSpec::new(&n).size(2, 4)
        })
        .await?;
        for mutation in ["SuspendProcesses", "RunInstances", "AttachInstances"] {
            assert_eq!(
                swap.saga.proxy.forwarder.count(mutation),
                0,
                "{label}: {mutation}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prepare_leaves_the_group_as_it_was() -> Result<()> {
    let fault = testbed::Fault::new("SuspendProcesses", "ValidationError", 400).times(1);
    let (swap, _) = fails_at("swap-f-prepare", fault, ErrorName::AwsError.as_str(), |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    assert_eq!(swap.saga.proxy.forwarder.count("RunInstances"), 0);
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert!(after.marks.is_empty(), "{:?}", after.marks);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_restore_still_returns_the_group_to_its_owner() -> Result<()> {
    // Every member was replaced; then resuming the processes is refused once: the rollback
    // restores the group (and keeps the serving Spot members: undoing a finished swap would only
    // cost capacity).
    let fault = testbed::Fault::new("ResumeProcesses", "ValidationError", 400).times(1);
    let (swap, e) = fails_at("swap-f-restore", fault, ErrorName::AwsError.as_str(), |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    assert!(e.path.contains(&"Restore".to_owned()), "{}", show(&e));
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert!(after.marks.is_empty(), "{:?}", after.marks);
    assert_eq!(after.in_service, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_throttled_or_killed_mid_way_still_restores_the_group() -> Result<()> {
    // The calls only the rollback makes here (the impaired replacement, the group, the lock):
    // throttled twice each; then, in another run, the rollback killed right after resuming the
    // group's processes.
    let undoing = [
        ("ec2", "TerminateInstances"),
        ("autoscaling", "ResumeProcesses"),
        ("autoscaling", "DeleteTags"),
        ("dynamodb", "DeleteItem"),
    ];
    for kill in [false, true] {
        let label = if kill {
            "swap-kill-rb"
        } else {
            "swap-throttle-rb"
        };
        let swap = Swap::start(label, NO_APPROVAL, |n| GroupSpec::new(&n).size(2, 4)).await?;
        let start = snapshot(&swap.autoscaling, &swap.group).await?;
        swap.saga
            .proxy
            .forwarder
            .inject(testbed::saga::impaired_status());
        if kill {
            swap.saga.kill_after("ResumeProcesses", "swap-rollback");
        } else {
            for (operation, code, status) in testbed::saga::throttles(&undoing) {
                swap.saga
                    .proxy
                    .forwarder
                    .inject(testbed::Fault::new(operation, code, status).times(2));
            }
        }
        let name = swap.saga.name(label);

        let (e, lowest) = swap.run(&name, "live").await?;

        assert_eq!(
            e.error.as_deref(),
            Some(ErrorName::HealthCheckFailed.as_str()),
            "{label}: {}",
            show(&e)
        );
        assert_rolled_back(&swap, &e, lowest, &start, &name).await?;
        let after = snapshot(&swap.autoscaling, &swap.group).await?;
        assert!(after.marks.is_empty(), "{label}: {:?}", after.marks);
        if kill {
            let runs = swap.saga.deliveries().await?.get("swap-rollback").copied();
            assert!(runs.unwrap_or(0) >= 2, "killed and run again: {runs:?}");
        } else {
            let throttled = testbed::saga::throttled(&swap.saga.proxy.forwarder.calls());
            for (_, operation) in undoing {
                assert!(
                    throttled.contains_key(operation),
                    "{operation}: {throttled:?}"
                );
            }
        }
    }
    Ok(())
}

// ---- issue 10: the rollback finds what it touched by its marks and always restores the group

/// Marks `group` as swap `swap_id`'s prepare step does, having raised nothing and suspended
/// `AZRebalance`.
async fn prepared_by(
    autoscaling: &aws_sdk_autoscaling::Client,
    group: &str,
    swap_id: &str,
) -> Result<()> {
    let tag = |k: &str, v: &str| {
        aws_sdk_autoscaling::types::Tag::builder()
            .resource_id(group)
            .resource_type("auto-scaling-group")
            .key(k)
            .value(v)
            .propagate_at_launch(false)
            .build()
    };
    autoscaling
        .create_or_update_tags()
        .tags(tag("spot-optimizer:swap", swap_id))
        .tags(tag("spot-optimizer:swap-restore", "max=4;raised=-;az=1"))
        .send()
        .await?;
    autoscaling
        .suspend_processes()
        .auto_scaling_group_name(group)
        .scaling_processes("AZRebalance")
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_member_whose_replacement_vanished_is_put_back() -> Result<()> {
    let swap = Swap::start("swap-lost", NO_APPROVAL, |n| GroupSpec::new(&n).size(2, 4)).await?;
    let ec2 = swap.saga.bed.ec2();
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    let name = swap.saga.name("swap-lost");
    // Where a crash can leave a swap: the group prepared, a member marked and detached, and its
    // Spot replacement gone (reclaimed) before the rollback runs.
    prepared_by(&swap.autoscaling, &swap.group, &name).await?;
    let detached = before.members[0].clone();
    ec2.create_tags()
        .resources(&detached)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("spot-optimizer:swap")
                .value(&name)
                .build(),
        )
        .send()
        .await?;
    swap.autoscaling
        .detach_instances()
        .auto_scaling_group_name(&swap.group)
        .instance_ids(&detached)
        .should_decrement_desired_capacity(true)
        .send()
        .await?;
    assert_eq!(
        snapshot(&swap.autoscaling, &swap.group).await?.in_service,
        1
    );

    let mut rollback = swap.saga.held_step("swap-rollback", &name).await?;
    // The state the execution had: only the request and the error (the rollback trusts no more).
    let state = json!({"request": request(&swap.group, "live"),
        "error": {"Error": "DetachFailed", "Cause": "the replacement was reclaimed"}});
    let members = rollback
        .invoke(&json!({"state": state, "execution": name, "phase": "restore"}))
        .await?
        .ok()?;
    let done = rollback
        .invoke(&json!({"state": state, "execution": name, "phase": "finish"}))
        .await?
        .ok()?;

    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert!(after.members.contains(&detached), "{members}");
    assert_eq!((after.desired, after.max), (before.desired, before.max));
    assert!(after.suspended.is_empty(), "AZRebalance resumed: {done}");
    assert!(after.marks.is_empty(), "{:?}", after.marks);
    assert!(swap_mark(&ec2, &detached).await?.is_none());
    assert_eq!(done["error"], ErrorName::DetachFailed.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_is_restored_even_when_putting_members_back_failed() -> Result<()> {
    let swap = Swap::start("swap-finish", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(2, 4)
    })
    .await?;
    let name = swap.saga.name("swap-finish");
    prepared_by(&swap.autoscaling, &swap.group, &name).await?;
    let mut rollback = swap.saga.held_step("swap-rollback", &name).await?;
    let state = json!({"request": request(&swap.group, "live"),
        "error": {"Error": "AttachFailed", "Cause": "x"},
        "rollback_failure": {"Error": "AccessDenied", "Cause": "TerminateInstances refused"}});
    let done = rollback
        .invoke(&json!({"state": state, "execution": name, "phase": "finish"}))
        .await?
        .ok()?;
    assert_eq!(
        done["error"],
        ErrorName::RollbackIncomplete.as_str(),
        "{done}"
    );
    assert!(
        done["cause"]
            .as_str()
            .unwrap()
            .contains("TerminateInstances"),
        "{done}"
    );
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert!(
        after.suspended.is_empty() && after.marks.is_empty(),
        "{after:?}"
    );

    // A group another swap prepared is not touched by this one.
    let other = swap.saga.name("someone-else");
    prepared_by(&swap.autoscaling, &swap.group, &other).await?;
    rollback
        .invoke(&json!({"state": state, "execution": name, "phase": "finish"}))
        .await?
        .ok()?;
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!(after.suspended, ["AZRebalance"]);
    assert_eq!(after.marks.len(), 2);
    Ok(())
}
