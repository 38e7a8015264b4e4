//! `make bench`, fan-out: the waste scan of 200 accounts × 2 regions (an idle address and an
//! unattached volume in each), fanned out by moto's Step Functions at `MaxConcurrency` 1, 10 and
//! 40, then in one invocation over the same fleet: wall time, AWS calls per target (counted by the
//! recording proxy), the longest single invocation. Every call the functions make waits 40 ms in
//! the proxy first, a region's round trip. Then the `fanout` lister and `accounts-verify` over the
//! same 200 accounts, each cold on a fresh host: start-up, one answer, peak memory, AWS calls.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_ec2::types::DomainType;
use aws_sdk_sfn::types::HistoryEventType;
use serde_json::json;

use crate::bed::Bed;
use crate::lambda_host::LambdaHost;
use crate::saga::{SagaBed, lambda_binary};

pub const ACCOUNTS: usize = 200;
const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];
const MACHINE: &str = "WasteScanFanOutStateMachine";
/// Each AWS call's round trip, added by the proxy: the emulator answers in about a millisecond
/// and serves one call at a time, so without it concurrency would measure only the emulator.
const LATENCY: Duration = Duration::from_millis(40);

fn accounts() -> Vec<String> {
    (0..ACCOUNTS)
        .map(|i| format!("{:012}", 700_000_000_000u64 + i as u64))
        .collect()
}

async fn seed(bed: &Bed, accounts: &[String]) -> Result<()> {
    for account in accounts {
        let member = bed.member(account).await?;
        for region in REGIONS {
            let ec2 = aws_sdk_ec2::Client::new(
                &member
                    .clone()
                    .into_builder()
                    .region(aws_config::Region::new(region))
                    .build(),
            );
            ec2.allocate_address()
                .domain(DomainType::Vpc)
                .send()
                .await?;
            ec2.create_volume()
                .availability_zone(format!("{region}a"))
                .size(8)
                .send()
                .await?;
        }
    }
    Ok(())
}

