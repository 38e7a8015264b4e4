//! `make bench`, emergency failover: whole failovers started by the release interruption handler
//! and executed by the state machine on the release step binaries (waits of 1 s), timed from the
//! handler's invocation to the replacement's first `RunInstances` and to its promotion; then every
//! step's recorded input replayed on a cold process of its binary (as for the atomic switch).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{SubsecRound, Utc};
use serde_json::{Value, json};

use crate::HOME_ACCOUNT;
use crate::bench_switch::{median, replay_steps, step_inputs};
use crate::fixtures::{Event, Launch};
use crate::saga::{
    EMERGENCY_FAILOVER, Execution, FAILOVER_LIVE, SagaBed, elastic_ip, impaired_status,
    step_binaries,
};

/// The target: the first launch call within a second of the warning's receipt.
const FIRST_LAUNCH_TARGET_MS: f64 = 1000.0;
/// The target for standby-replica mode: warning → promoted within 5 s in the bed.
const REPLICA_PROMOTED_TARGET_S: f64 = 5.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// A switched workload as the atomic switch leaves it: the stopped on-demand original and its
/// Spot clone holding an Elastic IP (tagged for standby-replica mode if `replica`). Returns the
/// clone.
async fn switched(ec2: &aws_sdk_ec2::Client, i: usize, replica: bool) -> Result<String> {
    let switch_id = format!("bench-sw-{}-{i}", std::process::id());
    let origin = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("spot-optimizer:switch", &switch_id)
        .run(ec2)
        .await?;
    ec2.stop_instances().instance_ids(&origin).send().await?;
    let mut clone = Launch::new("m5.large")
        .in_az("us-east-1b")
        .spot()
        .tag("ManagedBy", "SpotOptimizer")
        .tag("CreatedVia", "AtomicSwitch")
        .tag("SourceInstance", &origin)
        .tag("spot-optimizer:switch", &switch_id);
    if replica {
        clone = clone.tag(
            spot_domain::tags::REPLICA_TAG,
            spot_domain::tags::REPLICA_STANDBY,
        );
    }
    let clone = clone.run(ec2).await?;
    elastic_ip(ec2, &clone).await?;
    Ok(clone)
}

/// The failover of `instance`, once its execution ended.
async fn finished(saga: &SagaBed, instance: &str) -> Result<Execution> {
    let arn = format!(
        "{}:{}",
        saga.machine.replacen(":stateMachine:", ":execution:", 1),
        spot_domain::saga::failover::execution_name(HOME_ACCOUNT, instance)
    );
    saga.wait(&arn, Duration::from_secs(120)).await
}

