//! Guardrails against the bed: the circuit breaker (three rolled-back live switches pause an
//! account, the fourth live start is refused, shadow goes on, another account is not touched, an
//! operator resumes), the kill switch in the middle of an ASG swap and of a waste deletion run,
//! and shadow before live (promotion refused before the shadow period and the report).

use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use spot_aws::{AccountsTable, ControlTable};
use spot_domain::governance::mode::Mode;
use spot_domain::guard::{Activity, Cause, Pause, Scope};
use spot_domain::saga::ledger::LedgerStatus;
use spot_domain::{Account, Environment, ErrorName};
use testbed::bed::bin_path;
use testbed::saga::{Execution, SagaBed, clones, impaired_status, initializing_status};
use testbed::swap::{GroupSpec, replacements, snapshot};
use testbed::{Bed, Fault, HOME_ACCOUNT, Launch, Tables};

use crate::governance::Gov;
use crate::support::s;

fn show(e: &Execution) -> String {
    format!(
        "{:?} {:?} {:?} path {:?} output {}",
        e.status, e.error, e.cause, e.path, e.output
    )
}

/// The execution failed `Paused`, its cause naming `why`.
fn assert_paused(e: &Execution, why: &str) {
    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::Paused.as_str()),
        "{}",
        show(e)
    );
    assert!(
        e.cause.as_deref().unwrap_or("").contains(why),
        "{}",
        show(e)
    );
}

fn switch_request(account: &str, instance: &str, mode: &str) -> Value {
    json!({
        "account_id": account, "region": "us-east-1", "instance_id": instance, "mode": mode,
        "target": {"instance_types": ["m5.large", "m6i.large"], "az_ids": ["use1-az1", "use1-az2"]},
        "settings": {"wait_seconds": 1, "image_checks": 5, "health_checks": 3, "approval_timeout_seconds": 60}
    })
}

async fn on_demand(ec2: &aws_sdk_ec2::Client) -> Result<String> {
    Launch::new("m5.large").in_az("us-east-1b").run(ec2).await
}

fn fresh_account() -> String {
    format!(
        "{:012}",
        400_000_000_000 + Utc::now().timestamp_micros() as u64 % 500_000_000_000
    )
}

/// `spotctl` against this bed's tables; its exit code and text.
fn spotctl(saga: &SagaBed, args: &[&str]) -> Result<(i32, String)> {
    spotctl_at(&saga.proxy.endpoint(), &saga.tables, args)
}

