//! The hibernation reconciler against the bed, clock injected, as its own role: a simulated
//! 2026 across both DST changes in Berlin and New York, groups asleep and awake with their exact
//! sizes, manual starts kept or undone, overrides, saga locks, a throttled region, a bad schedule,
//! shadow mode, re-runs.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use spot_aws::{HibernationTable, SchedulesTable};
use spot_domain::governance::report::RunReport;
use spot_domain::hibernation::state::{OverrideItem, TargetState, target_key};
use spot_domain::hibernation::{Override, Power, Schedule, Week};
use spot_domain::tags::SCHEDULE_TAG;
use testbed::Launch;
use testbed::proxy::Fault;

use crate::governance::{Gov, target};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

impl Gov {
    fn schedules(&self) -> SchedulesTable {
        SchedulesTable::new(self.bed.dynamodb(), self.tables.name("SchedulesTable"))
    }

    fn hibernation(&self) -> HibernationTable {
        HibernationTable::new(self.bed.dynamodb(), self.tables.name("HibernationTable"))
    }

    async fn put_schedule(
        &self,
        name: &str,
        zone: &str,
        awake: &str,
        enforced: bool,
    ) -> Result<()> {
        let mut s = Schedule::new(name, zone, Week::from_periods(awake)?)?;
        s.enforced = enforced;
        self.schedules().put(&s).await?;
        Ok(())
    }

    async fn state_of(&self, region: &str, resource: &str) -> Result<Option<TargetState>> {
        let key = target_key(&self.account, region, resource);
        Ok(self
            .hibernation()
            .scope(&self.account, region)
            .await?
            .targets
            .into_iter()
            .find(|t| t.target == key))
    }