pub async fn run(bin_dir: &Path, failovers: usize) -> Result<bool> {
    let saga = SagaBed::start_machine(
        EMERGENCY_FAILOVER,
        "bench-failover",
        FAILOVER_LIVE,
        Some(bin_dir),
    )
    .await?;
    let ec2 = saga.bed.ec2();
    let mut handler = saga.interruption_handler(Some(bin_dir)).await?;
    let now = Utc::now().trunc_subsecs(0);
    let warning = |instance: &str, n: usize| -> Result<Value> {
        Ok(Event::load("spot-interruption-warning.json")?
            .instance(instance)
            .id(&format!("bench-failover-{}-{n}", std::process::id()))
            .time(&now.to_rfc3339())
            .json()
            .clone())
    };

    let mut first_launch = Vec::new();
    let mut emulator = Vec::new();
    let mut promoted = Vec::new();
    let mut transitions = Vec::new();
    let mut invocations = Vec::new();
    let mut calls = Vec::new();
    let mut operations = BTreeMap::<String, usize>::new();
    let mut inputs = BTreeMap::<String, Value>::new();
    for i in 0..failovers {
        let clone = switched(&ec2, i, false).await?;
        let before = saga.proxy.forwarder.calls().len();
        let sent = Instant::now();
        handler.invoke(&warning(&clone, i)?).await?.ok()?;
        let e = finished(&saga, &clone).await?;
        if e.status != ExecutionStatus::Succeeded {
            bail!("failover {i} did not succeed: {:?} {:?}", e.error, e.cause);
        }
        let elapsed = sent.elapsed();
        let made = saga.proxy.forwarder.calls_since(before);
        let Some(launch) = made
            .iter()
            .filter(|c| c.operation == "RunInstances")
            .filter_map(|c| c.sent)
            .min()
        else {
            bail!("failover {i} launched nothing");
        };
        let until_launch: Vec<_> = made
            .iter()
            .filter(|c| c.sent.is_some_and(|t| t < launch))
            .cloned()
            .collect();
        first_launch.push(ms(launch.saturating_duration_since(sent)));
        emulator.push(ms(crate::proxy::busy(&until_launch)));
        promoted.push(elapsed.as_secs_f64());
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
    // Standby-replica mode: the router's request keeps a standby, then the warning promotes it.
    let mut replica_promoted = Vec::new();
    let mut replica_invocations = Vec::new();
    let mut replica_calls = Vec::new();
    for i in 0..failovers.div_ceil(2) {
        let clone = switched(&ec2, 100 + i, true).await?;
        let keep = json!({"account_id": HOME_ACCOUNT, "region": crate::REGION, "primary": clone});
        let arn = saga
            .start_execution(&saga.name(&format!("bench-standby-{i}")), &keep)
            .await?;
        let kept = saga.wait(&arn, Duration::from_secs(120)).await?;
        if kept.status != ExecutionStatus::Succeeded {
            bail!("standby {i} not kept: {:?} {:?}", kept.error, kept.cause);
        }
        let before = saga.proxy.forwarder.calls().len();
        let sent = Utc::now();
        handler.invoke(&warning(&clone, 100 + i)?).await?.ok()?;
        let e = finished(&saga, &clone).await?;
        let Some(promoted_at) = e
            .timeline
            .iter()
            .find(|(state, _)| state == "Promote")
            .map(|(_, t)| *t)
        else {
            bail!(
                "replica failover {i} promoted nothing: {:?} {:?}",
                e.error,
                e.cause
            );
        };
        replica_promoted.push((promoted_at - sent).num_milliseconds() as f64 / 1e3);
        let until = e.path.iter().position(|s| s == "Promote").unwrap_or(0) + 1;
        replica_invocations.push(
            e.path[..until]
                .iter()
                .filter(|s| ["Launch", "Preserve", "CheckHealth", "Promote"].contains(&s.as_str()))
                .count(),
        );
        replica_calls.push(saga.proxy.forwarder.calls_since(before).len());
        if i == 0 {
            for (binary, input) in step_inputs(&saga, &kept.arn).await? {
                inputs.entry(binary).or_insert(input);
            }
        }
    }
    let replica_p50 = median(replica_promoted.clone());
    let replica_line = format!(
        "replica mode: warning → promoted ({} failovers): p50 {replica_p50:.2} s (target ≤ \
         {REPLICA_PROMOTED_TARGET_S:.0} s), {} Lambda invocations to the promotion, AWS calls \
         per failover (new standby included) {}",
        replica_promoted.len(),
        replica_invocations.iter().max().unwrap_or(&0),
        replica_calls.iter().max().unwrap_or(&0),
    );

    // One failover whose replacement fails its first check (impaired fails at once), for the
    // rollback's input.
    let clone = switched(&ec2, failovers, false).await?;
    saga.proxy.forwarder.inject(impaired_status().times(1));
    handler.invoke(&warning(&clone, failovers)?).await?.ok()?;
    let failed = finished(&saga, &clone).await?;
    for (binary, input) in step_inputs(&saga, &failed.arn).await? {
        inputs.entry(binary).or_insert(input);
    }

    let mut sorted = first_launch.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&sorted, 0.5), percentile(&sorted, 0.95));
    println!(
        "\n== emergency failover (release x86_64, {}) ==",
        bin_dir.display()
    );
    println!(
        "warning → first RunInstances ({failovers} failovers): p50 {p50:.0} ms, p95 {p95:.0} ms \
         (target ≤ {FIRST_LAUNCH_TARGET_MS:.0} ms), of which the emulator answering p50 {:.0} ms",
        median(emulator.clone())
    );
    println!(
        "warning → promoted: p50 {:.2} s (waits 1 s); per failover: state transitions {}, \
         Lambda invocations {}, AWS calls {} {:?}",
        median(promoted.clone()),
        transitions.iter().max().unwrap_or(&0),
        invocations.iter().max().unwrap_or(&0),
        calls.iter().max().unwrap_or(&0),
        operations
    );
    println!("{replica_line}");
    let (steps, steps_ok) =
        replay_steps(&saga, bin_dir, &step_binaries(EMERGENCY_FAILOVER)?, &inputs).await?;
    let ok = steps_ok && p50 <= FIRST_LAUNCH_TARGET_MS && replica_p50 <= REPLICA_PROMOTED_TARGET_S;
    let report = json!({
        "function": "emergency-failover",
        "failovers": failovers,
        "warning_to_first_run_instances_ms": first_launch,
        "of_which_emulator_ms": emulator,
        "warning_to_promoted_seconds": promoted,
        "per_failover": {
            "state_transitions": transitions, "lambda_invocations": invocations,
            "aws_calls": calls, "aws_calls_by_operation": operations, "wait_seconds": 1,
        },
        "replica_mode": {
            "warning_to_promoted_seconds": replica_promoted,
            "lambda_invocations_to_promotion": replica_invocations,
            "aws_calls_per_failover": replica_calls,
        },
        "steps": steps,
    });
    crate::bench::report("emergency-failover", &report, ok)
}
