//! `make bench`, hibernation: one account with 2,000 instances and 50 Auto Scaling groups tagged
//! with a schedule that wants them asleep now, reconciled by the release binary under the local
//! Lambda Runtime API in live mode: the transition run (everything goes to sleep) and the steady
//! run after it (nothing to do), each through a recording proxy that counts the API calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use spot_aws::{AccountsTable, SchedulesTable};
use spot_domain::hibernation::{Schedule, Week};
use spot_domain::tags::SCHEDULE_TAG;
use spot_domain::{Account, Environment};

use crate::bed::Bed;
use crate::lambda_host::LambdaHost;
use crate::proxy::{AwsProxy, Call};

const ACCOUNT: &str = "100000000043";
const REGION: &str = "us-east-1";
pub const INSTANCES: usize = 2_000;
pub const GROUPS: usize = 50;
/// Targets: one describe pass per region (pages of 1,000 instances, 100 groups), stops batched
/// (500 per call), peak RSS within the scheduled functions' 64 MiB.
const RSS_TARGET_KIB: u64 = 64 * 1024;

async fn seed(bed: &Bed) -> Result<()> {
    let config = bed.member(ACCOUNT).await?;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let started = Instant::now();
    let tag = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(SCHEDULE_TAG)
                .value("never")
                .build(),
        )
        .build();
    for batch in 0..INSTANCES.div_ceil(100) {
        let count = (INSTANCES - batch * 100).min(100) as i32;
        ec2.run_instances()
            .image_id(crate::fixtures::IMAGE)
            .min_count(count)
            .max_count(count)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .tag_specifications(tag.clone())
            .send()
            .await
            .context("RunInstances")?;
    }
    let subnet = ec2.describe_subnets().send().await?.subnets()[0]
        .subnet_id()
        .context("subnet")?
        .to_owned();
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("bench-hibernation")
        .image_id(crate::fixtures::IMAGE)
        .instance_type("t3.micro")
        .send()
        .await?;
    for i in 0..GROUPS {
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(format!("bench-{i:02}"))
            .launch_configuration_name("bench-hibernation")
            .min_size(1)
            .max_size(3)
            .desired_capacity(1)
            .vpc_zone_identifier(&subnet)
            .tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .key(SCHEDULE_TAG)
                    .value("never")
                    .propagate_at_launch(false)
                    .build(),
            )
            .send()
            .await?;
    }
    println!(
        "seeded account {ACCOUNT}: {INSTANCES} scheduled instances, {GROUPS} scheduled groups in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Measure {
    wall: Duration,
    cpu: Duration,
    init: Duration,
    rss_kib: u64,
    calls: Vec<Call>,
    summary: String,
}

impl Measure {
    fn emulator(&self) -> Duration {
        crate::proxy::busy(&self.calls)
    }

    fn ops(&self) -> BTreeMap<String, usize> {
        let mut ops = BTreeMap::new();
        for c in &self.calls {
            *ops.entry(c.operation.clone()).or_default() += 1;
        }
        ops
    }
}

async fn once(bed: &Bed, tables: &crate::bed::Tables, bin_dir: &Path) -> Result<Measure> {
    let function = "hibernation-reconciler";
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
    spec.env.insert("MODE".into(), "live".into());
    spec.env.insert("LIVE_ACCOUNTS".into(), ACCOUNT.into());
    let started = Instant::now();
    let mut host = LambdaHost::start(spec).await?;
    let init = host.wait_ready().await?;
    let report = host
        .invoke(&json!({"accounts": [ACCOUNT], "regions": [REGION]}))
        .await?
        .ok()?;
    let wall = started.elapsed();
    if !report["errors"].as_array().is_some_and(Vec::is_empty) {
        bail!("the reconciler reported errors: {}", report["errors"]);
    }
    let target = &report["targets"][0];
    let mut actions: BTreeMap<String, usize> = BTreeMap::new();
    for a in target["actions"].as_array().into_iter().flatten() {
        *actions
            .entry(format!(
                "{} {}",
                a["action"].as_str().unwrap_or_default(),
                a["outcome"].as_str().unwrap_or_default()
            ))
            .or_default() += 1;
    }
    Ok(Measure {
        wall,
        init,
        cpu: host.cpu_time().unwrap_or_default(),
        rss_kib: host.peak_rss_kib().unwrap_or_default(),
        calls: proxy.forwarder.calls(),
        summary: format!("scanned {} actions {actions:?}", target["scanned"]),
    })
}