    fn live(&self) -> [(&'static str, String); 2] {
        [
            ("MODE", "live".into()),
            ("LIVE_ACCOUNTS", self.account.clone()),
        ]
    }

    async fn run_live(&self, now: DateTime<Utc>) -> Result<RunReport> {
        let live = self.live();
        let overrides: Vec<(&str, &str)> = live.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let report = self.reconcile(&overrides, &["us-east-1"], now).await?;
        assert!(report.errors.is_empty(), "{now}: {:?}", report.errors);
        Ok(report)
    }
}

async fn states(ec2: &aws_sdk_ec2::Client, ids: &[&str]) -> Result<BTreeMap<String, String>> {
    let answer = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.iter().map(|s| (*s).to_owned()).collect()))
        .send()
        .await?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_owned(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

fn actions<'a>(report: &'a RunReport, action: &str) -> Vec<(&'a str, &'a str)> {
    report
        .targets
        .iter()
        .flat_map(|t| &t.actions)
        .filter(|a| a.action == action)
        .map(|a| (a.resource_id.as_str(), a.outcome.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_across_both_dst_changes_in_berlin_and_new_york_sleeps_and_wakes_at_local_hours()
-> Result<()> {
    let g = Gov::start("hibernation-dst").await?;
    g.put_schedule("berlin", "Europe/Berlin", "Mon-Fri 8-18", false)
        .await?;
    g.put_schedule("newyork", "America/New_York", "Mon-Fri 8-18", false)
        .await?;
    let ec2 = g.ec2("us-east-1");
    let b = Launch::new("m5.large")
        .tag(SCHEDULE_TAG, "berlin")
        .run(&ec2)
        .await?;
    let n = Launch::new("m5.large")
        .tag(SCHEDULE_TAG, "newyork")
        .run(&ec2)
        .await?;
    // (instant, Berlin's instance, New York's) after the run at that instant. Awake from 07:50
    // local (the 10-minute wake lead) to 18:00 local, Monday to Friday, whatever the offset.
    let steps: &[(&str, &str, &str)] = &[
        // Friday 6 March: 23:59 CET in Berlin, 17:59 EST in New York.
        ("2026-03-06T22:59:00Z", "stopped", "running"),
        ("2026-03-06T23:00:00Z", "stopped", "stopped"),
        // Monday 9 March: New York is on EDT since Sunday (UTC-4), Berlin still on CET (UTC+1):
        // 07:50 is 06:50 UTC there, and 11:50 UTC in New York.
        ("2026-03-09T06:49:00Z", "stopped", "stopped"),
        ("2026-03-09T06:50:00Z", "running", "stopped"),
        ("2026-03-09T11:49:00Z", "running", "stopped"),
        ("2026-03-09T11:50:00Z", "running", "running"),
        // Friday 27 March: 18:00 CET is 17:00 UTC; 18:00 EDT is 22:00 UTC.
        ("2026-03-27T16:59:00Z", "running", "running"),
        ("2026-03-27T17:00:00Z", "stopped", "running"),
        ("2026-03-27T21:59:00Z", "stopped", "running"),
        ("2026-03-27T22:00:00Z", "stopped", "stopped"),
        // Monday 30 March: Berlin on CEST since Sunday (UTC+2): 07:50 is 05:50 UTC.
        ("2026-03-30T05:49:00Z", "stopped", "stopped"),
        ("2026-03-30T05:50:00Z", "running", "stopped"),
        ("2026-03-30T11:50:00Z", "running", "running"),
        // Friday 23 October: 18:00 CEST is 16:00 UTC; 18:00 EDT is 22:00 UTC.
        ("2026-10-23T15:59:00Z", "running", "running"),
        ("2026-10-23T16:00:00Z", "stopped", "running"),
        ("2026-10-23T22:00:00Z", "stopped", "stopped"),
        // Monday 26 October: Berlin back on CET (07:50 is 06:50 UTC); New York still on EDT.
        ("2026-10-26T05:50:00Z", "stopped", "stopped"),
        ("2026-10-26T06:49:00Z", "stopped", "stopped"),
        ("2026-10-26T06:50:00Z", "running", "stopped"),
        ("2026-10-26T11:50:00Z", "running", "running"),
        // Friday 30 October: 18:00 CET is 17:00 UTC, 18:00 EDT 22:00 UTC.
        ("2026-10-30T17:00:00Z", "stopped", "running"),
        ("2026-10-30T22:00:00Z", "stopped", "stopped"),
        // Monday 2 November: New York on EST since Sunday (UTC-5): 07:50 is 12:50 UTC.
        ("2026-11-02T06:50:00Z", "running", "stopped"),
        ("2026-11-02T11:50:00Z", "running", "stopped"),
        ("2026-11-02T12:49:00Z", "running", "stopped"),
        ("2026-11-02T12:50:00Z", "running", "running"),
    ];
    for (instant, berlin, newyork) in steps {
        let report = g.run_live(at(instant)).await?;
        let now = states(&ec2, &[&b, &n]).await?;
        assert_eq!(
            (now[&b].as_str(), now[&n].as_str()),
            (*berlin, *newyork),
            "at {instant}: {:?}",
            target(&report, "us-east-1")?.actions
        );
        // A re-run at the same instant changes nothing: no stop or start, no write.
        if *instant == "2026-03-27T17:00:00Z" {
            let calls = g.proxy.forwarder.calls().len();
            let again = g.run_live(at(instant)).await?;
            assert!(actions(&again, "stop").is_empty() && actions(&again, "start").is_empty());
            let since = g.proxy.forwarder.calls_since(calls);
            assert!(
                since.iter().all(|c| (!c.operation.ends_with("Instances")
                    || c.operation == "DescribeInstances")
                    && !c.operation.starts_with("BatchWrite")),
                "{:?}",
                since.iter().map(|c| &c.operation).collect::<Vec<_>>()
            );
        }
    }
    // The books: Berlin's instance slept from 6 March 22:59 to 9 March 06:50 and over the short
    // weekend of 27-30 March (one hour less: the spring change), at m5.large's price.
    let state = g.state_of("us-east-1", &b).await?.context("berlin state")?;
    let slept = (at("2026-03-09T06:50:00Z") - at("2026-03-06T22:59:00Z"))
        + (at("2026-03-30T05:50:00Z") - at("2026-03-27T17:00:00Z"));
    let march = state.saved["2026-03"];
    assert!(
        (march.hours - slept.num_seconds() as f64 / 3600.0).abs() < 1e-6,
        "{march:?}"
    );
    assert_eq!(
        at("2026-03-30T05:50:00Z") - at("2026-03-27T17:00:00Z"),
        TimeDelta::minutes(60 * 60 + 50),
        "61 h 50 min of local time, 60 h 50 min real"
    );
    assert!((march.usd - march.hours * 0.096).abs() < 1e-6, "{march:?}");
    // Every stop and start was audited first.
    let audit = g.audit().await?;
    assert!(audit.len() >= 16, "{}", audit.len());
    Ok(())
}

async fn scheduled_group(g: &Gov, name: &str, schedule: &str) -> Result<()> {
    let ec2 = g.ec2("us-east-1");
    let subnet = ec2.describe_subnets().send().await?.subnets()[0]
        .subnet_id()
        .context("subnet")?
        .to_owned();
    let autoscaling = g.autoscaling();
    let config = format!("lc-{name}");
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name(&config)
        .image_id(testbed::fixtures::IMAGE)
        .instance_type("m5.large")
        .send()
        .await?;
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(config)
        .min_size(1)
        .max_size(4)
        .desired_capacity(2)
        .vpc_zone_identifier(subnet)
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .key(SCHEDULE_TAG)
                .value(schedule)
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn sizes(g: &Gov, name: &str) -> Result<(i32, i32, i32)> {
    let answer = g
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await?;
    let group = &answer.auto_scaling_groups()[0];
    Ok((
        group.min_size().unwrap_or(-1),
        group.max_size().unwrap_or(-1),
        group.desired_capacity().unwrap_or(-1),
    ))
}

/// Monday 2026-01-05 19:00 UTC: after hours of `Mon-Fri 8-18` in UTC.
const NIGHT: &str = "2026-01-05T19:00:00Z";
/// Tuesday 07:50 UTC: the wake lead.
const MORNING: &str = "2026-01-06T07:50:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_wake_to_exactly_their_sizes_and_manual_starts_are_kept_or_undone() -> Result<()> {
    let g = Gov::start("hibernation-groups").await?;
    g.put_schedule("office", "UTC", "Mon-Fri 8-18", false)
        .await?;
    g.put_schedule("strict", "UTC", "Mon-Fri 8-18", true)
        .await?;
    scheduled_group(&g, "web", "office").await?;
    let ec2 = g.ec2("us-east-1");
    let kept = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "office")
        .run(&ec2)
        .await?;
    let undone = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "strict")
        .run(&ec2)
        .await?;
    let overridden = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "office")
        .run(&ec2)
        .await?;
    g.hibernation()
        .put_override(&OverrideItem::new(
            &g.account,
            "us-east-1",
            &overridden,
            Override {
                power: Power::Awake,
                until: at("2026-01-05T22:00:00Z"),
                by: "alice".into(),
                why: "release night".into(),
            },
            at("2026-01-05T18:00:00Z"),
        ))
        .await?;

    // Evening: the group records its sizes and goes to 0/0/0; instances stop, but the override.
    let report = g.run_live(at(NIGHT)).await?;
    assert_eq!(
        sizes(&g, "web").await?,
        (0, 0, 0),
        "{:?}",
        target(&report, "us-east-1")?.actions
    );
    let record = g
        .state_of("us-east-1", "asg/web")
        .await?
        .context("group state")?
        .record;
    assert_eq!(record.map(|r| (r.min, r.max, r.desired)), Some((1, 4, 2)));
    let now = states(&ec2, &[&kept, &undone, &overridden]).await?;
    assert_eq!(
        (
            now[&kept].as_str(),
            now[&undone].as_str(),
            now[&overridden].as_str()
        ),
        ("stopped", "stopped", "running")
    );
    // Re-run: nothing.
    let again = g.run_live(at("2026-01-05T19:05:00Z")).await?;
    assert!(
        ["stop", "start", "sleep_group", "wake_group"]
            .iter()
            .all(|a| actions(&again, a).is_empty()),
        "{:?}",
        target(&again, "us-east-1")?.actions
    );

    // 23:00: someone starts both instances and raises the group's maximum to 6.
    ec2.start_instances()
        .instance_ids(&kept)
        .instance_ids(&undone)
        .send()
        .await?;
    g.autoscaling()
        .update_auto_scaling_group()
        .auto_scaling_group_name("web")
        .max_size(6)
        .send()
        .await?;
    g.run_live(at("2026-01-05T23:05:00Z")).await?;
    let now = states(&ec2, &[&kept, &undone, &overridden]).await?;
    assert_eq!(
        now[&kept], "running",
        "not enforced: kept until the next sleep"
    );
    assert_eq!(now[&undone], "stopped", "enforced: undone");
    assert_eq!(now[&overridden], "stopped", "the override ended at 22:00");
    assert_eq!(sizes(&g, "web").await?, (0, 6, 0), "still asleep");
    let record = g
        .state_of("us-east-1", "asg/web")
        .await?
        .context("group state")?
        .record;
    assert_eq!(
        record.map(|r| (r.min, r.max, r.desired)),
        Some((1, 6, 2)),
        "the hand-set maximum is recorded"
    );

    // Morning: the group wakes to its record with the hand-set maximum; the record is forgotten.
    g.run_live(at(MORNING)).await?;
    assert_eq!(sizes(&g, "web").await?, (1, 6, 2));
    let state = g
        .state_of("us-east-1", "asg/web")
        .await?
        .context("group state")?;
    assert_eq!(state.record, None);
    let now = states(&ec2, &[&kept, &undone, &overridden]).await?;
    assert!(now.values().all(|s| s == "running"), "{now:?}");
    // The next evening puts the kept instance to sleep again.
    g.run_live(at("2026-01-06T18:00:00Z")).await?;
    assert_eq!(states(&ec2, &[&kept]).await?[&kept], "stopped");
    assert_eq!(sizes(&g, "web").await?, (0, 0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_region_a_bad_schedule_a_saga_lock_and_shadow_mode_change_nothing_else()
-> Result<()> {
    let g = Gov::start("hibernation-faults").await?;
    g.put_schedule("office", "UTC", "Mon-Fri 8-18", false)
        .await?;
    // A schedule written around spotctl, with a zone that does not exist.
    g.bed
        .dynamodb()
        .put_item()
        .table_name(g.tables.name("SchedulesTable"))
        .item("name", AttributeValue::S("mars".into()))
        .item("timezone", AttributeValue::S("Mars/Olympus".into()))
        .item("awake", AttributeValue::S("1".repeat(168)))
        .send()
        .await?;
    let east = g.ec2("us-east-1");
    let west = g.ec2("us-west-2");
    let plain = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "office")
        .run(&east)
        .await?;
    let martian = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "mars")
        .run(&east)
        .await?;
    let locked = Launch::new("t3.micro")
        .tag(SCHEDULE_TAG, "office")
        .run(&east)
        .await?;
    let far = Launch::new("t3.micro")
        .in_az("us-west-2a")
        .tag(SCHEDULE_TAG, "office")
        .run(&west)
        .await?;
    g.bed
        .dynamodb()
        .put_item()
        .table_name(g.tables.name("LedgerTable"))
        .item(
            "switch_id",
            AttributeValue::S(format!("lock#{}#us-east-1#{locked}", g.account)),
        )
        .item("owner", AttributeValue::S("sw-1".into()))
        .item(
            "ttl",
            AttributeValue::N((Utc::now().timestamp() + 3600).to_string()),
        )
        .send()
        .await?;

    // Shadow (the deployment's default): decided and reported, nothing changed.
    let shadow = g.reconcile(&[], &["us-east-1"], at(NIGHT)).await?;
    assert!(
        actions(&shadow, "stop")
            .iter()
            .any(|(id, o)| *id == plain && o.starts_with("shadow"))
    );
    assert!(
        states(&east, &[&plain])
            .await?
            .values()
            .all(|s| s == "running")
    );
    assert!(g.audit().await?.is_empty());

    // Shadow keeps the books as live would: by day it records the awake wish, so the evening
    // is a transition live mode acts on.
    g.reconcile(&[], &["us-east-1"], at("2026-01-06T12:00:00Z"))
        .await?;

    // Live, us-west-2 throttled past the SDK's retries: us-east-1 goes on.
    g.proxy.forwarder.inject(
        Fault::new("DescribeInstances", "Throttling", 400)
            .in_region("us-west-2")
            .times(100),
    );
    let live = g.live();
    let overrides: Vec<(&str, &str)> = live.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let next_day = at("2026-01-06T19:00:00Z");
    let report = g
        .reconcile(&overrides, &["us-east-1", "us-west-2"], next_day)
        .await?;
    g.proxy.forwarder.clear_faults();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("us-west-2") && e.contains("Throttl")),
        "{:?}",
        report.errors
    );
    let now = states(&east, &[&plain, &martian, &locked]).await?;
    assert_eq!(now[&plain], "stopped");
    assert_eq!(
        now[&martian], "running",
        "a refused schedule changes nothing"
    );
    assert_eq!(now[&locked], "running", "a switch holds it");
    assert_eq!(states(&west, &[&far]).await?[&far], "running");
    let left: BTreeMap<&str, &str> = actions(&report, "leave").into_iter().collect();
    assert!(
        left[martian.as_str()].contains("refused")
            && left[martian.as_str()].contains("Mars/Olympus"),
        "{left:?}"
    );
    assert!(left[locked.as_str()].contains("sw-1"), "{left:?}");

    // The region back: its instance stops at the next run.
    let report = g
        .reconcile(
            &overrides,
            &["us-east-1", "us-west-2"],
            next_day + TimeDelta::minutes(5),
        )
        .await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(states(&west, &[&far]).await?[&far], "stopped");

    // A refused stop is reported, and tried again at the next run (its wish is not remembered).
    g.reconcile(&overrides, &["us-east-1"], at("2026-01-07T07:50:00Z"))
        .await?;
    assert_eq!(states(&east, &[&plain]).await?[&plain], "running");
    g.proxy.forwarder.inject(
        Fault::new("StopInstances", "UnauthorizedOperation", 403)
            .in_region("us-east-1")
            .times(2),
    );
    let refused = g
        .reconcile(&overrides, &["us-east-1"], at("2026-01-07T18:00:00Z"))
        .await?;
    g.proxy.forwarder.clear_faults();
    assert!(
        actions(&refused, "stop")
            .iter()
            .any(|(id, o)| *id == plain && o.starts_with("failed")),
        "{:?}",
        target(&refused, "us-east-1")?.actions
    );
    assert!(
        !refused.errors.is_empty(),
        "a failed stop is an error of the run"
    );
    assert_eq!(states(&east, &[&plain]).await?[&plain], "running");
    g.reconcile(&overrides, &["us-east-1"], at("2026-01-07T18:05:00Z"))
        .await?;
    assert_eq!(states(&east, &[&plain]).await?[&plain], "stopped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_override_a_target_and_read_the_savings_and_one_time_spot_is_never_stopped()
-> Result<()> {
    let g = Gov::start("hibernation-spotctl").await?;
    // Asleep at every hour: whatever the instant, the schedule wants its targets stopped.
    let mut never = Schedule::new("never", "UTC", Week::from_matrix(&"0".repeat(168))?)?;
    never.wake_lead_minutes = 0;
    g.schedules().put(&never).await?;
    let ec2 = g.ec2("us-east-1");
    let released = Launch::new("m5.large")
        .tag(SCHEDULE_TAG, "never")
        .run(&ec2)
        .await?;
    let sleeper = Launch::new("m5.large")
        .tag(SCHEDULE_TAG, "never")
        .run(&ec2)
        .await?;
    let spot = Launch::new("m5.large")
        .spot()
        .tag(SCHEDULE_TAG, "never")
        .run(&ec2)
        .await?;
    let now = Utc::now();
    let until = (now + TimeDelta::hours(2)).to_rfc3339();
    let account = g.account.clone();
    let ok = g.spotctl(&[
        "schedule",
        "override",
        &released,
        "--account",
        &account,
        "--awake-until",
        &until,
        "--by",
        "alice",
        "--reason",
        "release night",
    ])?;
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("stays awake until"));
    // Refused, and nothing stored: a target that is none, a time past, no reason.
    for bad in [
        vec!["web", "--awake-until", until.as_str(), "--reason", "x"],
        vec![
            released.as_str(),
            "--awake-until",
            "2020-01-01T00:00:00Z",
            "--reason",
            "x",
        ],
        vec![
            released.as_str(),
            "--asleep-until",
            "tomorrow",
            "--reason",
            "x",
        ],
        vec![
            released.as_str(),
            "--awake-until",
            until.as_str(),
            "--reason",
            " ",
        ],
    ] {
        let mut args = vec![
            "schedule",
            "override",
            "--account",
            account.as_str(),
            "--by",
            "bob",
        ];
        args.extend(bad.iter());
        let refused = g.spotctl(&args)?;
        assert!(!refused.status.success(), "{bad:?} accepted");
    }
    assert_eq!(
        g.hibernation()
            .scope(&g.account, "us-east-1")
            .await?
            .overrides
            .len(),
        1
    );

    // Three hours ago the reconciler stopped what the override did not keep awake.
    let report = g.run_live(now - TimeDelta::hours(3)).await?;
    let after = states(&ec2, &[&released, &sleeper, &spot]).await?;
    assert_eq!(
        (
            after[&released].as_str(),
            after[&sleeper].as_str(),
            after[&spot].as_str()
        ),
        ("running", "stopped", "running"),
        "{:?}",
        target(&report, "us-east-1")?.actions
    );
    let left: BTreeMap<&str, &str> = actions(&report, "leave").into_iter().collect();
    assert!(left[spot.as_str()].contains("never terminated"), "{left:?}");

    let json = g.spotctl(&["schedule", "savings", "--json"])?;
    assert!(json.status.success(), "{json:?}");
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let row = rows
        .iter()
        .find(|r| r["target"] == sleeper.as_str())
        .context("the sleeper's row")?;
    let hours = row["total"]["hours"].as_f64().unwrap_or_default();
    assert!((2.9..3.1).contains(&hours), "{row}");
    let usd = row["total"]["usd"].as_f64().unwrap_or_default();
    assert!((usd - hours * 0.096).abs() < 1e-6, "{row}");
    assert_eq!(row["schedule"], "never");
    let table = String::from_utf8_lossy(&g.spotctl(&["schedule", "savings"])?.stdout).into_owned();
    let line = table
        .lines()
        .find(|l| l.contains(&sleeper))
        .context("a row")?;
    assert!(
        line.contains("never") && line.contains(&g.account),
        "{table}"
    );
    assert!(table.contains("per schedule:"), "{table}");
    Ok(())
}
