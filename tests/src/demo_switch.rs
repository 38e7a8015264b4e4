//! `make demo`, part 3: the atomic switch, executed by the state machine against the real step
//! binaries: a shadow switch, an approved live switch (with the best pool quarantined and an
//! Elastic IP to move), and a switch whose clone fails its status checks and is rolled back.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::bed::{HOME_ACCOUNT, REGION};
use crate::fixtures::Launch;
use crate::saga::{
    Execution, SagaBed, address_holder, clones, elastic_ip, impaired_status, leftovers,
    spot_prices, state,
};

fn request(instance: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": REGION, "instance_id": instance, "mode": mode,
        "target": {"instance_types": ["m5.large", "m6i.large", "m5a.large"], "az_ids": ["use1-az1", "use1-az2"]},
        "settings": {"wait_seconds": 1, "image_checks": 5, "health_checks": 3, "approval_timeout_seconds": 120}
    })
}

fn path(e: &Execution) -> String {
    e.path.join(" → ")
}

fn print_plan(plan: &Value) {
    println!(
        "     plan: risk {} ({}), on-demand ${:.4}/h",
        plan["risk"].as_str().unwrap_or("?"),
        plan["risk_reasons"]
            .as_array()
            .map(|r| r
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        plan["on_demand_price"].as_f64().unwrap_or_default()
    );
    for c in plan["candidates"].as_array().into_iter().flatten().take(3) {
        println!(
            "       candidate {:<32} Spot ${:.4}/h  interruptions {:<7} saves ${:.4}/h",
            c["pool"].as_str().unwrap_or("?"),
            c["spot_price"].as_f64().unwrap_or_default(),
            c["interruption_label"].as_str().unwrap_or("?"),
            c["saving_per_hour"].as_f64().unwrap_or_default()
        );
    }
    for x in plan["exclusions"].as_array().into_iter().flatten().take(3) {
        println!(
            "       excluded  {:<32} {}",
            x["what"].as_str().unwrap_or("?"),
            x["detail"].as_str().unwrap_or("?")
        );
    }
}

pub async fn run() -> Result<()> {
    println!(
        "\n== Atomic switch: a standalone on-demand instance moved to Spot by Step Functions ==\n"
    );
    // Live switches of HIGH risk or more wait for an operator.
    let saga = SagaBed::start(
        "demo-switch",
        &[("switch-plan", "APPROVAL_THRESHOLD", "HIGH")],
    )
    .await?;
    let ec2 = saga.bed.ec2();
    let web = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("Name", "web-1")
        .tag("Team", "storefront")
        .run(&ec2)
        .await?;
    let (allocation, address) = elastic_ip(&ec2, &web).await?;
    let batch = Launch::new("m5.large")
        .in_az("us-east-1c")
        .tag("Name", "batch-1")
        .run(&ec2)
        .await?;
    // Spot prices as EC2 would quote them (moto's are one constant).
    saga.proxy.forwarder.inject(spot_prices(&[
        ("m6i.large", "us-east-1b", 0.0300),
        ("m6i.large", "us-east-1c", 0.0412),
        ("m5.large", "us-east-1b", 0.0352),
        ("m5.large", "us-east-1c", 0.0371),
        ("m5a.large", "us-east-1b", 0.0330),
        ("m5a.large", "us-east-1c", 0.0345),
    ]));
    let best = "us-east-1#use1-az1#m6i.large";
    saga.quarantine(best).await?;
    println!("1. Seeded: {web} m5.large on-demand `web-1` with Elastic IP {address}");
    println!("           {batch} m5.large on-demand `batch-1`");
    println!("           pool {best} (the cheapest) quarantined (a recent interruption warning)");
    println!(
        "           Spot prices injected: m6i.large $0.0300-0.0412/h, m5.large $0.0352-0.0371, m5a.large $0.0330-0.0345"
    );

    let name = saga.name("web-shadow");
    let e = saga.run(&name, &request(&web, "shadow")).await?;
    println!("\n2. Shadow switch of web-1 ({:?}): {}", e.status, path(&e));
    print_plan(&e.output["plan"]);
    let record = saga.ledger(&name).await?.context("no ledger record")?;
    println!(
        "     ledger: {:?}, would save ${:.4}/h (${:.0}/month); web-1 is still {}",
        record.status,
        record.saving_per_hour.unwrap_or_default(),
        record.saving_per_hour.unwrap_or_default() * 730.0,
        state(&ec2, &web).await?.as_str()
    );

    let name = saga.name("web-live");
    let arn = saga.start_execution(&name, &request(&web, "live")).await?;
    saga.wait_for_approval(&name).await?;
    println!("\n3. Live switch of web-1: paused for approval (`spotctl approvals list`):");
    let list = saga.spotctl(&["approvals", "list"])?;
    print!("{}", String::from_utf8_lossy(&list.stdout));
    let answer = saga.spotctl(&["approvals", "approve", &name, "--by", "demo-operator"])?;
    print!(
        "     $ spotctl approvals approve {name}\n     {}",
        String::from_utf8_lossy(&answer.stdout)
    );
    let e = saga.wait(&arn, std::time::Duration::from_secs(120)).await?;
    println!("     {:?}: {}", e.status, path(&e));
    let clone = e.output["launch"]["instance_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "     clone {clone} in {} (the quarantined pool skipped), Elastic IP now on {}",
        e.output["launch"]["pool"].as_str().unwrap_or("?"),
        address_holder(&ec2, &allocation).await?.unwrap_or_default()
    );
    println!(
        "     {} state transitions, {} Lambda invocations, {:.1} s with waits of 1 s",
        e.path.len(),
        e.invocations,
        e.wall.as_secs_f64()
    );

    let name = saga.name("batch-live");
    saga.proxy.forwarder.inject(impaired_status());
    // m6i.large only: a MEDIUM-risk switch, below the demo's approval threshold.
    let mut input = request(&batch, "live");
    input["target"]["instance_types"] = json!(["m6i.large"]);
    let e = saga.run(&name, &input).await?;
    println!(
        "\n4. Live switch of batch-1, its clone's status checks impaired (injected by the bed):"
    );
    println!(
        "     {:?} ({}): {}",
        e.status,
        e.error.as_deref().unwrap_or("-"),
        path(&e)
    );
    for undone in e.exited["RollbackFinish"]["rollback"]["undone"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("       rollback: {}", undone.as_str().unwrap_or("?"));
    }
    let (images, snapshots) = leftovers(&ec2, &name).await?;
    println!(
        "     left behind: {} clone(s) running, {} image(s), {} snapshot(s)",
        clones(&ec2, &name)
            .await?
            .iter()
            .filter(|(_, s)| s.as_str() == "running")
            .count(),
        images.len(),
        snapshots.len()
    );

    println!("\n5. Instances now:");
    for (what, id) in [
        ("web-1 (source)", web.as_str()),
        ("web-1 clone (Spot)", clone.as_str()),
        ("batch-1 (source)", batch.as_str()),
    ] {
        println!("     {what:<20} {id}  {}", state(&ec2, id).await?.as_str());
    }
    savings(&saga).await?;
    guardrails(&saga).await
}

/// The kill switch and the circuit breaker's count: an operator pauses everything, the next live
/// switch is refused at its first step, the resume is audited.
async fn guardrails(saga: &SagaBed) -> Result<()> {
    let control =
        spot_aws::ControlTable::new(saga.bed.dynamodb(), saga.tables.name("ControlTable"));
    println!(
        "
7. Guardrails: the circuit breaker counted batch-1's rollback ({} of 3 before account {HOME_ACCOUNT} is paused)",
        control.failures(HOME_ACCOUNT).await?.len()
    );
    let show = |args: &[&str]| -> Result<()> {
        let out = saga.spotctl(args)?;
        println!("     $ spotctl {}", args.join(" "));
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("     {line}");
        }
        Ok(())
    };
    show(&[
        "pause",
        "--all",
        "--by",
        "demo-operator",
        "--reason",
        "incident 42",
    ])?;
    show(&["pauses"])?;
    let ec2 = saga.bed.ec2();
    let api = Launch::new("m5.large")
        .in_az("us-east-1b")
        .tag("Name", "api-1")
        .run(&ec2)
        .await?;
    let name = saga.name("api-live");
    let e = saga.run(&name, &request(&api, "live")).await?;
    println!(
        "     live switch of api-1 while paused: {:?} ({}): {}
       {}",
        e.status,
        e.error.as_deref().unwrap_or("-"),
        path(&e),
        e.cause
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    show(&[
        "resume",
        "--all",
        "--by",
        "demo-operator",
        "--reason",
        "incident 42 closed",
    ])?;
    show(&["audit", "list", "--function", "spotctl"])?;
    Ok(())
}

/// The hourly savings refresh, a day later, after Spot prices rose by a fifth half-way through:
/// what the switch saved at each price in force, net of the stopped source it keeps.
async fn savings(saga: &SagaBed) -> Result<()> {
    let now = chrono::Utc::now();
    let quotes = [
        ("m6i.large", "us-east-1b", 0.0300),
        ("m6i.large", "us-east-1c", 0.0412),
        ("m5.large", "us-east-1b", 0.0352),
        ("m5.large", "us-east-1c", 0.0371),
        ("m5a.large", "us-east-1b", 0.0330),
        ("m5a.large", "us-east-1c", 0.0345),
    ];
    let mut history = Vec::new();
    for (instance_type, az, usd) in quotes {
        history.push((instance_type, az, usd, now - chrono::TimeDelta::hours(1)));
        history.push((
            instance_type,
            az,
            usd * 1.2,
            now + chrono::TimeDelta::hours(12),
        ));
    }
    saga.proxy.forwarder.clear_faults();
    saga.proxy
        .forwarder
        .inject(crate::saga::spot_price_history(&history));
    let flows = crate::governance::Flows::new(&saga.tables, &saga.proxy.endpoint()).await;
    flows
        .refresher(&[], now + chrono::TimeDelta::hours(24))?
        .run(json!({"regions": [REGION]}), "demo")
        .await?;
    let accruals = spot_aws::LedgerTable::new(saga.bed.dynamodb(), saga.tables.name("LedgerTable"))
        .accruals()
        .await?;
    println!(
        "\n6. Net savings a day later (`spotctl savings --detail`): the hourly refresh priced each hour at the Spot price\n   in force (up 20 % after 12 h), less the stopped source's volumes and the image's snapshots kept"
    );
    println!("{}", spotctl::savings::detail_table(&accruals));
    let mut totals = std::collections::BTreeMap::new();
    spot_domain::savings::add_accruals(&mut totals, &accruals);
    println!("   per account, region and month (`spotctl savings`):");
    println!("{}", spotctl::savings::totals_table(&totals));
    Ok(())
}