fn print(name: &str, m: &Measure) {
    println!(
        "  {name:<16} wall {:>6.2} s = emulator {:>6.2} s + own {:>5.2} s   init {:>5.1} ms   CPU {:>5.2} s   peak RSS {:>5.1} MiB   AWS calls {:>4}",
        m.wall.as_secs_f64(),
        m.emulator().as_secs_f64(),
        m.wall.saturating_sub(m.emulator()).as_secs_f64(),
        m.init.as_secs_f64() * 1e3,
        m.cpu.as_secs_f64(),
        m.rss_kib as f64 / 1024.0,
        m.calls.len(),
    );
    println!("  {:<16} {:?}", "", m.ops());
    let mut slowest: Vec<&Call> = m.calls.iter().collect();
    slowest.sort_by_key(|c| std::cmp::Reverse(c.upstream));
    let slowest: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|c| format!("{} {:.2} s", c.operation, c.upstream.as_secs_f64()))
        .collect();
    println!(
        "  {:<16} the emulator's slowest answers: {}",
        "",
        slowest.join(", ")
    );
    println!("  {:<16} {}", "", m.summary);
}

pub async fn run(bin_dir: &Path) -> Result<bool> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables("bench-hib").await?;
    AccountsTable::new(bed.dynamodb(), tables.name("AccountsTable"))
        .put(&Account {
            account_id: ACCOUNT.into(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(ACCOUNT)),
            external_id: None,
            regions: vec![REGION.into()],
        })
        .await?;
    let mut never = Schedule::new("never", "UTC", Week::from_matrix(&"0".repeat(168))?)?;
    never.wake_lead_minutes = 0;
    SchedulesTable::new(bed.dynamodb(), tables.name("SchedulesTable"))
        .put(&never)
        .await?;
    seed(&bed).await?;
    println!(
        "\n== hibernation-reconciler (release x86_64): {INSTANCES} instances + {GROUPS} groups, one account and region, live =="
    );
    let transition = once(&bed, &tables, bin_dir).await?;
    print("transition run", &transition);
    let steady = once(&bed, &tables, bin_dir).await?;
    print("steady run", &steady);
    let ops = transition.ops();
    let n = |op: &str| ops.get(op).copied().unwrap_or(0);
    let describes = n("DescribeInstances") <= INSTANCES.div_ceil(1000) + 1
        && n("DescribeAutoScalingGroups") <= GROUPS.div_ceil(100) + 1;
    let batched = n("StopInstances") <= INSTANCES.div_ceil(500);
    let rss = transition.rss_kib.max(steady.rss_kib);
    let steady_quiet = ["StopInstances", "StartInstances", "UpdateAutoScalingGroup"]
        .iter()
        .all(|op| !steady.ops().contains_key(*op));
    let met = describes && batched && steady_quiet && rss <= RSS_TARGET_KIB;
    println!(
        "  one describe pass: {describes}; stops batched: {batched}; steady run changes nothing: {steady_quiet}; peak RSS {:.1} MiB (≤ 64): targets {}",
        rss as f64 / 1024.0,
        if met { "met" } else { "MISSED" }
    );
    let report = json!({
        "instances": INSTANCES,
        "groups": GROUPS,
        "transition_s": transition.wall.as_secs_f64(),
        "transition_emulator_s": transition.emulator().as_secs_f64(),
        "transition_cpu_s": transition.cpu.as_secs_f64(),
        "steady_s": steady.wall.as_secs_f64(),
        "steady_emulator_s": steady.emulator().as_secs_f64(),
        "init_ms": transition.init.as_secs_f64() * 1e3,
        "peak_rss_kib": rss,
        "aws_calls_transition": transition.ops(),
        "aws_calls_steady": steady.ops(),
    });
    crate::bench::report("hibernation", &report, met)
}
