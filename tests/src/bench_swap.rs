//! `make bench`, ASG swap: a shadow swap, then a live swap of a three-member group behind a target
//! group, executed by the state machine on the release step binaries (waits of 1 s) while the group
//! is read every few milliseconds, then a swap rolled back; then every step replayed cold on its
//! recorded input (as for the atomic switch), and the router's cold start.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};

use crate::bench_switch::{replay_steps, step_inputs};
use crate::saga::{ASG_SWAP, SagaBed, impaired_status, step_binaries};
use crate::swap::{GroupSpec, Sampler};
use crate::{HOME_ACCOUNT, REGION};

/// The target for the atomic switch, applied per swapped member.
const TRANSITIONS_PER_MEMBER_TARGET: usize = 30;

fn request(group: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": REGION, "asg_name": group, "mode": mode,
        "settings": {"wait_seconds": 1, "health_checks": 3}
    })
}

pub async fn run(bin_dir: &Path) -> Result<bool> {
    let overrides = [("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL")];
    let saga = SagaBed::start_machine(ASG_SWAP, "bench-swap", &overrides, Some(bin_dir)).await?;
    let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
    let mut inputs = BTreeMap::<String, Value>::new();
    let mut record = |found: Vec<(String, Value)>| {
        for (binary, input) in found {
            inputs.entry(binary).or_insert(input);
        }
    };

    // Shadow first, on a group never swapped: discover and plan replay on members still on-demand.
    let untouched = saga.name("bench-shadow");
    GroupSpec::new(&untouched)
        .size(3, 4)
        .with_target_group()
        .create(&saga.bed)
        .await?;
    let shadow = saga
        .run(&saga.name("bench-shadow"), &request(&untouched, "shadow"))
        .await?;
    record(step_inputs(&saga, &shadow.arn).await?);

    let group = saga.name("bench");
    GroupSpec::new(&group)
        .size(3, 4)
        .with_target_group()
        .create(&saga.bed)
        .await?;
    let before = saga.proxy.forwarder.calls().len();
    let sampler = Sampler::start(autoscaling.clone(), &group);
    let e = saga
        .run(&saga.name("bench-live"), &request(&group, "live"))
        .await?;
    let samples = sampler.stop().await?;
    if e.status != ExecutionStatus::Succeeded {
        bail!(
            "the swap did not succeed: {:?} {:?} {:?}",
            e.error,
            e.cause,
            e.path
        );
    }
    let calls = saga.proxy.forwarder.calls_since(before);
    let mut operations = BTreeMap::<String, usize>::new();
    for c in &calls {
        *operations.entry(c.to_string()).or_default() += 1;
    }
    record(step_inputs(&saga, &e.arn).await?);
    let members = e.path.iter().filter(|s| *s == "LaunchBatch").count().max(1);
    let per_member = e.path.len().saturating_sub(7) / members;
    let lowest = samples.iter().map(|s| s.in_service).min().unwrap_or(0);

    let failing = saga.name("bench-fail");
    GroupSpec::new(&failing)
        .size(2, 4)
        .create(&saga.bed)
        .await?;
    saga.proxy.forwarder.inject(impaired_status());
    let failed = saga
        .run(&saga.name("bench-fail"), &request(&failing, "live"))
        .await?;
    saga.proxy.forwarder.clear_faults();
    record(step_inputs(&saga, &failed.arn).await?);
    if let Some(plan) = inputs.get("swap-prepare").cloned() {
        let state = &plan["state"];
        inputs.insert(
            "saga-approval".into(),
            json!({
                "execution": plan["execution"], "token": "bench-task-token", "saga": "AsgSwap",
                "account_id": state["request"]["account_id"], "region": state["request"]["region"],
                "target": format!("asg/{}", state["request"]["asg_name"].as_str().unwrap_or_default()),
                "risk": state["plan"]["risk"], "reasons": state["plan"]["risk_reasons"],
                "summary": state["plan"]["summary"], "timeout_seconds": 60,
            }),
        );
    }

    println!("\n== ASG swap (release x86_64, {}) ==", bin_dir.display());
    println!(
        "3 members, waits 1 s: {} state transitions ({per_member} per member, target ≤ {TRANSITIONS_PER_MEMBER_TARGET}), \
         {} Lambda invocations, {:.2} s, {} AWS calls, in service never below {lowest} (start 3, {} readings)",
        e.path.len(),
        e.invocations,
        e.wall.as_secs_f64(),
        calls.len(),
        samples.len()
    );
    println!("AWS calls by operation: {operations:?}");
    let (steps, steps_ok) =
        replay_steps(&saga, bin_dir, &step_binaries(ASG_SWAP)?, &inputs).await?;
    let ok = steps_ok && per_member <= TRANSITIONS_PER_MEMBER_TARGET && lowest >= 3;
    let report = json!({
        "function": "asg-swap",
        "members": members,
        "state_transitions": e.path.len(),
        "state_transitions_per_member": per_member,
        "lambda_invocations": e.invocations,
        "wall_seconds": e.wall.as_secs_f64(),
        "wait_seconds": 1,
        "aws_calls": calls.len(),
        "aws_calls_by_operation": operations,
        "lowest_in_service": lowest,
        "group_readings": samples.len(),
        "steps": steps,
    });
    crate::bench::report("asg-swap", &report, ok)
}
