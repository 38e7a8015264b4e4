//! `make demo`, second part: the waste scanner and the security enforcer on a seeded member
//! account: the real binaries on a schedule's event, then the same flows in-process with the clock
//! advanced, in audit and then live mode.

use anyhow::Result;
use aws_sdk_ec2::types::{AttributeBooleanValue, DomainType, Tag, VolumeType};
use chrono::{DateTime, TimeDelta, Utc};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::{Value, json};
use spot_domain::tags::EXEMPT_TAG;
use spot_domain::{Account, Environment};

use crate::bed::Bed;
use crate::fixtures::Launch;
use crate::governance::Flows;
use crate::lambda_host::LambdaHost;

const ACCOUNT: &str = "444444444444";

/// Environment overrides of one run.
type Env<'a> = [(&'a str, &'a str)];

struct Seeded {
    idle_ips: Vec<String>,
    rogue: String,
    protected: String,
}

async fn seed(
    ec2: &aws_sdk_ec2::Client,
    autoscaling: &aws_sdk_autoscaling::Client,
) -> Result<Seeded> {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let web = Launch::new("m5.large")
        .tag("ManagedBy", "SpotOptimizer")
        .tag("Name", "web")
        .run(ec2)
        .await?;
    Launch::new("m5.large")
        .tag("aws:autoscaling:groupName", "api")
        .run(ec2)
        .await?;
    Launch::new("t3.small")
        .tag(EXEMPT_TAG, "build box")
        .tag("Name", "builder")
        .run(ec2)
        .await?;
    let rogue = Launch::new("p3.2xlarge")
        .tag("Name", "crypto-miner")
        .run(ec2)
        .await?;
    let protected = Launch::new("m5.xlarge")
        .tag("Name", "legacy-db")
        .run(ec2)
        .await?;
    ec2.modify_instance_attribute()
        .instance_id(&protected)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await?;

    let mut idle_ips = Vec::new();
    for _ in 0..2 {
        let a = ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await?;
        idle_ips.push(a.allocation_id().unwrap_or_default().to_owned());
    }
    let used = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await?;
    ec2.associate_address()
        .set_allocation_id(used.allocation_id().map(str::to_owned))
        .instance_id(&web)
        .send()
        .await?;

    let volume = |size: i32, kind: VolumeType, iops: Option<i32>| {
        ec2.create_volume()
            .availability_zone("us-east-1a")
            .size(size)
            .volume_type(kind)
            .set_iops(iops)
            .send()
    };
    let idle = volume(100, VolumeType::Gp3, None)
        .await?
        .volume_id()
        .unwrap_or_default()
        .to_owned();
    volume(50, VolumeType::Io1, Some(1000)).await?;
    let attached = volume(20, VolumeType::Gp3, None)
        .await?
        .volume_id()
        .unwrap_or_default()
        .to_owned();
    ec2.attach_volume()
        .volume_id(&attached)
        .instance_id(&web)
        .device("/dev/sdf")
        .send()
        .await?;
    ec2.create_snapshot()
        .volume_id(&idle)
        .description("old backup nobody uses")
        .send()
        .await?;

    let builder = Launch::new("t3.micro").run(ec2).await?;
    ec2.create_image()
        .instance_id(&builder)
        .name("golden-2025-01 (unused)")
        .send()
        .await?;
    let current = ec2
        .create_image()
        .instance_id(&builder)
        .name("golden-current")
        .send()
        .await?;
    ec2.terminate_instances()
        .instance_ids(&builder)
        .send()
        .await?;
    ec2.create_launch_template()
        .launch_template_name("api")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .set_image_id(current.image_id().map(str::to_owned))
                .build(),
        )
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                .tags(tag("Name", "api"))
                .build(),
        )
        .send()
        .await?;
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("legacy")
        .set_image_id(current.image_id().map(str::to_owned))
        .instance_type("t3.micro")
        .send()
        .await?;
    Ok(Seeded {
        idle_ips,
        rogue,
        protected,
    })
}

