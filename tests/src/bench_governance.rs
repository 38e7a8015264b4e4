//! `make bench`, scheduled functions: one seeded account (10,000 snapshots, 1,000 volumes, 100 AMIs,
//! 200 Elastic IPs, 2,000 instances by default), scanned by the release binaries under the local
//! Lambda Runtime API and by Cloud Custodian with the same rules, against the same emulator,
//! each through a recording proxy that counts API calls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aws_credential_types::provider::ProvideCredentials;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use spot_aws::AccountsTable;
use spot_domain::{Account, Environment};

use crate::bed::Bed;
use crate::lambda_host::LambdaHost;
use crate::proxy::{AwsProxy, Call};

pub struct Sizes {
    pub snapshots: usize,
    pub volumes: usize,
    pub amis: usize,
    pub eips: usize,
    pub instances: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            snapshots: 10_000,
            volumes: 1_000,
            amis: 100,
            eips: 200,
            instances: 2_000,
        }
    }
}

/// The account the benchmark seeds (its own moto state).
const ACCOUNT: &str = "100000000042";
const REGION: &str = "us-east-1";
const SEED_CONCURRENCY: usize = 16;

const RSS_TARGET_KIB: u64 = 64 * 1024;
const SPEEDUP_TARGET: f64 = 3.0;

