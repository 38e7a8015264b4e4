//! `make bench`, atomic switch: whole switches executed by the state machine on the release step
//! binaries (waits of 1 s), then every step's recorded input replayed on a cold process of its
//! binary, for each step's init time, latency and peak memory. Replaying is safe because every
//! step is idempotent: the replays exercise that too.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::{Value, json};

use crate::fixtures::Launch;
use crate::lambda_host::LambdaHost;
use crate::saga::{SagaBed, elastic_ip, impaired_status, lambda_binary, step_binaries};
use crate::{HOME_ACCOUNT, REGION};

/// Targets: the issue's ≤ 30 state transitions per switch; every step starts and peaks within
/// the functions' targets.
const TRANSITIONS_TARGET: usize = 30;
use crate::bench::{INIT_TARGET_MS, RSS_TARGET_KIB};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The seed target of a switch's downtime at p95 (issue 13).
const DOWNTIME_TARGET_MS: f64 = 10_000.0;

/// The `q` quantile (nearest rank) of `v`; 0 for none.
fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn request(instance: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": REGION, "instance_id": instance, "mode": mode,
        "target": {"instance_types": ["m5.large", "m6i.large"], "az_ids": ["use1-az1", "use1-az2"]},
        "settings": {"wait_seconds": 1, "image_checks": 5, "health_checks": 3}
    })
}

/// Each step binary's first recorded input in the execution: (binary, input).
pub async fn step_inputs(saga: &SagaBed, arn: &str) -> Result<Vec<(String, Value)>> {
    let history: Vec<_> = saga
        .sfn
        .get_execution_history()
        .execution_arn(arn)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    let mut inputs = Vec::new();
    for event in &history {
        if *event.r#type() != HistoryEventType::LambdaFunctionScheduled {
            continue;
        }
        let Some(d) = event.lambda_function_scheduled_event_details() else {
            continue;
        };
        // arn:…:function:<binary>-<suffix>
        let name = d.resource().rsplit(':').next().unwrap_or_default();
        let binary = name.rsplit_once('-').map_or(name, |(b, _)| b).to_owned();
        inputs.push((binary, serde_json::from_str(d.input().unwrap_or("{}"))?));
    }
    Ok(inputs)
}

pub async fn run(bin_dir: &Path, switches: usize) -> Result<bool> {
    let overrides = [("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL")];
    let saga = SagaBed::start_with_bins("bench-switch", &overrides, Some(bin_dir)).await?;
    let ec2 = saga.bed.ec2();

    // A shadow switch first: its plan replays on a source that still runs (a switched source is
    // stopped, and planning it again is refused, as it should be).
    let mut inputs = BTreeMap::<String, Value>::new();
    let shadow_source = Launch::new("m5.large")
        .in_az("us-east-1b")
        .run(&ec2)
        .await?;
    let shadow = saga
        .run(
            &saga.name("bench-shadow"),
            &request(&shadow_source, "shadow"),
        )
        .await?;
    for (binary, input) in step_inputs(&saga, &shadow.arn).await? {
        inputs.entry(binary).or_insert(input);
    }

    // Whole switches.
    let mut walls = Vec::new();
    let mut transitions = Vec::new();
    let mut invocations = Vec::new();
    let mut calls = Vec::new();
    let mut operations = BTreeMap::<String, usize>::new();
    let mut downtimes = Vec::new();
    for i in 0..switches {
        let source = Launch::new("m5.large")
            .in_az("us-east-1b")
            .run(&ec2)
            .await?;
        // With an Elastic IP, so the downtime (stop request to the address on the clone) is
        // measured, as the cut-over records it.
        elastic_ip(&ec2, &source).await?;
        let before = saga.proxy.forwarder.calls().len();
        let e = saga
            .run(&saga.name(&format!("bench-{i}")), &request(&source, "live"))
            .await?;
        if e.status != ExecutionStatus::Succeeded {
            bail!(
                "switch {i} did not succeed: {:?} {:?} {:?}",
                e.error,
                e.cause,
                e.path
            );
        }
        let made = saga.proxy.forwarder.calls_since(before);
        let name = saga.name(&format!("bench-{i}"));
        let record = saga.ledger(&name).await?.context("no ledger record")?;
        downtimes.push(record.downtime_ms.context("no downtime recorded")? as f64);
        walls.push(e.wall.as_secs_f64());
        transitions.push(e.path.len());
        invocations.push(e.invocations);
        calls.push(made.len());
        if i == 0 {
            for c in &made {
                *operations.entry(c.to_string()).or_default() += 1;
            }
            for (binary, input) in step_inputs(&saga, &e.arn).await? {
                inputs.entry(binary).or_insert(input);
            }
        }
    }
    // The steps a healthy live switch does not run: approval, rollback.
    let failing = Launch::new("m5.large")
        .in_az("us-east-1b")
        .run(&ec2)
        .await?;
    saga.proxy.forwarder.inject(impaired_status());
    let failed = saga
        .run(&saga.name("bench-rollback"), &request(&failing, "live"))
        .await?;
    saga.proxy.forwarder.clear_faults();
    for (binary, input) in step_inputs(&saga, &failed.arn).await? {
        inputs.entry(binary).or_insert(input);
    }
    if let Some(image) = inputs.get("switch-image").cloned() {
        // The approval task's payload, as the ASL's Parameters build it from the state.
        let state = &image["state"];
        let plan = &state["plan"];
        inputs.insert(
            "saga-approval".into(),
            json!({
                "execution": image["execution"], "token": "bench-task-token", "saga": "AtomicSwitch",
                "account_id": state["request"]["account_id"], "region": state["request"]["region"],
                "target": state["request"]["instance_id"],
                "risk": plan["risk"], "reasons": plan["risk_reasons"], "summary": plan["summary"],
                "timeout_seconds": plan["settings"]["approval_timeout_seconds"],
            }),
        );
    }

    // Each step, cold, on its recorded input.
    println!(
        "\n== atomic switch (release x86_64, {}) ==",
        bin_dir.display()
    );
    println!(
        "per switch ({switches} switches, waits 1 s): state transitions {} (target ≤ {TRANSITIONS_TARGET}), \
         Lambda invocations {}, wall p50 {:.2} s, AWS calls {} {:?}",
        transitions.iter().max().unwrap_or(&0),
        invocations.iter().max().unwrap_or(&0),
        median(walls.clone()),
        calls.iter().max().unwrap_or(&0),
        operations
    );
    let (steps, steps_ok) = replay_steps(
        &saga,
        bin_dir,
        &step_binaries(crate::saga::ATOMIC_SWITCH)?,
        &inputs,
    )
    .await?;
    let downtime_p95 = percentile(downtimes.clone(), 0.95);
    println!(
        "downtime per switch (stop request to the address on the clone): p50 {:.0} ms, p95 {downtime_p95:.0} ms (target < {DOWNTIME_TARGET_MS} ms)",
        median(downtimes.clone())
    );
    let ok = steps_ok
        && transitions.iter().all(|t| *t <= TRANSITIONS_TARGET)
        && downtime_p95 < DOWNTIME_TARGET_MS;
    let report = json!({
        "function": "atomic-switch",
        "switches": switches,
        "per_switch": {
            "state_transitions": transitions, "lambda_invocations": invocations,
            "wall_seconds": walls, "aws_calls": calls, "aws_calls_by_operation": operations,
            "downtime_ms": downtimes, "downtime_p95_ms": downtime_p95,
            "wait_seconds": 1,
        },
        "steps": steps,
    });
    crate::bench::report("atomic-switch", &report, ok)
}

