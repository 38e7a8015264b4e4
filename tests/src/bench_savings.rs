//! `make bench`, savings: one account with 1,000 switched instances (their Spot clones running,
//! each with its ledger record), refreshed by the release binary under the local Lambda Runtime
//! API: the first refresh (every line opened) and the next (every line accrued), each through a
//! recording proxy that counts the API calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, Utc};
use serde_json::json;
use spot_aws::{AccountsTable, LedgerTable};
use spot_domain::saga::SagaMode;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::{Account, Environment};

use crate::bed::Bed;
use crate::lambda_host::LambdaHost;
use crate::proxy::AwsProxy;

const ACCOUNT: &str = "100000000044";
const REGION: &str = "us-east-1";
pub const LINES: usize = 1_000;
/// Targets: EC2 reads per refresh grow with pages (200 ids a filter), not with lines; one write
/// per line; peak RSS within the function's 256 MB.
const RSS_TARGET_KIB: u64 = 64 * 1024;

async fn seed(bed: &Bed, tables: &crate::bed::Tables) -> Result<()> {
    let config = bed.member(ACCOUNT).await?;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ledger = LedgerTable::new(bed.dynamodb(), tables.name("LedgerTable"));
    let at = Utc::now() - TimeDelta::hours(6);
    let mut n = 0;
    for batch in 0..LINES.div_ceil(100) {
        let count = (LINES - batch * 100).min(100) as i32;
        let answer = ec2
            .run_instances()
            .image_id(crate::fixtures::IMAGE)
            .min_count(count)
            .max_count(count)
            .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
            .send()
            .await
            .context("RunInstances")?;
        for clone in answer.instances().iter().filter_map(|i| i.instance_id()) {
            n += 1;
            ledger
                .record(&LedgerRecord {
                    switch_id: format!("switch-bench-{n}"),
                    account_id: ACCOUNT.into(),
                    region: REGION.into(),
                    source_instance_id: format!("i-0source{n:08}"),
                    mode: SagaMode::Live,
                    status: LedgerStatus::Switched,
                    new_instance_id: Some(clone.to_owned()),
                    pool: Some("us-east-1#use1-az1#m5.large".parse()?),
                    instance_type: Some("m5.large".into()),
                    on_demand_price: Some(0.096),
                    spot_price: Some(0.035),
                    saving_per_hour: Some(0.061),
                    risk: None,
                    cause: None,
                    at,
                    group: None,
                    downtime_ms: None,
                })
                .await?;
        }
    }
    Ok(())
}

struct Measure {
    wall: Duration,
    init: Duration,
    rss_kib: u64,
    ops: BTreeMap<String, usize>,
    emulator: Duration,
}

async fn once(bed: &Bed, tables: &crate::bed::Tables, bin_dir: &Path) -> Result<Measure> {
    let function = "savings-refresh";
    let binary = bin_dir.join(function).join("bootstrap");
    let binary = if binary.is_file() {
        binary
    } else {
        bin_dir.join(function)
    };
    let proxy = AwsProxy::start(&bed.endpoint).await?;
    let mut spec = tables.function(function, &proxy.endpoint())?;
    spec.binary = binary;
    spec.memory_mb = 256;
    spec.timeout = Duration::from_secs(300);
    let started = Instant::now();
    let mut host = LambdaHost::start(spec).await?;
    let init = host.wait_ready().await?;
    let report = host
        .invoke(&json!({"accounts": [ACCOUNT], "regions": [REGION]}))
        .await?
        .ok()?;
    let wall = started.elapsed();
    if !report["errors"].as_array().is_some_and(Vec::is_empty)
        || report["targets"][0]["error"].is_string()
    {
        bail!("the refresh reported errors: {report}");
    }
    let calls = proxy.forwarder.calls();
    let mut ops = BTreeMap::new();
    for c in &calls {
        *ops.entry(c.operation.clone()).or_default() += 1;
    }
    Ok(Measure {
        wall,
        init,
        rss_kib: host.peak_rss_kib().unwrap_or_default(),
        emulator: crate::proxy::busy(&calls),
        ops,
    })
}

pub async fn run(bin_dir: &Path) -> Result<bool> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables("bench-savings").await?;
    AccountsTable::new(bed.dynamodb(), tables.name("AccountsTable"))
        .put(&Account {
            account_id: ACCOUNT.into(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(ACCOUNT)),
            external_id: None,
            regions: vec![REGION.into()],
        })
        .await?;
    seed(&bed, &tables).await?;
    println!("\n== savings-refresh: {LINES} switched instances, one account and region ==");
    let mut runs = Vec::new();
    for name in ["first refresh", "next refresh"] {
        let m = once(&bed, &tables, bin_dir).await?;
        println!(
            "  {name:<14} wall {:>6.2} s = emulator {:>6.2} s + own {:>5.2} s   init {:>5.1} ms   peak RSS {:>5.1} MiB   {:?}",
            m.wall.as_secs_f64(),
            m.emulator.as_secs_f64(),
            m.wall.saturating_sub(m.emulator).as_secs_f64(),
            m.init.as_secs_f64() * 1e3,
            m.rss_kib as f64 / 1024.0,
            m.ops
        );
        runs.push(m);
    }
    let n = |m: &Measure, op: &str| m.ops.get(op).copied().unwrap_or(0);
    let pages = LINES.div_ceil(200);
    let reads = runs.iter().all(|m| {
        n(m, "DescribeInstances") <= pages + 1 && n(m, "DescribeSpotPriceHistory") <= pages + 1
    });
    let writes = runs.iter().all(|m| n(m, "PutItem") == LINES);
    let rss = runs.iter().map(|m| m.rss_kib).max().unwrap_or_default();
    let met = reads && writes && rss <= RSS_TARGET_KIB;
    println!(
        "  EC2 reads by pages: {reads}; one write per line: {writes}; peak RSS {:.1} MiB (≤ 64): targets {}",
        rss as f64 / 1024.0,
        if met { "met" } else { "MISSED" }
    );
    let report = json!({
        "lines": LINES,
        "runs": runs.iter().map(|m| json!({
            "wall_s": m.wall.as_secs_f64(), "emulator_s": m.emulator.as_secs_f64(),
            "init_ms": m.init.as_secs_f64() * 1e3, "peak_rss_kib": m.rss_kib, "calls": m.ops,
        })).collect::<Vec<_>>(),
    });
    crate::bench::report("savings-refresh", &report, met)
}