async fn seed(bed: &Bed, sizes: &Sizes) -> Result<()> {
    let ec2 = aws_sdk_ec2::Client::new(&bed.member(ACCOUNT).await?);
    let started = Instant::now();
    let azs = ["us-east-1a", "us-east-1b", "us-east-1c"];
    // Instances: half authorised (the security scan's mix), a hundred per call.
    let mut instances = Vec::new();
    for batch in 0..sizes.instances.div_ceil(100) {
        let count = (sizes.instances - batch * 100).min(100) as i32;
        let mut request = ec2
            .run_instances()
            .image_id(crate::fixtures::IMAGE)
            .min_count(count)
            .max_count(count)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(azs[batch % 3])
                    .build(),
            );
        if batch % 2 == 0 {
            request = request.tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("ManagedBy")
                            .value("SpotOptimizer")
                            .build(),
                    )
                    .build(),
            );
        }
        let answer = request.send().await.context("RunInstances")?;
        instances.extend(
            answer
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned)),
        );
    }
    let volumes: Vec<String> = futures::stream::iter(0..sizes.volumes)
        .map(|i| {
            let ec2 = ec2.clone();
            async move {
                let v = ec2
                    .create_volume()
                    .availability_zone(azs[i % 3])
                    .size(8 + (i % 4) as i32 * 8)
                    .send()
                    .await?;
                anyhow::Ok(v.volume_id().unwrap_or_default().to_owned())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    futures::stream::iter(0..sizes.snapshots)
        .map(|i| {
            let ec2 = ec2.clone();
            let volume = volumes[i % volumes.len().max(1)].clone();
            async move {
                ec2.create_snapshot()
                    .volume_id(volume)
                    .send()
                    .await
                    .map(|_| ())
                    .context("CreateSnapshot")
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    futures::stream::iter(0..sizes.amis)
        .map(|i| {
            let ec2 = ec2.clone();
            let instance = instances[i % instances.len().max(1)].clone();
            async move {
                ec2.create_image()
                    .instance_id(instance)
                    .name(format!("bench-{i}"))
                    .send()
                    .await
                    .map(|_| ())
                    .context("CreateImage")
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    for i in 0..sizes.eips {
        let allocation = ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await?;
        // A quarter in use.
        if i % 4 == 0 {
            ec2.associate_address()
                .set_allocation_id(allocation.allocation_id().map(str::to_owned))
                .instance_id(&instances[i % instances.len().max(1)])
                .send()
                .await?;
        }
    }
    println!(
        "seeded account {ACCOUNT}: {} instances, {} volumes, {} snapshots (+{} of AMIs), {} AMIs, {} Elastic IPs in {:.0} s",
        sizes.instances,
        sizes.volumes,
        sizes.snapshots,
        sizes.amis,
        sizes.amis,
        sizes.eips,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Measure {
    wall: Duration,
    /// User + system CPU of the tool's process: its own work, whatever the emulator's speed.
    cpu: Duration,
    rss_kib: u64,
    calls: Vec<Call>,
    summary: String,
}

fn per_operation(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for c in calls {
        *ops.entry(c.operation.clone()).or_default() += 1;
    }
    ops
}

/// The release binary, started cold, answering one run request.
async fn ours(
    bed: &Bed,
    tables: &crate::bed::Tables,
    bin_dir: &Path,
    function: &str,
) -> Result<Measure> {
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
    spec.timeout = Duration::from_secs(900);
    let started = Instant::now();
    let mut host = LambdaHost::start(spec).await?;
    let report = host
        .invoke(&json!({"accounts": [ACCOUNT], "regions": [REGION]}))
        .await?
        .ok()?;
    let wall = started.elapsed();
    if !report["errors"].as_array().is_some_and(Vec::is_empty) {
        bail!("{function} reported errors: {}", report["errors"]);
    }
    let target = &report["targets"][0];
    Ok(Measure {
        wall,
        cpu: host.cpu_time().unwrap_or_default(),
        rss_kib: host.peak_rss_kib().unwrap_or_default(),
        calls: proxy.forwarder.calls(),
        summary: format!("scanned {} counts {}", target["scanned"], target["counts"]),
    })
}

/// Cloud Custodian with the same rules, through its own proxy; `time` reports its peak RSS.
async fn custodian(bed: &Bed, custodian: &Path, policy: &Path, out: &Path) -> Result<Measure> {
    let proxy = AwsProxy::start(&bed.endpoint).await?;
    let credentials = bed
        .member(ACCOUNT)
        .await?
        .credentials_provider()
        .ok_or_else(|| anyhow!("no credentials"))?
        .provide_credentials()
        .await?;
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let output = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "%M %U %S"])
        .arg(custodian)
        .args(["run", "--cache-period", "0", "--region", REGION, "-s"])
        .arg(out)
        .arg(policy)
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            credentials.session_token().unwrap_or_default(),
        )
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .context("running custodian")?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("custodian failed: {stderr}");
    }
    let last: Vec<f64> = stderr
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (rss_kib, cpu) = match last.as_slice() {
        [rss, user, system] => (*rss as u64, Duration::from_secs_f64(user + system)),
        _ => bail!("unexpected `time` output: {stderr}"),
    };
    let mut matched = BTreeMap::new();
    for entry in std::fs::read_dir(out)? {
        let dir = entry?.path();
        if let Ok(text) = std::fs::read_to_string(dir.join("resources.json")) {
            let n = serde_json::from_str::<Value>(&text)?
                .as_array()
                .map_or(0, Vec::len);
            matched.insert(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                n,
            );
        }
    }
    Ok(Measure {
        wall,
        cpu,
        rss_kib,
        calls: proxy.forwarder.calls(),
        summary: format!("matched {matched:?}"),
    })
}

impl Measure {
    /// Wall time spent waiting on the emulator (overlapping calls counted once).
    fn emulator(&self) -> Duration {
        crate::proxy::busy(&self.calls)
    }

    /// Wall time not spent waiting on the emulator.
    fn own(&self) -> Duration {
        self.wall.saturating_sub(self.emulator())
    }
}

fn print(name: &str, m: &Measure) {
    println!(
        "  {name:<20} wall {:>6.2} s = emulator {:>6.2} s + own {:>5.2} s   CPU {:>5.2} s   peak RSS {:>6.1} MiB   AWS calls {:>4}",
        m.wall.as_secs_f64(),
        m.emulator().as_secs_f64(),
        m.own().as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.rss_kib as f64 / 1024.0,
        m.calls.len(),
    );
    println!("  {:<20} {:?}", "", per_operation(&m.calls));
    println!("  {:<20} {}", "", m.summary);
}

pub async fn run(
    bin_dir: &Path,
    functions: &[String],
    sizes: &Sizes,
    custodian_bin: Option<PathBuf>,
) -> Result<bool> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables("bench-gov").await?;
    AccountsTable::new(bed.dynamodb(), tables.name("AccountsTable"))
        .put(&Account {
            account_id: ACCOUNT.into(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(ACCOUNT)),
            external_id: None,
            regions: vec![REGION.into()],
        })
        .await?;
    seed(&bed, sizes).await?;
    let policies = crate::template::workspace_root().join("infra/local/bench");
    let out = crate::template::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let mut ok = true;
    let mut report = serde_json::Map::new();
    for function in functions {
        let policy = policies.join(format!("c7n-{function}.yml"));
        println!("\n== {function} (release x86_64) vs Cloud Custodian, one account and region ==");
        // Twice: the first run records what it finds, the second is the steady state.
        let first = ours(&bed, &tables, bin_dir, function).await?;
        print("ours, first run", &first);
        let steady = ours(&bed, &tables, bin_dir, function).await?;
        print("ours, steady state", &steady);
        let peer = match &custodian_bin {
            Some(bin) => {
                let m = custodian(&bed, bin, &policy, &out.join(format!("c7n-{function}"))).await?;
                print("cloud custodian", &m);
                Some(m)
            }
            None => {
                println!(
                    "  cloud custodian: not installed (make bench installs it into .venv-c7n)"
                );
                None
            }
        };
        let ratio = |f: fn(&Measure) -> f64| peer.as_ref().map(|p| f(p) / f(&steady).max(1e-3));
        let wall = ratio(|m| m.wall.as_secs_f64());
        let own = ratio(|m| m.own().as_secs_f64());
        let cpu = ratio(|m| m.cpu.as_secs_f64());
        let rss = first.rss_kib.max(steady.rss_kib);
        let met = rss <= RSS_TARGET_KIB && own.is_none_or(|s| s >= SPEEDUP_TARGET);
        let x = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.1}×"));
        println!(
            "  vs custodian: own time {} faster (target ≥ 3×), CPU {} less, wall {} (emulator-bound); peak RSS {:.1} MiB (target ≤ 64): targets {}",
            x(own),
            x(cpu),
            x(wall),
            rss as f64 / 1024.0,
            if met { "met" } else { "MISSED" }
        );
        ok &= met;
        report.insert(
            function.clone(),
            json!({
                "first_run_s": first.wall.as_secs_f64(),
                "steady_run_s": steady.wall.as_secs_f64(),
                "steady_emulator_s": steady.emulator().as_secs_f64(),
                "steady_own_s": steady.own().as_secs_f64(),
                "steady_cpu_s": steady.cpu.as_secs_f64(),
                "peak_rss_kib": rss,
                "aws_calls_first": per_operation(&first.calls),
                "aws_calls_steady": per_operation(&steady.calls),
                "custodian_s": peer.as_ref().map(|p| p.wall.as_secs_f64()),
                "custodian_emulator_s": peer.as_ref().map(|p| p.emulator().as_secs_f64()),
                "custodian_own_s": peer.as_ref().map(|p| p.own().as_secs_f64()),
                "custodian_cpu_s": peer.as_ref().map(|p| p.cpu.as_secs_f64()),
                "custodian_rss_kib": peer.as_ref().map(|p| p.rss_kib),
                "custodian_calls": peer.as_ref().map(|p| per_operation(&p.calls)),
                "speedup_own": own,
                "speedup_cpu": cpu,
                "speedup_wall": wall,
            }),
        );
    }
    std::fs::write(
        out.join("governance.json"),
        serde_json::to_string_pretty(&Value::Object(report))?,
    )?;
    println!("report: target/bench/governance.json");
    Ok(ok)
}
