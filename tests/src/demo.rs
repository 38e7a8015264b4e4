//! `make demo`: the whole interruption flow against the local bed, narrated.

use anyhow::Result;
use chrono::{SubsecRound, Utc};
use serde_json::Value;
use spot_aws::{AccountsTable, QuarantineTable};
use spot_domain::pool::gatekeeper::{self, Gate};
use spot_domain::{Account, Environment, PoolKey};

use crate::bed::{Bed, HOME_ACCOUNT};
use crate::fixtures::{Event, Launch};
use crate::lambda_host::{LambdaHost, Outcome};
use crate::proxy::AwsProxy;

const MEMBER: &str = "222222222222";
const LAB: &str = "333333333333";

struct Seeded {
    owner: &'static str,
    account: &'static str,
    id: String,
    launch: Launch,
}

pub async fn run() -> Result<()> {
    let bed = Bed::connect().await?;
    println!("\n== Spot optimizer demo: the interruption handler against the local AWS bed ==\n");

    let tables = bed.create_tables("demo").await?;
    println!("1. Tables created from infra/template.yaml:");
    for (logical, name) in &tables.names {
        println!("     {logical:<16} {name}");
    }

    let accounts = AccountsTable::new(bed.dynamodb(), tables.name("AccountsTable"));
    for (account, environment) in [(MEMBER, Environment::Prod), (LAB, Environment::Lab)] {
        accounts
            .put(&Account {
                account_id: account.into(),
                environment,
                role_arn: Some(Bed::role_arn(account)),
                external_id: Some("demo-external-id".into()),
                regions: Vec::new(),
            })
            .await?;
    }
    println!(
        "\n2. Accounts: {HOME_ACCOUNT} home (unregistered: DEFAULT_ENVIRONMENT=PROD, own credentials)"
    );
    println!(
        "             {MEMBER} member PROD, reached by AssumeRole {}",
        Bed::role_arn(MEMBER)
    );
    println!("             {LAB} member LAB (its signals never quarantine)");

    let home_ec2 = bed.ec2();
    let member_ec2 = aws_sdk_ec2::Client::new(&bed.member(MEMBER).await?);
    let lab_ec2 = aws_sdk_ec2::Client::new(&bed.member(LAB).await?);
    let fleet = [
        (
            "home",
            HOME_ACCOUNT,
            &home_ec2,
            Launch::new("m5.large").in_az("us-east-1a"),
        ),
        (
            "home",
            HOME_ACCOUNT,
            &home_ec2,
            Launch::new("m5.large").in_az("us-east-1d").spot(),
        ),
        (
            "home",
            HOME_ACCOUNT,
            &home_ec2,
            Launch::new("c5.xlarge").in_az("us-east-1b").spot(),
        ),
        (
            "home",
            HOME_ACCOUNT,
            &home_ec2,
            Launch::new("c5.xlarge").in_az("us-east-1c"),
        ),
        (
            "member",
            MEMBER,
            &member_ec2,
            Launch::new("c5.xlarge").in_az("us-east-1b").spot(),
        ),
        (
            "member",
            MEMBER,
            &member_ec2,
            Launch::new("r5.large").in_az("us-east-1c").spot(),
        ),
        (
            "lab",
            LAB,
            &lab_ec2,
            Launch::new("m5.large").in_az("us-east-1d").spot(),
        ),
    ];
    let mut seeded = Vec::new();
    println!("\n3. Fleet seeded:");
    for (owner, account, ec2, launch) in fleet {
        let id = launch
            .clone()
            .tag("Name", &format!("demo-{owner}"))
            .run(ec2)
            .await?;
        println!(
            "     {owner:<6} {id}  {:<10} {}  {}",
            launch.instance_type,
            launch.az,
            if launch.spot { "spot" } else { "on-demand" }
        );
        seeded.push(Seeded {
            owner,
            account,
            id,
            launch,
        });
    }
    let spot = |owner: &str, instance_type: &str| {
        seeded
            .iter()
            .find(|s| s.owner == owner && s.launch.spot && s.launch.instance_type == instance_type)
            .map(|s| (s.id.clone(), s.account))
            .unwrap_or_default()
    };

    let proxy = AwsProxy::start(&bed.endpoint).await?;
    let mut handler =
        LambdaHost::start(tables.function("interruption-handler", &proxy.endpoint())?).await?;
    let init = handler.wait_ready().await?;
    println!(
        "\n4. Events delivered to the real `interruption-handler` binary through a local Lambda Runtime API (init {:.1} ms):",
        init.as_secs_f64() * 1e3
    );
    let now = Utc::now().trunc_subsecs(0);
    let event =
        |file: &str, (instance, account): (String, &str), minutes_ago: i64| -> Result<Event> {
            Ok(Event::load(file)?
                .instance(&instance)
                .account(account)
                .id(&format!("demo-{instance}-{minutes_ago}"))
                .time(&(now - chrono::TimeDelta::minutes(minutes_ago)).to_rfc3339()))
        };
    let warning = "spot-interruption-warning.json";
    let rebalance = "rebalance-recommendation.json";
    let first = event(warning, spot("home", "m5.large"), 30)?;
    let deliveries = [
        ("interruption warning, home m5.large", first.clone()),
        (
            "rebalance recommendation, member r5.large",
            event(rebalance, spot("member", "r5.large"), 25)?,
        ),
        ("the first warning delivered again", first),
        (
            "interruption warning, member c5.xlarge (AssumeRole)",
            event(warning, spot("member", "c5.xlarge"), 20)?,
        ),
        (
            "interruption warning, home c5.xlarge, same pool",
            event(warning, spot("home", "c5.xlarge"), 10)?,
        ),
        (
            "interruption warning, LAB account",
            event(warning, spot("lab", "m5.large"), 5)?,
        ),
    ];
    for (what, e) in &deliveries {
        let before = proxy.forwarder.calls().len();
        let outcome = handler.invoke(e.json()).await?;
        let calls = proxy.forwarder.calls_since(before).len();
        print_outcome(what, &outcome, calls);
    }
    let outcome = handler
        .invoke_raw(&b"{\"detail-type\": \"EC2 Spot Instance"[..])
        .await?;
    print_outcome("a truncated (malformed) event", &outcome, 0);
    let mut unknown = deliveries[0].1.clone();
    unknown.0["detail-type"] = "EC2 Instance State-change Notification".into();
    print_outcome(
        "an unknown detail-type",
        &handler.invoke(unknown.json()).await?,
        0,
    );

    let store = QuarantineTable::new(bed.dynamodb(), tables.name("QuarantineTable"));
    let active = gatekeeper::active(&store, Utc::now()).await?;
    println!("\n5. Quarantined pools (what `spotctl quarantine list` prints):");
    println!("{}", spotctl::quarantine_table(&active, Utc::now()));

    println!("\n6. The gatekeeper, as every launch path will ask it:");
    for pool in [
        "us-east-1#use1-az4#m5.large",
        "us-east-1#use1-az6#m5.large",
        "us-east-1#use1-az1#c5.xlarge",
    ] {
        let key: PoolKey = pool.parse()?;
        match gatekeeper::check(&store, &key, Utc::now()).await? {
            Gate::Open => println!("     launch in {pool}? yes, open"),
            Gate::Quarantined(r) => println!(
                "     launch in {pool}? no, quarantined until {}",
                r.expires_at
            ),
        }
    }
    let decisions = handler
        .json_logs()
        .into_iter()
        .filter(|l| l["message"] == "decision")
        .count();
    println!(
        "\n7. The handler wrote {decisions} JSON decision log lines and {} EMF metric lines; peak RSS {} KiB (debug build).",
        handler
            .json_logs()
            .iter()
            .filter(|l| l.get("_aws").is_some())
            .count(),
        handler.peak_rss_kib().unwrap_or_default()
    );
    crate::demo_governance::run(&bed).await?;
    crate::demo_switch::run().await?;
    crate::demo_swap::run().await?;
    println!("\nRelease figures: `make bench`. The bed stops now.\n");
    Ok(())
}

fn print_outcome(what: &str, outcome: &Outcome, calls: usize) {
    match outcome {
        Outcome::Ok(v) => println!(
            "     {what:<52} → {:<26} {}{}",
            v["action"].as_str().unwrap_or("?"),
            v["pool"].as_str().unwrap_or(""),
            match (&v["interruptions"], calls) {
                (Value::Number(n), c) => format!("  (signals: {n}, AWS calls: {c})"),
                (_, c) if c > 0 => format!("  (AWS calls: {c})"),
                _ => String::new(),
            }
        ),
        Outcome::Err(e) => {
            let message: String = e
                .error_message
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(90)
                .collect();
            println!(
                "     {what:<52} → error {}\n{:<60}{message}",
                e.error_type, ""
            )
        }
    }
}