/// Prints a run's JSON summary (as the functions return it), one line per account and region.
fn summary(title: &str, report: &Value) {
    for t in report["targets"].as_array().into_iter().flatten() {
        let mut counts = Vec::new();
        for (kind, statuses) in t["counts"].as_object().into_iter().flatten() {
            for (status, n) in statuses.as_object().into_iter().flatten() {
                counts.push(format!("{kind} {status} {n}"));
            }
        }
        let waste = t["monthly_waste_usd"]
            .as_f64()
            .map(|w| format!("; waste ${w:.2}/month"))
            .unwrap_or_default();
        println!(
            "   {title:<40} mode {:<5} {}{waste}",
            t["mode"].as_str().unwrap_or(""),
            if counts.is_empty() {
                "nothing tracked".to_owned()
            } else {
                counts.join(", ")
            },
        );
        let actions = t["actions"].as_array().cloned().unwrap_or_default();
        let tags = actions.iter().filter(|a| a["action"] == "tag").count();
        if tags > 0 {
            println!("   {:<40}   {tags} owner notice tag(s) written", "");
        }
        for a in actions
            .iter()
            .filter(|a| a["action"] != "tag" && a["action"] != "untag")
        {
            println!(
                "   {:<40}   {} {} → {}",
                "",
                a["action"].as_str().unwrap_or(""),
                a["resource_id"].as_str().unwrap_or(""),
                a["outcome"].as_str().unwrap_or("")
            );
        }
    }
    for e in report["errors"].as_array().into_iter().flatten() {
        println!("   error: {e}");
    }
}

async fn records(
    bed: &Bed,
    table: &str,
) -> Result<Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>> {
    let answer = bed.dynamodb().scan().table_name(table).send().await?;
    let mut items = answer.items.unwrap_or_default();
    let key = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
               k: &str| {
        i.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    items.sort_by_key(|i| (key(i, "kind"), key(i, "resource"), key(i, "instance")));
    Ok(items)
}

fn text(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    key: &str,
) -> String {
    match item.get(key) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.clone(),
        _ => String::new(),
    }
}

