//! The waste scanner against the bed, clock injected: lifecycle, modes, exemption, idempotency,
//! failures, API call counts; and the real binary on a schedule's event.

use anyhow::Result;
use aws_sdk_ec2::types::{Filter, VolumeType};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use spot_domain::ErrorName;
use spot_domain::tags::{BACKUP_TAG, EXEMPT_TAG, WASTE_TAG};
use testbed::saga::Inbox;
use testbed::{Fault, LambdaHost, Launch};

use crate::governance::{Gov, status, target};
use crate::support::{n, s};

fn day(t0: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    t0 + TimeDelta::days(days)
}

async fn address(ec2: &aws_sdk_ec2::Client) -> Result<String> {
    Ok(ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await?
        .allocation_id()
        .unwrap_or_default()
        .to_owned())
}

async fn volume(ec2: &aws_sdk_ec2::Client, az: &str, size: i32) -> Result<String> {
    Ok(ec2
        .create_volume()
        .availability_zone(az)
        .size(size)
        .volume_type(VolumeType::Gp3)
        .send()
        .await?
        .volume_id()
        .unwrap_or_default()
        .to_owned())
}

async fn snapshot(ec2: &aws_sdk_ec2::Client, volume_id: &str) -> Result<String> {
    Ok(ec2
        .create_snapshot()
        .volume_id(volume_id)
        .send()
        .await?
        .snapshot_id()
        .unwrap_or_default()
        .to_owned())
}

async fn image(ec2: &aws_sdk_ec2::Client, instance_id: &str, name: &str) -> Result<String> {
    Ok(ec2
        .create_image()
        .instance_id(instance_id)
        .name(name)
        .send()
        .await?
        .image_id()
        .unwrap_or_default()
        .to_owned())
}