/// The longest Lambda invocation of an execution: from each `LambdaFunctionStarted` to the event
/// that ended it.
async fn longest_invocation(saga: &SagaBed, arn: &str) -> Result<Duration> {
    let history = saga.history(arn).await?;
    let at = |e: &aws_sdk_sfn::types::HistoryEvent| {
        let t = e.timestamp();
        t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9
    };
    let started: std::collections::HashMap<i64, f64> = history
        .iter()
        .filter(|e| e.r#type() == &HistoryEventType::LambdaFunctionStarted)
        .map(|e| (e.id(), at(e)))
        .collect();
    let longest = history
        .iter()
        .filter(|e| {
            matches!(
                e.r#type(),
                HistoryEventType::LambdaFunctionSucceeded | HistoryEventType::LambdaFunctionFailed
            )
        })
        .filter_map(|e| Some(at(e) - started.get(&e.previous_event_id())?))
        .fold(0.0, f64::max);
    Ok(Duration::from_secs_f64(longest.max(0.0)))
}

struct Measure {
    how: String,
    wall: Duration,
    calls: usize,
    longest: Duration,
    failed: usize,
}

pub async fn run(bin_dir: &Path) -> Result<bool> {
    let accounts = accounts();
    let targets = accounts.len() * REGIONS.len();
    println!(
        "fan-out: seeding {ACCOUNTS} accounts x {} regions",
        REGIONS.len()
    );
    seed(&Bed::connect().await?, &accounts).await?;
    let mut measures = Vec::new();
    for concurrency in [1u32, 10, 40] {
        let c = concurrency.to_string();
        let saga = SagaBed::start_machine(
            MACHINE,
            &format!("bench-fanout-{concurrency}"),
            &[("fanout", "FAN_OUT_CONCURRENCY", &c)],
            Some(bin_dir),
        )
        .await?;
        saga.register_members(&accounts, &REGIONS).await?;
        saga.proxy.forwarder.set_latency(LATENCY);
        let before = saga.proxy.forwarder.calls().len();
        let name = saga.name("run");
        let arn = saga
            .start_execution(&name, &json!({"accounts": accounts}))
            .await?;
        let started = Instant::now();
        let e = saga.wait(&arn, Duration::from_secs(3600)).await?;
        let wall = started.elapsed();
        measures.push(Measure {
            how: format!("fanned out, MaxConcurrency {concurrency}"),
            wall,
            calls: saga.proxy.forwarder.calls_since(before).len(),
            longest: longest_invocation(&saga, &arn).await?,
            failed: e.output["failed"].as_array().map_or(targets, Vec::len),
        });
    }
    // The same fleet in one invocation (CONCURRENCY targets at a time inside it).
    let saga = SagaBed::start_machine(MACHINE, "bench-fanout-single", &[], Some(bin_dir)).await?;
    saga.register_members(&accounts, &REGIONS).await?;
    saga.proxy.forwarder.set_latency(LATENCY);
    let mut spec = saga
        .tables
        .function("waste-scanner", &saga.proxy.endpoint())?;
    spec.binary = lambda_binary(bin_dir, "waste-scanner");
    // As deployed: the one invocation has the function's 900 s.
    spec.timeout = Duration::from_secs(900);
    let mut host = LambdaHost::start(spec).await?;
    host.wait_ready().await?;
    let before = saga.proxy.forwarder.calls().len();
    let started = Instant::now();
    let report = host.invoke(&json!({"accounts": accounts})).await?.ok()?;
    let wall = started.elapsed();
    measures.push(Measure {
        how: "one invocation (CONCURRENCY 4)".into(),
        wall,
        calls: saga.proxy.forwarder.calls_since(before).len(),
        longest: wall,
        failed: report["errors"].as_array().map_or(targets, Vec::len),
    });

    // Cold start, one answer and peak memory of the lister and of `accounts-verify` over the same
    // accounts, each on a fresh host, without the added latency: what the functions cost.
    saga.proxy.forwarder.set_latency(Duration::ZERO);
    let mut hosts = Vec::new();
    for (function, event) in [
        (
            "fanout",
            json!({"list": {"request": {"accounts": accounts}, "function": "waste-scanner"}}),
        ),
        ("accounts-verify", json!({"accounts": accounts})),
    ] {
        let mut spec = saga.tables.function(function, &saga.proxy.endpoint())?;
        spec.binary = lambda_binary(bin_dir, function);
        let mut host = LambdaHost::start(spec).await?;
        let init = host.wait_ready().await?;
        let before = saga.proxy.forwarder.calls().len();
        let started = Instant::now();
        let answer = host.invoke(&event).await?.ok()?;
        let wall = started.elapsed();
        let calls = saga.proxy.forwarder.calls_since(before).len();
        let answered = answer["targets"]
            .as_array()
            .or_else(|| answer.as_array())
            .map_or(0, Vec::len);
        hosts.push(
            json!({"function": function, "init_ms": init.as_secs_f64() * 1e3,
            "invocation_ms": wall.as_secs_f64() * 1e3, "peak_rss_kib": host.peak_rss_kib(),
            "aws_calls": calls, "answered": answered}),
        );
    }

    println!(
        "\nwaste scan of {ACCOUNTS} accounts x {} regions ({targets} targets), {} ms per AWS call:",
        REGIONS.len(),
        LATENCY.as_millis()
    );
    println!(
        "  {:<34} {:>9} {:>14} {:>18} {:>7}",
        "how", "wall s", "calls/target", "longest call s", "failed"
    );
    let mut rows = Vec::new();
    for m in &measures {
        let per_target = m.calls as f64 / targets as f64;
        println!(
            "  {:<34} {:>9.1} {:>14.1} {:>18.2} {:>7}",
            m.how,
            m.wall.as_secs_f64(),
            per_target,
            m.longest.as_secs_f64(),
            m.failed
        );
        rows.push(
            json!({"how": m.how, "wall_s": m.wall.as_secs_f64(), "calls": m.calls,
            "calls_per_target": per_target, "longest_invocation_s": m.longest.as_secs_f64(),
            "failed": m.failed}),
        );
    }
    println!("\n{ACCOUNTS} accounts, cold, one invocation each:");
    println!(
        "  {:<16} {:>8} {:>14} {:>14} {:>10} {:>9}",
        "function", "init ms", "invocation ms", "peak RSS KiB", "AWS calls", "answered"
    );
    for h in &hosts {
        println!(
            "  {:<16} {:>8.1} {:>14.1} {:>14} {:>10} {:>9}",
            h["function"].as_str().unwrap_or_default(),
            h["init_ms"].as_f64().unwrap_or_default(),
            h["invocation_ms"].as_f64().unwrap_or_default(),
            h["peak_rss_kib"].as_u64().unwrap_or_default(),
            h["aws_calls"].as_u64().unwrap_or_default(),
            h["answered"].as_u64().unwrap_or_default()
        );
    }
    let ok = measures.iter().all(|m| m.failed == 0);
    crate::bench::report(
        "fanout",
        &json!({"accounts": ACCOUNTS, "regions": REGIONS, "targets": targets, "runs": rows,
            "hosts": hosts}),
        ok,
    )
}
