//! `spotctl switch revert` against the bed: the operator's request reaches the real
//! `switch-revert` binary through Lambda's Invoke API (the bed gateway), acting in a member
//! account with the switch role: the source runs again with its address, the clone goes, all
//! audited, the ledger says REVERTED and the owner is told; asked again, nothing more happens;
//! refused requests change nothing and say why.

use anyhow::Result;
use chrono::{TimeDelta, Utc};
use spot_aws::LedgerTable;
use spot_domain::saga::SagaMode;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::tags::{CREATED_VIA, SWITCH_TAG, SWITCHED_AT_TAG, VIA_SWITCH};
use testbed::Launch;
use testbed::saga::{Inbox, state};

use crate::governance::Gov;

fn switched(g: &Gov, id: &str, source: &str, clone: &str, ago: TimeDelta) -> LedgerRecord {
    LedgerRecord {
        switch_id: id.into(),
        account_id: g.account.clone(),
        region: "us-east-1".into(),
        source_instance_id: source.into(),
        mode: SagaMode::Live,
        status: LedgerStatus::Switched,
        new_instance_id: Some(clone.into()),
        pool: Some("us-east-1#use1-az1#m5.large".parse().unwrap()),
        instance_type: Some("m5.large".into()),
        on_demand_price: Some(0.096),
        spot_price: Some(0.03),
        saving_per_hour: Some(0.066),
        risk: None,
        cause: None,
        at: Utc::now() - ago,
        group: None,
        downtime_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switches_a_switch_back_once_audited_and_refusals_change_nothing() -> Result<()>
{
    let g = Gov::start("revert").await?;
    let ec2 = g.ec2("us-east-1");
    let id = format!("switch-{}-revert", g.account);
    // What a live switch left: the source stopped and marked, the clone running with the address.
    let at = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let source = Launch::new("m5.large")
        .tag(SWITCH_TAG, &id)
        .tag(SWITCHED_AT_TAG, &at)
        .run(&ec2)
        .await?;
    ec2.stop_instances().instance_ids(&source).send().await?;
    let clone = Launch::new("m5.large")
        .tag(SWITCH_TAG, &id)
        .tag(CREATED_VIA, VIA_SWITCH)
        .run(&ec2)
        .await?;
    let allocation = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await?
        .allocation_id()
        .unwrap_or_default()
        .to_owned();
    ec2.associate_address()
        .allocation_id(&allocation)
        .instance_id(&clone)
        .send()
        .await?;
    let ledger = LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"));
    ledger
        .record(&switched(&g, &id, &source, &clone, TimeDelta::hours(1)))
        .await?;
    let mut old = switched(
        &g,
        "switch-too-old",
        "i-0old",
        "i-0oldclone",
        TimeDelta::days(31),
    );
    old.account_id = g.account.clone();
    ledger.record(&old).await?;
    let mut rolled_back = switched(
        &g,
        "switch-rolled-back",
        "i-0rb",
        "i-0rbclone",
        TimeDelta::hours(2),
    );
    rolled_back.status = LedgerStatus::RolledBack;
    ledger.record(&rolled_back).await?;

    let function = format!("switch-revert-{}", testbed::bed::unique_suffix());
    let mut spec = g.tables.function("switch-revert", &g.bed.endpoint)?;
    spec.env.insert("WAIT_SECONDS".into(), "1".into());
    g.bed.register_function(&function, &spec).await?;
    let notices = Inbox::subscribe(&g.bed, g.tables.name("NoticeTopic"), None).await?;
    let revert = |id: &str, reason: &str| {
        g.spotctl(&[
            "switch",
            "revert",
            id,
            "--function",
            &function,
            "--by",
            "alice",
            "--reason",
            reason,
        ])
    };

    // Refused: nothing changes, and the operator reads why.
    for (what, reason, error) in [
        (
            "switch-nonexistent",
            "try",
            "NotEligible: no switch switch-nonexistent",
        ),
        ("switch-too-old", "try", "more than 30 days ago"),
        (
            "switch-rolled-back",
            "try",
            "only a live switch that completed",
        ),
        (id.as_str(), "", "InvalidRequest: reason must be 1-256"),
        ("bad id!", "try", "InvalidRequest"),
    ] {
        let out = revert(what, reason)?;
        assert_eq!(out.status.code(), Some(3), "{what}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(error), "{what}: {stderr}");
    }
    assert_eq!(state(&ec2, &source).await?.as_str(), "stopped");
    assert_eq!(state(&ec2, &clone).await?.as_str(), "running");
    assert!(g.audit().await?.is_empty());

    let out = revert(&id, "the app misbehaves on Spot")?;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{source} runs again")), "{text}");
    assert!(
        text.contains(&format!("Spot clone {clone} terminated")),
        "{text}"
    );
    assert_eq!(state(&ec2, &source).await?.as_str(), "running");
    assert_eq!(state(&ec2, &clone).await?.as_str(), "terminated");
    let holder = ec2
        .describe_addresses()
        .allocation_ids(&allocation)
        .send()
        .await?
        .addresses()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_owned);
    assert_eq!(
        holder.as_deref(),
        Some(source.as_str()),
        "the address is back"
    );
    let tags = g.tags("us-east-1", &source).await?;
    assert!(
        !tags.contains_key(SWITCH_TAG) && !tags.contains_key(SWITCHED_AT_TAG),
        "{tags:?}"
    );
    let record = ledger.get(&id).await?.expect("the switch");
    assert_eq!(record.status, LedgerStatus::Reverted);
    assert_eq!(
        record.cause.as_deref(),
        Some("reverted by alice: the app misbehaves on Spot")
    );
    let audit = g.audit().await?;
    for action in ["start_source", "move_address", "terminate_clone"] {
        assert!(
            audit
                .iter()
                .any(|a| crate::support::s(a, "action") == action
                    && crate::support::s(a, "outcome") == "done"),
            "{action}: {audit:?}"
        );
    }
    let told = notices.wait_for("reverted").await?;
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "reverted");

    // Asked again: nothing more happens.
    let out = revert(&id, "again")?;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("was reverted before"));
    assert_eq!(g.audit().await?.len(), audit.len());
    Ok(())
}