fn spotctl_at(endpoint: &str, tables: &Tables, args: &[&str]) -> Result<(i32, String)> {
    let out = std::process::Command::new(bin_path("spotctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("USER", "tester")
        .env("CONTROL_TABLE", tables.name("ControlTable"))
        .env("AUDIT_TABLE", tables.name("AuditTable"))
        .env("LEDGER_TABLE", tables.name("LedgerTable"))
        .env("WASTE_TABLE", tables.name("WasteTable"))
        .env("ENFORCEMENT_TABLE", tables.name("EnforcementTable"))
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The audit trail's `spotctl` items: (action, resource, reason).
async fn operator_trail(bed: &Bed, table: &str) -> Result<Vec<(String, String, String)>> {
    let mut trail: Vec<(String, String, String)> = spot_aws::AuditTable::new(bed.dynamodb(), table)
        .all()
        .await?
        .into_iter()
        .filter(|r| r.function == "spotctl")
        .map(|r| (r.action, r.resource_id, r.reason))
        .collect();
    trail.sort();
    Ok(trail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rolled_back_live_switches_pause_the_account_and_the_fourth_is_refused() -> Result<()>
{
    let other = fresh_account();
    let live = format!("{HOME_ACCOUNT},{other}");
    let saga = SagaBed::start(
        "breaker",
        &[
            ("switch-plan", "APPROVAL_THRESHOLD", "CRITICAL"),
            ("switch-plan", "LIVE_ACCOUNTS", &live),
        ],
    )
    .await?;
    AccountsTable::new(saga.bed.dynamodb(), saga.tables.name("AccountsTable"))
        .put(&Account {
            account_id: other.clone(),
            environment: Environment::Prod,
            role_arn: Some(Bed::role_arn(&other)),
            external_id: Some("bed-external-id".into()),
            regions: vec!["us-east-1".into()],
        })
        .await?;
    let inbox = saga.notices().await?;
    let control = ControlTable::new(saga.bed.dynamodb(), saga.tables.name("ControlTable"));
    let ec2 = saga.bed.ec2();

    // GIVEN three live switches in a row whose clones never pass their status checks
    saga.proxy.forwarder.inject(impaired_status());
    let mut failed = Vec::new();
    for n in 1..=3 {
        let name = saga.name(&format!("fail-{n}"));
        let e = saga
            .run(
                &name,
                &switch_request(HOME_ACCOUNT, &on_demand(&ec2).await?, "live"),
            )
            .await?;
        assert_eq!(
            e.error.as_deref(),
            Some(ErrorName::HealthCheckFailed.as_str()),
            "{}",
            show(&e)
        );
        failed.push(name);
        let pauses = control.pauses().await?;
        assert_eq!(
            pauses.stopping(Some(HOME_ACCOUNT), "switch-plan").is_some(),
            n == 3,
            "after {n} failures: {pauses:?}"
        );
    }
    saga.proxy.forwarder.clear_faults();

    // THEN the account is paused by the breaker, with the three failures, and its owner is told
    let pauses = control.pauses().await?;
    let pause = pauses.stopping(Some(HOME_ACCOUNT), "switch-plan").unwrap();
    assert_eq!(pause.scope, Scope::Account(HOME_ACCOUNT.into()));
    let counted: Vec<&str> = pause.failures.iter().map(|f| f.saga_id.as_str()).collect();
    assert_eq!(
        counted,
        failed.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let told = inbox.wait_for("The circuit breaker paused account").await?;
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "paused");
    assert!(
        told["Message"].as_str().unwrap().contains(&failed[0]),
        "{told}"
    );
    let (code, listed) = spotctl(&saga, &["pauses"])?;
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains("circuit breaker") && listed.contains(&failed[2]),
        "{listed}"
    );

    // WHEN a fourth live switch starts THEN it is refused with the pause's reason, nothing made
    let fourth = on_demand(&ec2).await?;
    let name = saga.name("fourth");
    let e = saga
        .run(&name, &switch_request(HOME_ACCOUNT, &fourth, "live"))
        .await?;
    assert_paused(&e, "circuit breaker");
    assert!(!e.path.iter().any(|s| s == "CreateImage"), "{}", show(&e));
    assert!(clones(&ec2, &name).await?.is_empty(), "no clone");
    let record = saga.ledger(&name).await?.expect("a ledger record");
    assert!(
        record.cause.as_deref().unwrap_or("").contains("Paused"),
        "{record:?}"
    );
    assert_eq!(
        control.failures(HOME_ACCOUNT).await?.len(),
        3,
        "a refusal is no failure"
    );

    // AND a shadow switch of the same account still runs
    let shadow = saga.name("shadow");
    let e = saga
        .run(&shadow, &switch_request(HOME_ACCOUNT, &fourth, "shadow"))
        .await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert_eq!(
        saga.ledger(&shadow).await?.map(|r| r.status),
        Some(LedgerStatus::Shadow)
    );

    // AND another account switches live as before
    let member = aws_sdk_ec2::Client::new(&saga.bed.member(&other).await?);
    let theirs = Launch::new("m5.large")
        .in_az("us-east-1b")
        .run(&member)
        .await?;
    let name = saga.name("other");
    let e = saga
        .run(&name, &switch_request(&other, &theirs, "live"))
        .await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));

    // WHEN an operator resumes without a reason THEN nothing changes; with one, the account is
    // live again, its count starts from zero, and the trail says who and why
    let (code, text) = spotctl(
        &saga,
        &[
            "accounts",
            "resume",
            HOME_ACCOUNT,
            "--by",
            "ops",
            "--reason",
            "",
        ],
    )?;
    assert_ne!(code, 0, "{text}");
    assert!(
        control
            .pauses()
            .await?
            .stopping(Some(HOME_ACCOUNT), "x")
            .is_some()
    );
    let (code, text) = spotctl(
        &saga,
        &[
            "accounts",
            "resume",
            HOME_ACCOUNT,
            "--by",
            "ops",
            "--reason",
            "bad AMI fixed",
        ],
    )?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("circuit breaker"), "{text}");
    assert!(control.pauses().await?.0.is_empty());
    assert!(control.failures(HOME_ACCOUNT).await?.is_empty());
    assert_eq!(
        operator_trail(&saga.bed, saga.tables.name("AuditTable")).await?,
        vec![(
            "resume".to_owned(),
            format!("account#{HOME_ACCOUNT}"),
            "ops: bad AMI fixed".to_owned()
        )]
    );
    let (code, text) = spotctl(
        &saga,
        &[
            "accounts",
            "resume",
            HOME_ACCOUNT,
            "--by",
            "ops",
            "--reason",
            "again",
        ],
    )?;
    assert_eq!(code, 3, "nothing left to resume: {text}");
    // Let the plan's copy of the pauses (PauseCheckSeconds) expire.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = saga.proxy.forwarder.calls().len();
    let name = saga.name("after-resume");
    let e = saga
        .run(&name, &switch_request(HOME_ACCOUNT, &fourth, "live"))
        .await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    // What the guardrails cost a live switch: at most one read of the pauses per acting step
    // (plan, image, launch, cut-over) and one write (the completed switch resets the count).
    let table = saga.tables.name("ControlTable");
    let calls: Vec<String> = saga
        .proxy
        .forwarder
        .calls_since(before)
        .into_iter()
        .filter(|c| c.table.as_deref() == Some(table))
        .map(|c| c.operation)
        .collect();
    let reads = calls.iter().filter(|op| *op == "Query").count();
    assert!((1..=4).contains(&reads), "{calls:?}");
    assert_eq!(calls.len() - reads, 1, "{calls:?}");
    println!("guardrails of one live switch: {calls:?}");
    Ok(())
}

/// Waits until the execution `arn` has entered state `state`.
async fn entered(saga: &SagaBed, arn: &str, state: &str) -> Result<()> {
    for _ in 0..600 {
        let history = saga
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .send()
            .await?;
        if history.events().iter().any(|e| {
            e.r#type() == &HistoryEventType::TaskStateEntered
                && e.state_entered_event_details()
                    .is_some_and(|d| d.name() == state)
        }) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{arn} never entered {state}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_everything_in_the_middle_of_a_swap_rolls_it_back_and_changes_nothing_new()
-> Result<()> {
    let saga = SagaBed::swap(
        "pause-swap",
        &[("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL")],
    )
    .await?;
    let group = saga.name("pause-swap");
    GroupSpec::new(&group).size(2, 4).create(&saga.bed).await?;
    let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
    let before = snapshot(&autoscaling, &group).await?;
    // The replacement's status checks stay pending a few rounds: the pause lands while it waits.
    saga.proxy.forwarder.inject(initializing_status().times(4));
    let name = saga.name("swap");
    let arn = saga
        .start_execution(
            &name,
            &json!({
                "account_id": HOME_ACCOUNT, "region": "us-east-1", "asg_name": group, "mode": "live",
                "settings": {"wait_seconds": 1, "health_checks": 10, "approval_timeout_seconds": 60}
            }),
        )
        .await?;
    entered(&saga, &arn, "CheckHealth").await?;

    let (code, text) = spotctl(
        &saga,
        &["pause", "--all", "--by", "ops", "--reason", "incident 7"],
    )?;
    assert_eq!(code, 0, "{text}");
    let e = saga.wait(&arn, Duration::from_secs(180)).await?;

    // The swap stopped before the replacement joined the group, and rolled back
    assert_paused(&e, "incident 7");
    // The attach step refused before attaching: the next state is the rollback.
    let attach = e.path.iter().position(|s| s == "Attach").unwrap();
    assert_eq!(e.path[attach + 1], "Rollback", "{}", show(&e));
    let after = snapshot(&autoscaling, &group).await?;
    assert_eq!(after.members, before.members, "the group keeps its members");
    assert_eq!((after.desired, after.max), (before.desired, before.max));
    assert!(
        after.marks.is_empty() && after.suspended.is_empty(),
        "{after:?}"
    );
    for (id, state, _) in replacements(&saga.bed.ec2(), &name).await? {
        assert!(
            state == "terminated" || state == "shutting-down",
            "{id} is {state}"
        );
    }
    // A pause is not the account's failure: the breaker counted nothing.
    let control = ControlTable::new(saga.bed.dynamodb(), saga.tables.name("ControlTable"));
    assert!(control.failures(HOME_ACCOUNT).await?.is_empty());

    // While paused, a new live swap is refused at once
    let refused = saga.name("refused");
    let e = saga
        .run(
            &refused,
            &json!({"account_id": HOME_ACCOUNT, "region": "us-east-1", "asg_name": group, "mode": "live",
                "settings": {"wait_seconds": 1, "health_checks": 3, "approval_timeout_seconds": 60}}),
        )
        .await?;
    assert_paused(&e, "incident 7");
    assert!(replacements(&saga.bed.ec2(), &refused).await?.is_empty());

    // Resuming is audited, pausing was too
    let (code, text) = spotctl(
        &saga,
        &[
            "resume",
            "--all",
            "--by",
            "ops",
            "--reason",
            "incident 7 closed",
        ],
    )?;
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        operator_trail(&saga.bed, saga.tables.name("AuditTable")).await?,
        vec![
            (
                "pause".to_owned(),
                "all".to_owned(),
                "ops: incident 7".to_owned()
            ),
            (
                "resume".to_owned(),
                "all".to_owned(),
                "ops: incident 7 closed".to_owned()
            ),
        ]
    );
    let (code, text) = spotctl(
        &saga,
        &[
            "pause",
            "--function",
            "waste-scaner",
            "--by",
            "ops",
            "--reason",
            "typo",
        ],
    )?;
    assert_ne!(code, 0, "a function that does not exist is refused: {text}");
    assert!(text.contains("waste-scanner"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_everything_in_the_middle_of_a_waste_deletion_run_stops_the_next_deletion()
-> Result<()> {
    let g = Gov::start("pause-waste").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let mut addresses = Vec::new();
    for _ in 0..3 {
        let answer = ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await?;
        addresses.push(answer.allocation_id().unwrap_or_default().to_owned());
    }
    let day = |d: i64| t0 + TimeDelta::days(d);
    g.scan(&live, day(8)).await?;
    g.scan(&live, day(15)).await?;

    // One deletion at a time, the first one held until the pause is in force
    let quick = [
        ("MODE", "live"),
        ("LIVE_ACCOUNTS", g.account.as_str()),
        ("PAUSE_CHECK_SECONDS", "1"),
    ];
    let mut scanner = g.scanner(&quick, day(22)).await?;
    scanner.config.write_concurrency = 1;
    let (fault, hold) = Fault::hold("ReleaseAddress");
    g.proxy.forwarder.inject(fault);
    let request = json!({"accounts": [g.account], "regions": ["us-east-1"]});
    let control = ControlTable::new(g.bed.dynamodb(), g.tables.name("ControlTable"));
    let operator = async {
        hold.reached().await;
        control
            .pause(&Pause {
                scope: Scope::All,
                cause: Cause::Operator,
                by: "ops".into(),
                reason: "incident 9".into(),
                at: Utc::now(),
                failures: Vec::new(),
            })
            .await?;
        // The scanner's copy of the pauses (PAUSE_CHECK_SECONDS) expires while the call is held.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        hold.release();
        Ok::<_, anyhow::Error>(())
    };
    let (report, paused) = tokio::join!(scanner.run(request, "test-request"), operator);
    paused?;
    let report = report?;

    // The deletion in flight ended (released, recorded, audited); none of the others began
    let target = report
        .targets
        .iter()
        .find(|t| t.region == "us-east-1")
        .unwrap();
    let outcomes: Vec<&str> = target.actions.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "done").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.starts_with("paused: everything paused by ops"))
            .count(),
        2,
        "{outcomes:?}"
    );
    let mut left = Vec::new();
    for id in &addresses {
        if ec2
            .describe_addresses()
            .allocation_ids(id)
            .send()
            .await
            .is_ok()
        {
            left.push(id.clone());
        }
    }
    assert_eq!(left.len(), 2, "one address released, two kept: {left:?}");
    let mut statuses = Vec::new();
    for id in &addresses {
        statuses.push(s(&g.waste("us-east-1", id).await?.unwrap(), "status").to_owned());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        ["DELETED", "SCHEDULED_DELETE", "SCHEDULED_DELETE"]
    );
    assert_eq!(
        g.audit().await?.len(),
        1,
        "only the deletion in flight was audited"
    );

    // While paused a whole run changes nothing; once resumed the next run finishes the job
    let report = g.scan(&quick, day(22)).await?;
    let target = report
        .targets
        .iter()
        .find(|t| t.region == "us-east-1")
        .unwrap();
    assert!(
        target
            .paused
            .as_deref()
            .unwrap_or("")
            .contains("incident 9"),
        "{target:?}"
    );
    assert!(target.actions.is_empty());
    control.resume(&Scope::All).await?;
    g.scan(&quick, day(22)).await?;
    for id in &addresses {
        assert_eq!(
            s(&g.waste("us-east-1", id).await?.unwrap(), "status"),
            "DELETED"
        );
    }
    assert_eq!(g.audit().await?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_promoted_only_after_its_shadow_period_and_a_look_at_its_report() -> Result<()>
{
    let g = Gov::start("promote").await?;
    let live = [
        ("MODE", "live"),
        ("LIVE_ACCOUNTS", g.account.as_str()),
        ("SHADOW_DAYS", "7"),
    ];
    let ec2 = g.ec2("us-east-1");
    ec2.allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await?;
    let now = Utc::now();
    let spotctl = |args: &[&str]| spotctl_at(&g.proxy.endpoint(), &g.tables, args);
    let account = g.account.as_str();
    let promote = |capability: &str| {
        spotctl(&[
            "accounts",
            "promote",
            account,
            "--capability",
            capability,
            "--by",
            "alice",
        ])
    };

    // Never run in shadow: refused, and nothing is recorded
    let (code, text) = promote("switch")?;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("never ran switch in shadow"), "{text}");

    // Allowlisted and live, but not promoted: the run is in shadow and counts as such; three
    // days of it are not enough
    let report = g.enforce(&live, now - TimeDelta::days(3)).await?;
    assert!(
        report.targets.iter().all(|t| t.mode == Mode::Audit),
        "{report:?}"
    );
    let (code, text) = promote("enforcement")?;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("promotion is possible from"), "{text}");
    let control = ControlTable::new(g.bed.dynamodb(), g.tables.name("ControlTable"));
    assert!(
        control
            .promotion(account, Activity::Enforcement)
            .await?
            .is_none()
    );

    // Waste scans in shadow from eight days ago: the period is over, but nobody has read the
    // report yet
    let report = g.scan(&live, now - TimeDelta::days(8)).await?;
    assert!(
        report.targets.iter().all(|t| t.mode == Mode::Audit),
        "{report:?}"
    );
    let (code, text) = promote("waste")?;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("spotctl shadow report"), "{text}");

    let (code, report) = spotctl(&["shadow", "report", account])?;
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("Shadow report for account"), "{report}");
    assert!(report.contains("Waste it would delete"), "{report}");
    assert!(
        report.contains("Switches and swaps it would have made: 0"),
        "{report}"
    );
    let waste_row = report
        .lines()
        .find(|l| l.contains("│ waste"))
        .unwrap_or_default();
    assert!(waste_row.contains("(now)"), "promotable now: {report}");

    let (code, text) = promote("waste")?;
    assert_eq!(code, 0, "{text}");
    let promotion = control.promotion(account, Activity::Waste).await?.unwrap();
    assert_eq!(promotion.by, "alice");
    assert_eq!(
        promotion.shadow_since.date_naive(),
        (now - TimeDelta::days(8)).date_naive()
    );

    // Promoted: the next scan is live; the allowlist stays the outer gate
    let report = g.scan(&live, now).await?;
    assert!(
        report.targets.iter().all(|t| t.mode == Mode::Live),
        "{report:?}"
    );
    let report = g
        .scan(&[("MODE", "live"), ("SHADOW_DAYS", "7")], now)
        .await?;
    assert!(
        report.targets.iter().all(|t| t.mode == Mode::Audit),
        "{report:?}"
    );
    let trail = g.audit().await?;
    assert!(
        trail
            .iter()
            .any(|i| s(i, "action") == "promote_waste" && s(i, "reason").starts_with("alice")),
        "{trail:?}"
    );
    Ok(())
}