async fn print_flag_tag(ec2: &aws_sdk_ec2::Client) -> Result<()> {
    let key = aws_sdk_ec2::types::Filter::builder()
        .name("key")
        .values("spot-optimizer:waste")
        .build();
    let tags = ec2.describe_tags().filters(key).send().await?;
    if let Some(t) = tags
        .tags()
        .iter()
        .find(|t| t.resource_id().is_some_and(|r| r.starts_with("vol-")))
    {
        println!(
            "   what an owner sees on {}: spot-optimizer:waste = \"{}\"",
            t.resource_id().unwrap_or_default(),
            t.value().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn run(bed: &Bed) -> Result<()> {
    println!("\n== Governance: the waste scanner and the security enforcer ==\n");
    let tables = bed.create_tables("demo-gov").await?;
    let flows = Flows::new(&tables, &bed.endpoint).await;
    flows
        .accounts()
        .put(&Account {
            account_id: ACCOUNT.into(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(ACCOUNT)),
            external_id: Some("demo-external-id".into()),
            regions: vec!["us-east-1".into()],
        })
        .await?;
    let member = bed.member(ACCOUNT).await?;
    let ec2 = aws_sdk_ec2::Client::new(&member);
    let seeded = seed(&ec2, &aws_sdk_autoscaling::Client::new(&member)).await?;
    println!(
        "8. Member account {ACCOUNT} seeded: 3 Elastic IPs (1 associated), 3 volumes (1 attached; idle 100 GB gp3"
    );
    println!(
        "   and 50 GB io1 at 1,000 IOPS), 1 snapshot, 2 AMIs (1 used by a launch template and a launch"
    );
    println!(
        "   configuration), instances: web (ManagedBy=SpotOptimizer), api (in an ASG), builder (exempt),"
    );
    println!("   crypto-miner (no authorising tag), legacy-db (no tag, termination protection).");

    println!("\n9. The real Lambda binaries on a schedule's event (system clock, MODE=audit):");
    let schedule = json!({"version": "0", "id": "demo-schedule", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [], "detail": {}});
    for function in ["waste-scanner", "security-enforcer"] {
        let mut host = LambdaHost::start(tables.function(function, &bed.endpoint)?).await?;
        host.wait_ready().await?;
        let mut report = host.invoke(&schedule).await?.ok()?;
        // Show the demo account only (the home account is scanned too).
        if let Some(targets) = report["targets"].as_array_mut() {
            targets.retain(|t| t["account"] == ACCOUNT);
        }
        summary(function, &report);
    }

    println!(
        "\n10. Time travel: the same flows in-process with an injected clock (the binaries always use the"
    );
    println!(
        "    system clock). Waste: candidates are flagged 7 days after first seen, deleted 7 days after"
    );
    println!(
        "    being scheduled in live mode. Live mode needs MODE=live and the account in LIVE_ACCOUNTS."
    );
    let t0 = Utc::now();
    let at = |days: i64| t0 + TimeDelta::days(days);
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", ACCOUNT)];
    let request = json!({"accounts": [ACCOUNT]});
    let steps: [(&str, DateTime<Utc>, &Env); 4] = [
        ("day 31, audit: old enough to be waste", at(31), &[]),
        ("day 38, audit: flagged, owners tagged", at(38), &[]),
        ("day 38, live: deletion scheduled", at(38), &live),
        ("day 45, live: grace over, deleted", at(45), &live),
    ];
    for (i, (title, now, env)) in steps.into_iter().enumerate() {
        let report = flows
            .scanner(env, now)?
            .run(request.clone(), "demo")
            .await?;
        summary(title, &serde_json::to_value(&report)?);
        if i == 2 {
            print_flag_tag(&ec2).await?;
        }
    }

    println!(
        "\n11. Security enforcement, live, grace 24 h (flagged in audit mode at step 9, so live mode first"
    );
    println!("    re-announces the deadline with a full grace):");
    for (title, now) in [
        (
            "+1 h, live: deadline re-announced",
            t0 + TimeDelta::hours(1),
        ),
        ("+26 h, live: enforced", t0 + TimeDelta::hours(26)),
    ] {
        let report = flows
            .enforcer(&live, now)?
            .run(request.clone(), "demo")
            .await?;
        summary(title, &serde_json::to_value(&report)?);
    }
    let state = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let answer = ec2.describe_instances().instance_ids(&id).send().await?;
            let state = answer.reservations()[0].instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned());
            anyhow::Ok(state.unwrap_or_default())
        }
    };
    println!(
        "   crypto-miner is {}; legacy-db is {} (termination protection: reported, never forced)",
        state(seeded.rogue).await?,
        state(seeded.protected).await?
    );
    let released = ec2
        .describe_addresses()
        .set_allocation_ids(Some(seeded.idle_ips))
        .send()
        .await
        .is_err();
    println!("   idle Elastic IPs released: {released}");

    println!("\n12. Waste records (what the WASTE_TABLE holds):");
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(["resource", "kind", "status", "$/month", "reason"]);
    for item in records(bed, tables.name("WasteTable"))
        .await?
        .into_iter()
        .filter(|i| text(i, "account") == ACCOUNT)
    {
        table.add_row([
            text(&item, "resource_id"),
            text(&item, "kind"),
            text(&item, "status"),
            text(&item, "monthly_cost_usd"),
            text(&item, "reason").chars().take(70).collect(),
        ]);
    }
    println!("{table}");
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(["instance", "auth_status", "reason"]);
    for item in records(bed, tables.name("EnforcementTable"))
        .await?
        .into_iter()
        .filter(|i| text(i, "account") == ACCOUNT)
    {
        table.add_row([
            text(&item, "instance_id"),
            text(&item, "auth_status"),
            text(&item, "reason").chars().take(80).collect(),
        ]);
    }
    println!("    Enforcement records:\n{table}");
    let audit = records(bed, tables.name("AuditTable")).await?;
    println!(
        "    Audit trail: {} destructive actions, each recorded before it was taken:",
        audit.len()
    );
    for item in &audit {
        println!(
            "      {} {} → {}",
            text(item, "action"),
            text(item, "resource_id"),
            text(item, "outcome")
        );
    }
    Ok(())
}
