//! Net savings against the bed, clock injected: the refresh accrues seeded ledgers at the Spot
//! price in force (a price change between the switch and the report included), net of what a
//! switch keeps, idempotently; lines end with their instance; `spotctl savings` adds the
//! hibernation and waste lines and prints headings over their values.

use std::collections::BTreeMap;

use anyhow::Result;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use spot_aws::LedgerTable;
use spot_domain::governance::ports::WasteStore;
use spot_domain::governance::pricing::{HOURS_PER_MONTH, Prices};
use spot_domain::governance::waste::{WasteKind, WasteRecord, WasteStatus};
use spot_domain::hibernation::state::{Saved, TargetState};
use spot_domain::saga::SagaMode;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::savings::{Accrual, Line, month_of};
use spot_domain::tags::SWITCH_TAG;
use testbed::Launch;
use testbed::saga::spot_price_history;

use crate::governance::{Gov, target};

const OD: f64 = 0.096;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn record(g: &Gov, id: &str, source: &str, at: DateTime<Utc>) -> LedgerRecord {
    LedgerRecord {
        switch_id: id.into(),
        account_id: g.account.clone(),
        region: "us-east-1".into(),
        source_instance_id: source.into(),
        mode: SagaMode::Live,
        status: LedgerStatus::Switched,
        new_instance_id: None,
        pool: Some("us-east-1#use1-az1#m5.large".parse().unwrap()),
        instance_type: Some("m5.large".into()),
        on_demand_price: Some(OD),
        spot_price: Some(0.030),
        saving_per_hour: Some(OD - 0.030),
        risk: None,
        cause: None,
        at,
        group: None,
        downtime_ms: None,
    }
}

/// The volumes attached to `instance`: (id, monthly cost as the waste scanner prices it, size).
async fn volumes(ec2: &aws_sdk_ec2::Client, instance: &str) -> Result<Vec<(String, f64, u32)>> {
    let prices = Prices::default();
    let answer = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await?;
    Ok(answer
        .volumes()
        .iter()
        .map(|v| {
            let size = v.size().unwrap_or_default() as u32;
            let kind = v.volume_type().map(|t| t.as_str()).unwrap_or("gp2");
            (
                v.volume_id().unwrap_or_default().to_owned(),
                prices.volume_month(
                    kind,
                    size,
                    v.iops().map(|i| i as u32),
                    v.throughput().map(|t| t as u32),
                ),
                size,
            )
        })
        .collect())
}