/// Each step binary started cold (5 times) and invoked on its recorded input: size, init, first
/// invocation, time waiting on the emulator, peak RSS, AWS calls. Replaying re-runs every step on
/// work already done, so it also exercises each step's idempotency. Returns the rows and whether
/// every step met the init and memory targets.
pub async fn replay_steps(
    saga: &SagaBed,
    bin_dir: &Path,
    binaries: &[String],
    inputs: &BTreeMap<String, Value>,
) -> Result<(Vec<Value>, bool)> {
    println!(
        "{:<16} {:>9} {:>11} {:>13} {:>16} {:>10}  AWS calls (slowest)   targets: init ≤ {INIT_TARGET_MS} ms, peak ≤ {} MiB",
        "step",
        "size MiB",
        "init p50 ms",
        "invoke p50 ms",
        "emulator p50 ms",
        "peak MiB",
        RSS_TARGET_KIB / 1024
    );
    // The recorded executions have ended: running ones of the same names stand for them (a step
    // acts only for a running execution).
    let executions: std::collections::BTreeSet<&str> = inputs
        .values()
        .filter_map(|input| input["execution"].as_str())
        .collect();
    for execution in executions {
        saga.hold(execution).await?;
    }
    let mut steps = Vec::new();
    let mut ok = true;
    for binary in binaries {
        let Some(input) = inputs.get(binary) else {
            bail!("no recorded input for {binary}");
        };
        let path = lambda_binary(bin_dir, binary);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} (run `make build-x86`)", path.display()))?
            .len();
        let (mut inits, mut latencies, mut rss, mut step_calls) = (Vec::new(), Vec::new(), 0, 0);
        let (mut waiting, mut slowest) = (Vec::new(), String::new());
        for _ in 0..5 {
            let before = saga.proxy.forwarder.calls().len();
            let mut spec = saga.held_spec(binary)?;
            spec.binary = path.clone();
            let mut host = LambdaHost::start(spec).await?;
            inits.push(ms(host.wait_ready().await?));
            let started = Instant::now();
            let outcome = host.invoke(input).await?;
            latencies.push(ms(started.elapsed()));
            // A rollback ends its execution with an error: a replay answers the same way.
            if !binary.ends_with("-rollback") {
                outcome
                    .ok()
                    .with_context(|| format!("replaying {binary}"))?;
            }
            rss = rss.max(host.peak_rss_kib().unwrap_or_default());
            let made = saga.proxy.forwarder.calls_since(before);
            step_calls = made.len();
            waiting.push(ms(crate::proxy::busy(&made)));
            slowest = made
                .iter()
                .max_by_key(|c| c.upstream)
                .map(|c| format!("{c} {:.0} ms", ms(c.upstream)))
                .unwrap_or_default();
        }
        let (init, latency, waiting) = (median(inits), median(latencies), median(waiting));
        ok &= init <= INIT_TARGET_MS && rss <= RSS_TARGET_KIB;
        println!(
            "{binary:<16} {:>9.2} {init:>11.2} {latency:>13.2} {waiting:>16.2} {:>10.1}  {step_calls} ({slowest})",
            size as f64 / 1048576.0,
            rss as f64 / 1024.0
        );
        steps.push(
            json!({"step": binary, "binary_bytes": size, "init_ms_p50": init,
            "first_invocation_ms_p50": latency, "waiting_on_emulator_ms_p50": waiting,
            "peak_rss_kib": rss, "aws_calls": step_calls}),
        );
    }
    Ok((steps, ok))
}