async fn backups(ec2: &aws_sdk_ec2::Client, volume_id: &str) -> Result<usize> {
    Ok(ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name(format!("tag:{BACKUP_TAG}"))
                .values(volume_id)
                .build(),
        )
        .send()
        .await?
        .snapshots()
        .len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_detects_then_flags_and_tags_after_seven_days_and_deletes_nothing() -> Result<()>
{
    let g = Gov::start("waste-audit").await?;
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let free_ip = address(&ec2).await?;
    let used_ip = address(&ec2).await?;
    let instance = Launch::new("t3.micro")
        .in_az("us-east-1a")
        .run(&ec2)
        .await?;
    ec2.associate_address()
        .allocation_id(&used_ip)
        .instance_id(&instance)
        .send()
        .await?;
    let idle = volume(&ec2, "us-east-1a", 100).await?;
    let attached = volume(&ec2, "us-east-1a", 50).await?;
    ec2.attach_volume()
        .volume_id(&attached)
        .instance_id(&instance)
        .device("/dev/sdf")
        .send()
        .await?;

    // Day 6: the address is waste at once; the volume is 6 days old, not yet.
    let report = g.scan(&[], day(t0, 6)).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(status(&g.waste("us-east-1", &free_ip).await?), "DETECTED");
    assert_eq!(
        status(&g.waste("us-east-1", &idle).await?),
        "-",
        "6 days old"
    );
    assert_eq!(status(&g.waste("us-east-1", &used_ip).await?), "-");
    assert_eq!(status(&g.waste("us-east-1", &attached).await?), "-");

    // Day 8: the volume is 8 days old: detected. The address, seen 2 days ago, stays detected.
    g.scan(&[], day(t0, 8)).await?;
    assert_eq!(status(&g.waste("us-east-1", &idle).await?), "DETECTED");

    // Day 13: the address was first seen 7 days ago: flagged and tagged; the volume (5 days) not.
    let report = g.scan(&[], day(t0, 13)).await?;
    let ip = g.waste("us-east-1", &free_ip).await?;
    assert_eq!(status(&ip), "FLAGGED");
    assert!(g.tags("us-east-1", &free_ip).await?[WASTE_TAG].contains("audit mode"));
    assert_eq!(status(&g.waste("us-east-1", &idle).await?), "DETECTED");
    let east = target(&report, "us-east-1")?;
    assert_eq!(
        east.monthly_waste_usd,
        Some(11.65),
        "3.65 for the address + 8.00 for 100 GB gp3"
    );
    assert_eq!(east.counts["elastic_ip"]["FLAGGED"], 1);
    assert_eq!(east.scanned["elastic_ip"], 2);

    // Day 40 in audit mode: flagged, never deleted.
    g.scan(&[], day(t0, 40)).await?;
    assert_eq!(status(&g.waste("us-east-1", &idle).await?), "FLAGGED");
    assert_eq!(
        ec2.describe_volumes()
            .volume_ids(&idle)
            .send()
            .await?
            .volumes()
            .len(),
        1
    );
    assert_eq!(
        ec2.describe_addresses()
            .allocation_ids(&free_ip)
            .send()
            .await?
            .addresses()
            .len(),
        1
    );
    assert!(
        g.audit().await?.is_empty(),
        "audit mode takes no destructive action"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_deletes_only_after_the_grace_with_audit_items_and_a_backup() -> Result<()> {
    let g = Gov::start("waste-live").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let ip = address(&ec2).await?;
    let vol = volume(&ec2, "us-east-1b", 20).await?;
    // Owners subscribe to the stack's notice topic; one of them only to scheduled deletions.
    let topic = g.tables.name("NoticeTopic");
    let all = Inbox::subscribe(&g.bed, topic, None).await?;
    let filter = json!({"account": [g.account], "event": ["scheduled_delete"]}).to_string();
    let deletions_only = Inbox::subscribe(&g.bed, topic, Some(&filter)).await?;

    g.scan(&live, day(t0, 8)).await?;
    let report = g.scan(&live, day(t0, 15)).await?;
    let record = g.waste("us-east-1", &vol).await?;
    assert_eq!(status(&record), "SCHEDULED_DELETE");
    let delete_after =
        chrono::DateTime::parse_from_rfc3339(s(record.as_ref().unwrap(), "delete_after"))?;
    assert_eq!(delete_after, day(t0, 22));
    // Each owner is told once, with the date, and the attributes to filter on.
    let told = all.wait_for(&format!("EBS volume {vol}")).await?;
    let deadline = day(t0, 22).format("%Y-%m-%dT%H:%MZ").to_string();
    assert!(
        told["Message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("deleted after {deadline}"))),
        "{told}"
    );
    let attribute =
        |v: &serde_json::Value, name: &str| v["MessageAttributes"][name]["Value"].clone();
    assert_eq!(attribute(&told, "account"), json!(g.account));
    assert_eq!(attribute(&told, "kind"), json!("waste"));
    assert_eq!(attribute(&told, "event"), json!("scheduled_delete"));
    assert_eq!(attribute(&told, "deadline"), json!(deadline));
    all.wait_for(&format!("Elastic IP {ip}")).await?;
    assert_eq!(
        target(&report, "us-east-1")?.notices,
        [("done".to_owned(), 2)].into()
    );
    assert!(g.tags("us-east-1", &vol).await?[WASTE_TAG].contains("deleted after"));
    assert_eq!(
        target(&report, "us-east-1")?.mode,
        spot_domain::governance::mode::Mode::Live
    );

    // One second before the end of the grace: nothing is deleted.
    g.scan(&live, day(t0, 22) - TimeDelta::seconds(1)).await?;
    assert_eq!(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await?
            .volumes()
            .len(),
        1
    );
    assert!(g.audit().await?.is_empty());

    let report = g.scan(&live, day(t0, 22)).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await
            .is_err(),
        "volume deleted"
    );
    assert!(
        ec2.describe_addresses()
            .allocation_ids(&ip)
            .send()
            .await
            .is_err(),
        "address released"
    );
    assert_eq!(backups(&ec2, &vol).await?, 1, "snapshotted before deletion");
    let record = g.waste("us-east-1", &vol).await?.unwrap();
    assert_eq!(s(&record, "status"), "DELETED");
    assert!(s(&record, "backup_snapshot_id").starts_with("snap-"));
    let audit = g.audit().await?;
    assert_eq!(audit.len(), 2);
    for item in &audit {
        assert_eq!(s(item, "outcome"), "done");
        assert_eq!(s(item, "mode"), "live");
        assert_eq!(s(item, "request_id"), "test-request");
        assert!(
            s(item, "pre_state").contains("SCHEDULED_DELETE"),
            "the state before the action"
        );
    }

    // The deletions are announced too, the backup named.
    let gone = all
        .wait_for(&format!(
            "EBS volume {vol} in account {}, us-east-1, is deleted",
            g.account
        ))
        .await?;
    assert_eq!(attribute(&gone, "event"), json!("deleted"));
    assert!(
        gone["Message"]
            .as_str()
            .is_some_and(|m| m.contains(s(&record, "backup_snapshot_id"))),
        "{gone}"
    );
    all.wait_for(&format!(
        "Elastic IP {ip} in account {}, us-east-1, is deleted",
        g.account
    ))
    .await?;

    // Re-running changes nothing and repeats nothing, nor tells anybody again.
    let report = g.scan(&live, day(t0, 23)).await?;
    assert!(report.errors.is_empty());
    assert_eq!(report.actions, 0);
    assert!(target(&report, "us-east-1")?.notices.is_empty());
    assert_eq!(g.audit().await?.len(), 2);
    assert_eq!(
        all.notifications().await?.len(),
        4,
        "{:#?}",
        all.notifications().await?
    );
    // The filtered subscription got the two scheduled deletions and nothing else.
    let filtered = deletions_only.notifications().await?;
    assert_eq!(filtered.len(), 2, "{filtered:#?}");
    assert!(
        filtered
            .iter()
            .all(|v| attribute(v, "event") == json!("scheduled_delete"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_needs_the_account_on_the_allowlist_and_exempt_resources_are_never_touched()
-> Result<()> {
    let g = Gov::start("waste-allowlist").await?;
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let vol = volume(&ec2, "us-east-1a", 10).await?;
    let exempt = volume(&ec2, "us-east-1a", 10).await?;
    ec2.create_tags()
        .resources(&exempt)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(EXEMPT_TAG)
                .value("keep")
                .build(),
        )
        .send()
        .await?;
    let not_listed = [("MODE", "live"), ("LIVE_ACCOUNTS", "999999999999")];

    for d in [8, 15, 30, 60] {
        let report = g.scan(&not_listed, day(t0, d)).await?;
        assert_eq!(
            target(&report, "us-east-1")?.mode,
            spot_domain::governance::mode::Mode::Audit
        );
    }
    assert_eq!(
        status(&g.waste("us-east-1", &vol).await?),
        "FLAGGED",
        "never scheduled"
    );
    assert_eq!(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await?
            .volumes()
            .len(),
        1
    );
    assert_eq!(
        status(&g.waste("us-east-1", &exempt).await?),
        "-",
        "exempt: never tracked"
    );
    assert!(!g.tags("us-east-1", &exempt).await?.contains_key(WASTE_TAG));

    // Exempting a flagged resource resolves it and takes the tag off.
    ec2.create_tags()
        .resources(&vol)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(EXEMPT_TAG)
                .value("")
                .build(),
        )
        .send()
        .await?;
    g.scan(&not_listed, day(t0, 61)).await?;
    assert_eq!(status(&g.waste("us-east-1", &vol).await?), "RESOLVED");
    assert!(!g.tags("us-east-1", &vol).await?.contains_key(WASTE_TAG));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattached_volume_or_reassociated_address_is_resolved_and_untagged() -> Result<()> {
    let g = Gov::start("waste-resolve").await?;
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let ip = address(&ec2).await?;
    let vol = volume(&ec2, "us-east-1a", 10).await?;
    g.scan(&[], day(t0, 8)).await?;
    g.scan(&[], day(t0, 15)).await?;
    assert_eq!(status(&g.waste("us-east-1", &vol).await?), "FLAGGED");
    assert!(g.tags("us-east-1", &ip).await?.contains_key(WASTE_TAG));

    let instance = Launch::new("t3.micro")
        .in_az("us-east-1a")
        .run(&ec2)
        .await?;
    ec2.attach_volume()
        .volume_id(&vol)
        .instance_id(&instance)
        .device("/dev/sdg")
        .send()
        .await?;
    ec2.associate_address()
        .allocation_id(&ip)
        .instance_id(&instance)
        .send()
        .await?;
    g.scan(&[], day(t0, 16)).await?;

    for id in [&vol, &ip] {
        let record = g.waste("us-east-1", id).await?.unwrap();
        assert_eq!(s(&record, "status"), "RESOLVED", "{id}");
        assert!(
            n(&record, "expires_at") > day(t0, 16).timestamp(),
            "closed records expire by TTL"
        );
        assert!(
            !g.tags("us-east-1", id).await?.contains_key(WASTE_TAG),
            "{id} untagged"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_amis_in_use_anywhere_are_kept_and_unused_ones_detected() -> Result<()> {
    let g = Gov::start("waste-images").await?;
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let builder = Launch::new("t3.micro")
        .in_az("us-east-1a")
        .run(&ec2)
        .await?;
    let unused_ami = image(&ec2, &builder, "unused").await?;
    let template_ami = image(&ec2, &builder, "in-template").await?;
    let config_ami = image(&ec2, &builder, "in-launch-configuration").await?;
    let running_ami = image(&ec2, &builder, "running").await?;
    let disabled_ami = image(&ec2, &builder, "disabled").await?;
    ec2.disable_image().image_id(&disabled_ami).send().await?;
    Launch::new("t3.micro").run_from(&ec2, &running_ami).await?;
    let vol = volume(&ec2, "us-east-1a", 8).await?;
    let free_snapshot = snapshot(&ec2, &vol).await?;
    let template_snapshot = snapshot(&ec2, &vol).await?;
    ec2.create_launch_template()
        .launch_template_name(format!("lt-{}", g.account))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(&template_ami)
                .block_device_mappings(
                    aws_sdk_ec2::types::LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/sdb")
                        .ebs(
                            aws_sdk_ec2::types::LaunchTemplateEbsBlockDeviceRequest::builder()
                                .snapshot_id(&template_snapshot)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await?;
    g.autoscaling()
        .create_launch_configuration()
        .launch_configuration_name(format!("lc-{}", g.account))
        .image_id(&config_ami)
        .instance_type("t3.micro")
        .send()
        .await?;

    // Day 29: nothing is old enough. Day 31: unused ones are.
    g.scan(&[], day(t0, 29)).await?;
    assert_eq!(status(&g.waste("us-east-1", &free_snapshot).await?), "-");
    assert_eq!(status(&g.waste("us-east-1", &unused_ami).await?), "-");
    let report = g.scan(&[], day(t0, 31)).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    assert_eq!(
        status(&g.waste("us-east-1", &free_snapshot).await?),
        "DETECTED"
    );
    assert_eq!(
        status(&g.waste("us-east-1", &unused_ami).await?),
        "DETECTED"
    );
    assert_eq!(
        status(&g.waste("us-east-1", &disabled_ami).await?),
        "DETECTED",
        "disabled and unused"
    );
    for kept in [&template_snapshot, &template_ami, &config_ami, &running_ami] {
        assert_eq!(
            status(&g.waste("us-east-1", kept).await?),
            "-",
            "{kept} is in use"
        );
    }
    // The snapshot behind the disabled AMI belongs to it: not waste on its own.
    let disabled = ec2
        .describe_images()
        .image_ids(&disabled_ami)
        .include_disabled(true)
        .send()
        .await?;
    let behind = disabled.images()[0].block_device_mappings()[0]
        .ebs()
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_owned();
    assert_eq!(status(&g.waste("us-east-1", &behind).await?), "-");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_deletion_is_finished_by_the_next_run_without_repeating_anything() -> Result<()> {
    let g = Gov::start("waste-crash").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let vol = volume(&ec2, "us-east-1a", 10).await?;
    g.scan(&live, day(t0, 8)).await?;
    g.scan(&live, day(t0, 15)).await?;

    // Crash 1: the backup snapshot is taken, then DeleteVolume fails.
    g.proxy
        .forwarder
        .inject(Fault::new("DeleteVolume", "InvalidParameterValue", 400).times(1));
    let report = g.scan(&live, day(t0, 22)).await?;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(
        status(&g.waste("us-east-1", &vol).await?),
        "SCHEDULED_DELETE"
    );
    assert_eq!(backups(&ec2, &vol).await?, 1);

    // Crash 2: the volume is deleted, then recording it fails.
    let waste_table = g.tables.name("WasteTable").to_owned();
    g.proxy.forwarder.inject(
        Fault::new("PutItem", "ValidationException", 400)
            .when_body_contains(&waste_table)
            .times(1),
    );
    let report = g.scan(&live, day(t0, 22)).await?;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        ec2.describe_volumes()
            .volume_ids(&vol)
            .send()
            .await
            .is_err(),
        "deleted"
    );
    assert_eq!(
        backups(&ec2, &vol).await?,
        1,
        "the first run's backup was reused"
    );

    // The next run records what happened, and acts no more.
    let report = g.scan(&live, day(t0, 23)).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(status(&g.waste("us-east-1", &vol).await?), "DELETED");
    let audit = g.audit().await?;
    assert_eq!(
        audit.len(),
        1,
        "one decision, one audit item, whatever the retries"
    );
    assert_eq!(s(&audit[0], "outcome"), "done");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_region_and_an_unreachable_account_are_reported_and_the_rest_completes()
-> Result<()> {
    let g = Gov::start("waste-failures").await?;
    let denied = format!("{}", g.account.parse::<u64>()? + 1);
    g.register(&denied, &["us-east-1"]).await?;
    let ip = address(&g.ec2("us-east-1")).await?;
    g.proxy
        .forwarder
        .inject(Fault::new("DescribeVolumes", "RequestLimitExceeded", 503).in_region("us-west-2"));
    g.proxy
        .forwarder
        .inject(Fault::new("AssumeRole", "AccessDenied", 403).when_body_contains(&denied));

    let scanner = g.scanner(&[], Utc::now()).await?;
    let report = scanner
        .run(json!({"accounts": [g.account, denied]}), "test-request")
        .await?;
    // The scanners reach a member through its governance role, never the read-only one.
    let assumed = g.proxy.forwarder.assumed_roles();
    let governance = format!("{}-governance", testbed::Bed::role_arn(&g.account));
    assert!(
        assumed
            .iter()
            .any(|r| r.starts_with(&format!("{governance} ")))
            && assumed.iter().all(|r| r.contains("-governance ")),
        "{assumed:?}"
    );

    let error = |account: &str, region: &str| {
        report
            .targets
            .iter()
            .find(|t| t.account == account && t.region == region)
            .and_then(|t| t.error.clone())
    };
    assert!(error(&g.account, "us-east-1").is_none());
    assert!(
        error(&g.account, "us-west-2")
            .unwrap()
            .contains("RequestLimitExceeded")
    );
    assert!(
        error(&denied, "us-east-1")
            .unwrap()
            .contains("AccessDenied")
    );
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert_eq!(
        status(&g.waste("us-east-1", &ip).await?),
        "DETECTED",
        "the healthy target completed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_calls_scale_with_pages_not_resources() -> Result<()> {
    let g = Gov::start("waste-calls").await?;
    let ec2 = g.ec2("us-east-1");
    for _ in 0..25 {
        let v = volume(&ec2, "us-east-1a", 1).await?;
        snapshot(&ec2, &v).await?;
        address(&ec2).await?;
    }
    let before = g.proxy.forwarder.calls().len();
    let scanner = g.scanner(&[], Utc::now()).await?;
    scanner
        .run(
            json!({"accounts": [g.account], "regions": ["us-east-1"]}),
            "test-request",
        )
        .await?;
    let calls = g.proxy.forwarder.calls_since(before);
    let describes: Vec<String> = calls
        .iter()
        .filter(|c| c.service == "ec2" || c.service == "autoscaling")
        .map(|c| c.operation.clone())
        .collect();
    let mut unique = describes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        describes.len(),
        unique.len(),
        "one call per list: {describes:?}"
    );
    assert!(describes.len() <= 7, "{describes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_a_schedule_with_a_summary_and_refuses_a_bad_request() -> Result<()> {
    let g = Gov::start("waste-binary").await?;
    address(&g.ec2("us-west-2")).await?;
    let spec = g.tables.function("waste-scanner", &g.bed.endpoint)?;
    let mut host = LambdaHost::start(spec).await?;
    host.wait_ready().await?;

    let schedule = json!({"version": "0", "id": "89d1a02d-5ec7-412e-82f5-13505f849b41", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-22T03:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/daily"], "detail": {}});
    let report = host.invoke(&schedule).await?.ok()?;
    assert_eq!(report["function"], "waste-scanner");
    let mine: Vec<&serde_json::Value> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["account"] == g.account.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "the registered account in its two regions");
    let west = mine.iter().find(|t| t["region"] == "us-west-2").unwrap();
    assert_eq!(west["counts"]["elastic_ip"]["DETECTED"], 1);
    assert_eq!(west["mode"], "audit");
    assert!(
        report["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["account"] == testbed::HOME_ACCOUNT),
        "and the home account"
    );
    // The dashboard's figures: per kind and target, the open waste (the address is DETECTED,
    // so open) in the EMF lines CloudWatch reads from the log.
    let open: Vec<serde_json::Value> = host
        .json_logs()
        .into_iter()
        .filter(|l| {
            l["WasteOpenMonthlyUsd"].is_number()
                && l["account"] == g.account.as_str()
                && l["region"] == "us-west-2"
        })
        .collect();
    assert_eq!(open.len(), 5, "one line per kind: {open:#?}");
    let address_cost = open.iter().find(|l| l["Kind"] == "elastic_ip").unwrap();
    assert_eq!(
        address_cost["WasteOpenMonthlyUsd"].as_f64(),
        west["monthly_waste_usd"].as_f64()
    );
    assert_eq!(
        address_cost["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SpotOptimizer"
    );

    let error = host.invoke(&json!({"acounts": ["123"]})).await?.err()?;
    assert_eq!(error.error_type, ErrorName::InvalidRequest.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_deadline_without_the_owners_notice_and_no_deletion_once_the_notice_changed()
-> Result<()> {
    let g = Gov::start("waste-notice").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let untold = volume(&ec2, "us-east-1b", 20).await?;
    let told = volume(&ec2, "us-east-1b", 30).await?;
    g.scan(&live, day(t0, 8)).await?;

    // Day 15, when deletion is scheduled: the notice cannot be written on `untold`.
    g.proxy
        .forwarder
        .inject(Fault::new("CreateTags", "UnauthorizedOperation", 403).when_body_contains(&untold));
    g.scan(&live, day(t0, 15)).await?;
    assert_ne!(
        status(&g.waste("us-east-1", &untold).await?),
        "SCHEDULED_DELETE",
        "no deadline the owner was not told of"
    );
    assert_eq!(
        status(&g.waste("us-east-1", &told).await?),
        "SCHEDULED_DELETE"
    );
    g.proxy.forwarder.clear_faults();

    // The notice on `told` is changed back to "nothing will be deleted" (by hand, or by an older
    // run's write landing late): its deadline is no longer announced, so it is not acted on.
    ec2.create_tags()
        .resources(&told)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(WASTE_TAG)
                .value("flagged: audit mode, nothing will be deleted")
                .build(),
        )
        .send()
        .await?;
    let report = g.scan(&live, day(t0, 23)).await?;
    assert_eq!(
        ec2.describe_volumes()
            .volume_ids(&told)
            .send()
            .await?
            .volumes()
            .len(),
        1,
        "kept: {report:?}"
    );
    let refused = target(&report, "us-east-1")?
        .actions
        .iter()
        .any(|a| a.resource_id == told && a.outcome.contains("refused"));
    assert!(refused, "{report:?}");
    Ok(())
}

/// A switch's leftovers: the stopped source is kept for `SOURCE_RETENTION_DAYS` (the revert
/// window), then goes through the waste lifecycle like any waste: detected, flagged, scheduled,
/// and in live mode, after the grace, its volumes snapshotted and the instance terminated. The
/// clone, which carries the switch's mark too, is never a candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_source_is_kept_for_its_retention_then_flagged_backed_up_and_terminated()
-> Result<()> {
    use spot_domain::tags::{CREATED_VIA, SWITCH_TAG, SWITCHED_AT_TAG, VIA_SWITCH};

    let g = Gov::start("waste-switch-source").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let t0 = Utc::now();
    let switched_at = t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let source = Launch::new("m5.large")
        .volume_gib(20)
        .tag(SWITCH_TAG, "switch-1")
        .tag(SWITCHED_AT_TAG, &switched_at)
        .run(&ec2)
        .await?;
    let clone = Launch::new("m5.large")
        .tag(SWITCH_TAG, "switch-1")
        .tag(CREATED_VIA, VIA_SWITCH)
        .run(&ec2)
        .await?;
    ec2.stop_instances()
        .instance_ids(&source)
        .instance_ids(&clone)
        .send()
        .await?;
    let volume = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&source)
                .build(),
        )
        .send()
        .await?
        .volumes()
        .first()
        .and_then(|v| v.volume_id())
        .unwrap_or_default()
        .to_owned();

    // Within the retention: kept, not even detected.
    let report = g.scan(&live, day(t0, 29)).await?;
    assert_eq!(g.waste("us-east-1", &source).await?, None);
    assert_eq!(g.waste("us-east-1", &clone).await?, None);
    assert_eq!(
        target(&report, "us-east-1")?
            .counts
            .get("switch_source")
            .and_then(|c| c.get("DETECTED")),
        None
    );
    // Past it: detected, costed as its volumes, then flagged and scheduled (the owner's tag).
    g.scan(&live, day(t0, 31)).await?;
    let record = g.waste("us-east-1", &source).await?;
    assert_eq!(status(&record), "DETECTED");
    assert!(s(record.as_ref().unwrap(), "reason").contains("past its 30-day retention"));
    let cost = record.as_ref().unwrap()["monthly_cost_usd"]
        .as_n()
        .unwrap()
        .parse::<f64>()?;
    assert!(
        (cost - 2.0).abs() < 1e-9,
        "20 GiB of gp2 or gp3 at list price: {cost}"
    );
    g.scan(&live, day(t0, 38)).await?;
    let record = g.waste("us-east-1", &source).await?;
    assert_eq!(status(&record), "SCHEDULED_DELETE");
    assert!(g.tags("us-east-1", &source).await?[WASTE_TAG].contains("deleted after"));
    // The grace not over: still there. Over: backed up, then terminated.
    g.scan(&live, day(t0, 45) - TimeDelta::seconds(1)).await?;
    assert_eq!(
        testbed::saga::state(&ec2, &source).await?.as_str(),
        "stopped"
    );
    g.scan(&live, day(t0, 45)).await?;
    g.scan(&live, day(t0, 45) + TimeDelta::hours(1)).await?;
    let record = g.waste("us-east-1", &source).await?;
    assert_eq!(status(&record), "DELETED", "{record:?}");
    assert_eq!(
        testbed::saga::state(&ec2, &source).await?.as_str(),
        "terminated"
    );
    assert_eq!(backups(&ec2, &volume).await?, 1, "one backup of its volume");
    assert!(s(record.as_ref().unwrap(), "backup_snapshot_id").starts_with("snap-"));
    assert!(
        g.audit()
            .await?
            .iter()
            .any(|a| s(a, "action") == "terminate_switch_source" && s(a, "outcome") == "done"),
        "audited"
    );
    // The clone was never a candidate.
    assert_eq!(g.waste("us-east-1", &clone).await?, None);
    assert_eq!(
        testbed::saga::state(&ec2, &clone).await?.as_str(),
        "stopped"
    );
    Ok(())
}