async fn accruals(g: &Gov) -> Result<BTreeMap<Line, Accrual>> {
    Ok(
        LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"))
            .accruals()
            .await?
            .into_iter()
            .filter(|a| a.account_id == g.account)
            .map(|a| (a.line, a))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_accrues_at_the_price_in_force_net_of_what_a_switch_keeps_once_per_interval()
-> Result<()> {
    let g = Gov::start("savings").await?;
    let ec2 = g.ec2("us-east-1");
    // Whole seconds, as EC2 stamps its price history.
    let now = Utc::now().trunc_subsecs(0);
    let t0 = now - TimeDelta::hours(10);
    let switch_id = format!("switch-{}-i-source", g.account);

    // What a live switch left: the source stopped with its volume, an image snapshot tagged with
    // the switch, and the Spot clone running. A swapped member, and a shadow decision's source.
    let source = Launch::new("m5.large").volume_gib(20).run(&ec2).await?;
    ec2.stop_instances().instance_ids(&source).send().await?;
    let clone = Launch::new("m5.large").run(&ec2).await?;
    let member = Launch::new("m5.large").run(&ec2).await?;
    let candidate = Launch::new("m5.large").volume_gib(10).run(&ec2).await?;
    let source_volumes = volumes(&ec2, &source).await?;
    assert!(!source_volumes.is_empty());
    let image_snapshot = ec2
        .create_snapshot()
        .volume_id(&source_volumes[0].0)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(Tag::builder().key(SWITCH_TAG).value(&switch_id).build())
                .build(),
        )
        .send()
        .await?
        .snapshot_id()
        .unwrap_or_default()
        .to_owned();

    let ledger = LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"));
    let mut switched = record(&g, &switch_id, &source, t0);
    switched.new_instance_id = Some(clone.clone());
    ledger.record(&switched).await?;
    let mut swapped = record(&g, "swap-1#i-0old", "i-0old", t0);
    swapped.group = Some("web".into());
    swapped.new_instance_id = Some(member.clone());
    ledger.record(&swapped).await?;
    let mut shadow = record(&g, "shadow-1", &candidate, t0);
    (shadow.mode, shadow.status) = (SagaMode::Shadow, LedgerStatus::Shadow);
    ledger.record(&shadow).await?;
    let mut rolled_back = record(&g, "switch-rolled-back", "i-0other", t0);
    rolled_back.status = LedgerStatus::RolledBack;
    ledger.record(&rolled_back).await?;

    // The pool's price: 0.030 at the switch, 0.050 from six hours after it.
    g.proxy.forwarder.inject(spot_price_history(&[
        ("m5.large", "us-east-1a", 0.030, t0 - TimeDelta::hours(1)),
        ("m5.large", "us-east-1a", 0.050, t0 + TimeDelta::hours(6)),
    ]));
    let before = g.proxy.forwarder.calls().len();
    let report = g.refresh_savings(now).await?;
    let t = target(&report, "us-east-1")?;
    assert_eq!(t.error, None, "{report:?}");
    assert_eq!(t.scanned.get("line"), Some(&3), "{t:?}");
    // However many lines: one call of each kind in the account's region, one ledger scan.
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for c in g.proxy.forwarder.calls_since(before) {
        if c.service == "ec2" || c.service == "dynamodb" {
            *calls.entry(c.operation).or_default() += 1;
        }
    }
    for (operation, n) in [
        ("DescribeInstances", 1),
        ("DescribeVolumes", 1),
        ("DescribeSnapshots", 1),
        ("DescribeSpotPriceHistory", 1),
        ("PutItem", 3),
    ] {
        assert_eq!(calls.get(operation), Some(&n), "{operation}: {calls:?}");
    }

    let lines = accruals(&g).await?;
    assert_eq!(
        lines.len(),
        3,
        "a rolled-back switch saves nothing: {lines:?}"
    );
    let gross = 6.0 * (OD - 0.030) + 4.0 * (OD - 0.050);
    let kept_monthly: f64 = source_volumes.iter().map(|v| v.1).sum::<f64>()
        + Prices::default().snapshot_month(source_volumes[0].2);
    let s = &lines[&Line::Switch];
    let total = s.total();
    assert!(close(total.hours, 10.0), "{s:?}");
    assert!(close(total.gross_usd, gross), "{s:?}");
    assert!(
        close(total.kept_usd, 10.0 * kept_monthly / HOURS_PER_MONTH),
        "{s:?}"
    );
    assert_eq!(s.spot_per_hour, Some(0.050));
    assert!(s.kept.contains(&image_snapshot) && s.kept.contains(&source_volumes[0].0));
    let w = &lines[&Line::Swap];
    assert_eq!(w.workload, "web/i-0old");
    assert!(close(w.total().gross_usd, gross) && close(w.total().kept_usd, 0.0));
    // The shadow line: what a switch of the candidate would have saved, and kept.
    let candidate_volumes = volumes(&ec2, &candidate).await?;
    let counterfactual: f64 = candidate_volumes
        .iter()
        .map(|v| v.1 + Prices::default().snapshot_month(v.2))
        .sum();
    let h = &lines[&Line::Shadow];
    assert_eq!(h.instance_id, candidate);
    assert!(close(h.total().gross_usd, gross));
    assert!(
        close(h.total().kept_usd, 10.0 * counterfactual / HOURS_PER_MONTH),
        "{h:?}"
    );

    // Delivered again at the same instant: nothing added, nothing written.
    g.refresh_savings(now).await?;
    assert_eq!(accruals(&g).await?, lines);

    // Two hours later, after another change (0.040 from an hour after now).
    g.proxy.forwarder.clear_faults();
    g.proxy.forwarder.inject(spot_price_history(&[
        ("m5.large", "us-east-1a", 0.050, t0 + TimeDelta::hours(6)),
        ("m5.large", "us-east-1a", 0.040, now + TimeDelta::hours(1)),
    ]));
    g.refresh_savings(now + TimeDelta::hours(2)).await?;
    let s = accruals(&g).await?[&Line::Switch].clone();
    let gross = gross + (OD - 0.050) + (OD - 0.040);
    assert!(close(s.total().gross_usd, gross), "{s:?}");
    assert!(close(
        s.total().kept_usd,
        12.0 * kept_monthly / HOURS_PER_MONTH
    ));

    // The clone is gone: its line ends with the hour it last ran, and never changes again.
    ec2.terminate_instances()
        .instance_ids(&clone)
        .send()
        .await?;
    let ended_at = now + TimeDelta::hours(3);
    let report = g.refresh_savings(ended_at).await?;
    let t = target(&report, "us-east-1")?;
    assert!(
        t.actions
            .iter()
            .any(|a| a.action == "end" && a.resource_id == clone),
        "{t:?}"
    );
    let s = accruals(&g).await?[&Line::Switch].clone();
    assert_eq!(s.ended, Some(ended_at));
    assert!(close(s.total().hours, 13.0));
    g.refresh_savings(now + TimeDelta::hours(5)).await?;
    assert_eq!(accruals(&g).await?[&Line::Switch], s);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spotctl_savings_prints_each_line_per_account_region_and_month_under_its_heading()
-> Result<()> {
    let g = Gov::start("savings-spotctl").await?;
    let ec2 = g.ec2("us-east-1");
    // Whole seconds, as EC2 stamps its price history.
    let now = Utc::now().trunc_subsecs(0);
    let t0 = now - TimeDelta::hours(10);
    let clone = Launch::new("m5.large").run(&ec2).await?;
    let switch_id = format!("switch-{}-i-0source", g.account);
    let mut switched = record(&g, &switch_id, "i-0source", t0);
    switched.new_instance_id = Some(clone.clone());
    LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"))
        .record(&switched)
        .await?;
    g.proxy.forwarder.inject(spot_price_history(&[(
        "m5.large",
        "us-east-1a",
        0.030,
        t0 - TimeDelta::hours(1),
    )]));
    g.refresh_savings(now).await?;
    // A sleep the reconciler booked, and an address the waste scanner deleted a day ago.
    let mut sleeper = TargetState::new(&g.account, "us-east-1", "i-0sleeper", "nights");
    sleeper.saved.insert(
        month_of(now),
        Saved {
            hours: 10.0,
            usd: 0.96,
        },
    );
    spot_aws::HibernationTable::new(g.bed.dynamodb(), g.tables.name("HibernationTable"))
        .put_targets(&[sleeper])
        .await?;
    let deleted = now - TimeDelta::hours(24);
    spot_aws::WasteTable::new(g.bed.dynamodb(), g.tables.name("WasteTable"))
        .put(&WasteRecord {
            account: g.account.clone(),
            region: "us-east-1".into(),
            resource_id: "eipalloc-0gone".into(),
            kind: WasteKind::ElasticIp,
            status: WasteStatus::Deleted,
            monthly_cost_usd: 73.0,
            size_gb: None,
            reason: "unassociated".into(),
            first_seen: deleted - TimeDelta::days(14),
            last_seen: deleted,
            flagged_at: Some(deleted - TimeDelta::days(14)),
            delete_after: Some(deleted),
            closed_at: Some(deleted),
            backup_snapshot_id: None,
            version: 0,
        })
        .await?;

    let mine = ["savings", "--account", g.account.as_str()];
    let json = |args: &[&str]| -> Result<Vec<serde_json::Value>> {
        let out = g.spotctl(args)?;
        assert!(out.status.success(), "{args:?}: {out:?}");
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    let rows = json(&[&mine[..], &["--json"]].concat())?;
    let sum = |line: &str| -> f64 { rows.iter().map(|r| r[line].as_f64().unwrap_or(0.0)).sum() };
    assert!(close(sum("switch"), 10.0 * (OD - 0.030)), "{rows:?}");
    assert!(close(sum("hibernation"), 0.96), "{rows:?}");
    // 0.1 USD an hour avoided since the deletion, as of the moment spotctl ran.
    assert!((sum("waste") - 2.4).abs() < 0.05, "{rows:?}");
    assert!(close(
        sum("realised"),
        sum("switch") + sum("hibernation") + sum("waste")
    ));

    // The table: each heading over its value, for the row of this account's first month.
    let out = g.spotctl(&mine)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let cells = |line: &str| -> Vec<String> {
        line.split(['│', '┆'])
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let header = cells(text.lines().nth(1).unwrap_or_default());
    let values = cells(
        text.lines()
            .find(|l| l.contains(&g.account))
            .unwrap_or_default(),
    );
    assert_eq!(header.len(), values.len(), "{text}");
    let row: BTreeMap<String, String> = header.into_iter().zip(values).collect();
    let first = &rows[0];
    assert_eq!(row["month"], first["month"].as_str().unwrap_or_default());
    for (heading, key) in [
        ("switch", "switch"),
        ("swap", "swap"),
        ("failover", "failover"),
        ("hibernation", "hibernation"),
        ("waste", "waste"),
        ("net realised $", "realised"),
        ("shadow $", "shadow"),
    ] {
        assert_eq!(
            row[heading],
            format!("{:.2}", first[key].as_f64().unwrap_or(0.0)),
            "{heading}: {text}"
        );
    }
    assert!(text.lines().any(|l| l.contains("│ all")), "{text}");

    // Per workload.
    let out = g.spotctl(&[&mine[..], &["--detail"]].concat())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let header = cells(text.lines().nth(1).unwrap_or_default());
    let values = cells(
        text.lines()
            .find(|l| l.contains(&clone))
            .unwrap_or_default(),
    );
    assert_eq!(header.len(), values.len(), "{text}");
    let row: BTreeMap<String, String> = header.into_iter().zip(values).collect();
    assert_eq!(row["line"], "switch");
    assert_eq!(row["workload"], "i-0source");
    assert_eq!(row["pool"], "m5.large us-east-1a");
    assert_eq!(row["spot $/h"], "0.0300");
    assert_eq!(row["net $"], format!("{:.2}", 10.0 * (OD - 0.030)));
    assert_eq!(row["ended (UTC)"], "-");
    let detail = json(&[&mine[..], &["--detail", "--json"]].concat())?;
    assert_eq!(detail.len(), 1, "{detail:?}");
    assert!(close(
        detail[0]["total"]["net_usd"].as_f64().unwrap_or_default(),
        10.0 * (OD - 0.030)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refreshes_on_a_schedule_as_deployed_and_refuses_a_bad_request() -> Result<()> {
    use serde_json::json;
    use testbed::LambdaHost;

    let g = Gov::start("savings-binary").await?;
    let ec2 = g.ec2("us-east-1");
    let clone = Launch::new("m5.large").run(&ec2).await?;
    let at = Utc::now() - TimeDelta::hours(2);
    let mut switched = record(&g, &format!("switch-{}-i-0bin", g.account), "i-0bin", at);
    switched.new_instance_id = Some(clone.clone());
    LedgerTable::new(g.bed.dynamodb(), g.tables.name("LedgerTable"))
        .record(&switched)
        .await?;
    let spec = g.tables.function("savings-refresh", &g.bed.endpoint)?;
    let mut host = LambdaHost::start(spec).await?;
    host.wait_ready().await?;
    let schedule = json!({"version": "0", "id": "89d1a02d-5ec7-412e-82f5-13505f849b42", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-12-06T03:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hourly"], "detail": {}});
    let report = host.invoke(&schedule).await?.ok()?;
    assert_eq!(report["function"], "savings-refresh");
    let mine: Vec<&serde_json::Value> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["account"] == g.account.as_str() && t["region"] == "us-east-1")
        .collect();
    assert_eq!(mine.len(), 1, "{report:#}");
    assert_eq!(mine[0]["counts"]["line"]["switch"], 1, "{report:#}");
    // moto quotes one Spot price, from long ago, for every pool: about the whole baseline saved.
    let line = &accruals(&g).await?[&Line::Switch];
    assert!((line.total().gross_usd - 2.0 * OD).abs() < 0.01, "{line:?}");
    let rate: Vec<serde_json::Value> = host
        .json_logs()
        .into_iter()
        .filter(|l| {
            l["NetSavingPerHourUsd"].is_number()
                && l["account"] == g.account.as_str()
                && l["region"] == "us-east-1"
        })
        .collect();
    assert_eq!(rate.len(), 1, "{rate:#?}");
    assert!((rate[0]["NetSavingPerHourUsd"].as_f64().unwrap_or_default() - OD).abs() < 0.001);

    let error = host.invoke(&json!({"acounts": ["123"]})).await?.err()?;
    assert_eq!(
        error.error_type,
        spot_domain::ErrorName::InvalidRequest.as_str()
    );
    Ok(())
}
