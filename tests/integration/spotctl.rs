//! The operator CLI against the bed.

use std::process::Output;

use anyhow::Result;
use testbed::{Launch, bed::bin_path};

use crate::support::*;

fn spotctl(h: &Harness, args: &[&str]) -> Result<Output> {
    Ok(std::process::Command::new(bin_path("spotctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &h.bed.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("QUARANTINE_TABLE", h.tables.name("QuarantineTable"))
        .env("ACCOUNTS_TABLE", h.tables.name("AccountsTable"))
        .env("SCHEDULES_TABLE", h.tables.name("SchedulesTable"))
        .output()?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_check_and_release_quarantined_pools() -> Result<()> {
    let mut h = Harness::start("spotctl").await?;
    let instance = Launch::new("m5.large")
        .in_az("us-east-1d")
        .spot()
        .run(&h.bed.ec2())
        .await?;
    h.invoke(&event(WARNING, &instance)?).await?.ok()?;
    let pool = "us-east-1#use1-az4#m5.large";

    let list = spotctl(&h, &["quarantine", "list"])?;
    assert!(list.status.success(), "{list:?}");
    assert!(stdout(&list).contains(pool), "{}", stdout(&list));
    assert!(stdout(&list).contains("interruption warning"));

    let check = spotctl(&h, &["quarantine", "check", pool])?;
    assert_eq!(check.status.code(), Some(3), "{check:?}");

    let release = spotctl(&h, &["quarantine", "release", pool, "--by", "oncall"])?;
    assert!(release.status.success(), "{release:?}");

    assert_eq!(
        spotctl(&h, &["quarantine", "check", pool])?.status.code(),
        Some(0)
    );
    assert!(stdout(&spotctl(&h, &["quarantine", "list"])?).contains("no quarantined pools"));
    let all = stdout(&spotctl(&h, &["quarantine", "list", "--all"])?);
    assert!(all.contains("released") && all.contains("oncall"), "{all}");

    let again = spotctl(&h, &["quarantine", "release", pool])?;
    assert!(!again.status.success());
    let bad = spotctl(&h, &["quarantine", "check", "not-a-pool"])?;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "clap rejects a malformed pool key"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_register_accounts() -> Result<()> {
    let h = Harness::start("spotctl-accounts").await?;
    let put = spotctl(
        &h,
        &[
            "accounts",
            "put",
            "222222222222",
            "--environment",
            "LAB",
            "--role-arn",
            "arn:aws:iam::222222222222:role/SpotOptimizerMember",
            "--external-id",
            "x-123456",
        ],
    )?;
    assert!(put.status.success(), "{put:?}");
    let get = stdout(&spotctl(&h, &["accounts", "get", "222222222222"])?);
    assert!(
        get.contains("LAB") && get.contains("SpotOptimizerMember"),
        "{get}"
    );
    assert!(!get.contains("x-123456"), "the external id is not printed");
    assert!(
        !spotctl(&h, &["accounts", "put", "12", "--environment", "PROD"])?
            .status
            .success()
    );
    assert!(
        !spotctl(
            &h,
            &[
                "accounts",
                "put",
                "222222222222",
                "--environment",
                "STAGING"
            ]
        )?
        .status
        .success()
    );
    Ok(())
}

/// `spotctl schedule check` is table-free: no endpoint, no credentials, no AWS configuration.
#[test]
fn schedule_check_answers_on_one_line_and_exits_2_with_why_on_a_bad_input() -> Result<()> {
    let check = |args: &[&str]| {
        std::process::Command::new(bin_path("spotctl"))
            .args(["schedule", "check"])
            .args(args)
            .env_clear()
            .output()
    };
    // The repeated autumn hour in New York reads the same cell twice; the spring gap in Berlin
    // reads its neighbours' cells.
    for at in ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"] {
        let o = check(&["--awake", "Sun 1-2", "--tz", "America/New_York", "--at", at])?;
        assert_eq!(
            (o.status.code(), stdout(&o).as_str()),
            (Some(0), "awake\n"),
            "{o:?}"
        );
    }
    let o = check(&[
        "--awake",
        "Sun 2-3",
        "--tz",
        "Europe/Berlin",
        "--at",
        "2026-03-29T01:30:00Z",
    ])?;
    assert_eq!(stdout(&o), "asleep\n");
    let matrix = "0".repeat(168);
    let o = check(&["--matrix", &matrix, "--at", "2026-03-29T01:30:00Z"])?;
    assert_eq!(stdout(&o), "asleep\n");
    for (args, why) in [
        (
            vec!["--awake", "Mon-Fry 7-19", "--at", "2026-01-05T06:30:00Z"],
            "Fry",
        ),
        (
            vec![
                "--awake",
                "daily 0-24",
                "--tz",
                "Europe/Berln",
                "--at",
                "2026-01-05T06:30:00Z",
            ],
            "IANA",
        ),
        (
            vec!["--matrix", "0101", "--at", "2026-01-05T06:30:00Z"],
            "168",
        ),
        (vec!["--awake", "daily 0-24", "--at", "monday"], "RFC 3339"),
    ] {
        let o = check(&args)?;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(why),
            "{args:?}: {o:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_put_show_and_list_schedules_and_a_bad_one_is_never_written() -> Result<()> {
    let h = Harness::start("spotctl-schedules").await?;
    let put = spotctl(
        &h,
        &[
            "schedule",
            "put",
            "office",
            "--tz",
            "Europe/Berlin",
            "--awake",
            "Mon-Fri 7-19; Sat 9-13",
        ],
    )?;
    assert!(put.status.success(), "{put:?}");
    assert!(
        stdout(&put).contains("64 awake hours a week in Europe/Berlin"),
        "{}",
        stdout(&put)
    );
    let night = format!("{}\n", "0".repeat(24)).repeat(7);
    let put = spotctl(
        &h,
        &[
            "schedule",
            "put",
            "lab",
            "--matrix",
            &night,
            "--enforced",
            "--wake-lead-minutes",
            "0",
        ],
    )?;
    assert!(put.status.success(), "{put:?}");

    let show = spotctl(&h, &["schedule", "show", "office"])?;
    let text = stdout(&show);
    assert!(
        text.contains("office (Europe/Berlin): 64 awake hours"),
        "{text}"
    );
    assert!(text.contains("Mon  .......############....."), "{text}");
    assert!(text.contains("Sat  .........####..........."), "{text}");

    // Refused: a bad day, a bad zone, a bad matrix; none is written, the good one is unchanged.
    for args in [
        vec!["--awake", "Mon-Fry 7-19"],
        vec!["--tz", "Europe/Berln", "--awake", "daily 8-9"],
        vec!["--matrix", "0101"],
    ] {
        let mut all = vec!["schedule", "put", "office"];
        all.extend(args.iter());
        let refused = spotctl(&h, &all)?;
        assert!(!refused.status.success(), "{args:?} accepted");
    }
    let list = spotctl(&h, &["schedule", "list", "--json"])?;
    let rows: Vec<serde_json::Value> = stdout(&list)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["name"], "lab");
    assert_eq!(rows[0]["enforced"], true);
    assert_eq!(
        rows[1]["timezone"], "Europe/Berlin",
        "the good one unchanged"
    );
    let table = stdout(&spotctl(&h, &["schedule", "list"])?);
    assert!(table.contains("office") && table.contains("lab"), "{table}");
    let saving = stdout(&spotctl(
        &h,
        &["schedule", "show", "office", "--instance-type", "m5.large"],
    )?);
    assert!(
        saving.contains("h asleep") && saving.contains("per m5.large"),
        "{saving}"
    );
    let missing = spotctl(&h, &["schedule", "show", "nope"])?;
    assert!(!missing.status.success());
    Ok(())
}

/// Each listing reads what the functions recorded, as a table (headings against values) and as
/// JSON lines, with filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_waste_enforcement_the_ledger_and_the_audit_trail() -> Result<()> {
    use crate::governance::Gov;
    use chrono::Utc;
    use spot_domain::hibernation::{Schedule, Week};
    use spot_domain::saga::SagaMode;
    use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};

    let g = Gov::start("spotctl-listings").await?;
    let ec2 = g.ec2("us-east-1");
    let rogue = Launch::new("t3.micro")
        .tag("Name", "rogue")
        .run(&ec2)
        .await?;
    let address = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await?
        .allocation_id()
        .unwrap_or_default()
        .to_owned();
    let now = Utc::now();
    g.scan(&[], now).await?;
    g.enforce(&[], now).await?;
    // One audited action: the hibernation reconciler stops a scheduled instance, live.
    let mut never = Schedule::new("never", "UTC", Week::from_matrix(&"0".repeat(168))?)?;
    never.wake_lead_minutes = 0;
    spot_aws::SchedulesTable::new(g.bed.dynamodb(), g.tables.name("SchedulesTable"))
        .put(&never)
        .await?;
    let sleeper = Launch::new("t3.micro")
        .tag(spot_domain::tags::SCHEDULE_TAG, "never")
        .tag("ManagedBy", "SpotOptimizer")
        .run(&ec2)
        .await?;
    let account = g.account.clone();
    g.reconcile(
        &[("MODE", "live"), ("LIVE_ACCOUNTS", account.as_str())],
        &["us-east-1"],
        now + chrono::TimeDelta::hours(1),
    )
    .await?;
    // A seeded ledger record.
    spot_aws::LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"))
        .record(&LedgerRecord {
            switch_id: format!("sw-{account}-us-east-1-i-0c"),
            account_id: account.clone(),
            region: "us-east-1".into(),
            source_instance_id: "i-0cccccccccccccccc".into(),
            mode: SagaMode::Shadow,
            status: LedgerStatus::Shadow,
            new_instance_id: None,
            pool: Some("us-east-1#use1-az4#m5.large".parse()?),
            instance_type: Some("m5.large".into()),
            on_demand_price: Some(0.096),
            spot_price: Some(0.035),
            saving_per_hour: Some(0.061),
            risk: None,
            cause: None,
            at: now,
            group: None,
            downtime_ms: None,
        })
        .await?;

    let json = |args: &[&str]| -> Result<Vec<serde_json::Value>> {
        let out = g.spotctl(args)?;
        assert!(out.status.success(), "{args:?}: {out:?}");
        Ok(stdout(&out)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    // The table: the value under each heading of the row that names `id`.
    let row = |args: &[&str], id: &str| -> Result<std::collections::BTreeMap<String, String>> {
        let out = stdout(&g.spotctl(args)?);
        let cells = |line: &str| -> Vec<String> {
            line.split(['│', '┆'])
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        };
        let header = cells(out.lines().nth(1).unwrap_or_default());
        let line = out.lines().find(|l| l.contains(id)).unwrap_or_default();
        let values = cells(line);
        assert_eq!(header.len(), values.len(), "{out}");
        assert!(!header.is_empty(), "{out}");
        Ok(header.into_iter().zip(values).collect())
    };
    let mine = ["--account", account.as_str()];

    let waste = json(&[&["waste", "list", "--json"][..], &mine].concat())?;
    let eip = waste
        .iter()
        .find(|r| r["resource_id"] == address.as_str())
        .expect("the idle address");
    let status = eip["status"].as_str().unwrap_or_default().to_owned();
    let r = row(&[&["waste", "list"][..], &mine].concat(), &address)?;
    assert_eq!(r["account"], account);
    assert_eq!(r["kind"], "elastic_ip");
    assert_eq!(r["status"], status);
    let none = stdout(&g.spotctl(&[
        "waste",
        "list",
        "--status",
        "DELETED",
        "--account",
        &account,
    ])?);
    assert!(none.contains("no waste recorded"), "{none}");

    let flagged = json(
        &[
            &["enforcement", "list", "--json", "--status", "flagged"][..],
            &mine,
        ]
        .concat(),
    )?;
    assert!(
        flagged.iter().any(|r| r["instance_id"] == rogue.as_str()),
        "{flagged:?}"
    );
    let r = row(&[&["enforcement", "list"][..], &mine].concat(), &rogue)?;
    assert_eq!(
        (r["status"].as_str(), r["deadline set in"].as_str()),
        ("FLAGGED", "audit")
    );

    let ledger = json(&[&["ledger", "list", "--json"][..], &mine].concat())?;
    assert_eq!(ledger.len(), 1, "only switch records: {ledger:?}");
    let r = row(
        &[&["ledger", "list"][..], &mine].concat(),
        "i-0cccccccccccccccc",
    )?;
    assert_eq!(
        (r["status"].as_str(), r["saving $/h"].as_str()),
        ("SHADOW", "0.0610")
    );

    let audit = json(
        &[
            &[
                "audit",
                "list",
                "--json",
                "--function",
                "hibernation-reconciler",
            ][..],
            &mine,
        ]
        .concat(),
    )?;
    assert!(
        audit.iter().any(|r| r["action"] == "stop"
            && r["resource_id"]
                .as_str()
                .is_some_and(|ids| ids.contains(&sleeper))
            && r["outcome"] == "done"),
        "{audit:?}"
    );
    let r = row(
        &[
            &["audit", "list", "--function", "hibernation-reconciler"][..],
            &mine,
        ]
        .concat(),
        &sleeper,
    )?;
    assert_eq!(
        (
            r["action"].as_str(),
            r["mode"].as_str(),
            r["outcome"].as_str()
        ),
        ("stop", "live", "done")
    );
    let later = stdout(&g.spotctl(&["audit", "list", "--since", "2099-01-01T00:00:00Z"])?);
    assert!(later.contains("no audited action"), "{later}");
    let bad = g.spotctl(&["audit", "list", "--since", "yesterday"])?;
    assert!(!bad.status.success());
    Ok(())
}
