//! The security enforcer against the bed, clock injected: flagging, the 23 h / 25 h boundary,
//! audit vs live, allowlist, exemption, authorisation after the fact, protection, stop.

use anyhow::Result;
use aws_sdk_ec2::types::{AttributeBooleanValue, InstanceStateName, Tag};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use spot_domain::tags::EXEMPT_TAG;
use spot_domain::tags::UNAUTHORIZED_TAG;
use testbed::saga::Inbox;
use testbed::{LambdaHost, Launch};

use crate::governance::{Gov, status, target};
use crate::support::s;

fn hours(t0: DateTime<Utc>, h: i64) -> DateTime<Utc> {
    t0 + TimeDelta::hours(h)
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<InstanceStateName> {
    let answer = ec2.describe_instances().instance_ids(id).send().await?;
    Ok(answer.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned()
        .unwrap_or(InstanceStateName::Pending))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_instances_are_flagged_and_tagged_and_authorised_or_exempt_ones_left_alone()
-> Result<()> {
    let g = Gov::start("security-audit").await?;
    let ec2 = g.ec2("us-east-1");
    let rogue = Launch::new("m5.large")
        .tag("Name", "rogue")
        .run(&ec2)
        .await?;
    let managed = Launch::new("m5.large")
        .tag("ManagedBy", "SpotOptimizer")
        .run(&ec2)
        .await?;
    let asg = Launch::new("m5.large")
        .tag("aws:autoscaling:groupName", "web")
        .run(&ec2)
        .await?;
    let exempt = Launch::new("m5.large")
        .tag(EXEMPT_TAG, "lab box")
        .run(&ec2)
        .await?;
    let wrong_value = Launch::new("m5.large")
        .tag("ManagedBy", "Terraform")
        .run(&ec2)
        .await?;
    let t0 = Utc::now();

    let report = g.enforce(&[], t0).await?;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let record = g.enforcement(&rogue).await?.unwrap();
    assert_eq!(s(&record, "auth_status"), "FLAGGED");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(s(&record, "terminate_after"))?,
        hours(t0, 24)
    );
    assert!(
        record["tags"].as_m().unwrap().contains_key("Name"),
        "tags at decision time"
    );
    assert!(g.tags("us-east-1", &rogue).await?[UNAUTHORIZED_TAG].contains("audit mode"));
    assert_eq!(
        status(&g.enforcement(&wrong_value).await?),
        "FLAGGED",
        "ManagedBy must be SpotOptimizer"
    );
    for fine in [&managed, &asg, &exempt] {
        assert_eq!(status(&g.enforcement(fine).await?), "-", "{fine}");
        assert!(
            !g.tags("us-east-1", fine)
                .await?
                .contains_key(UNAUTHORIZED_TAG)
        );
    }
    let counts = &target(&report, "us-east-1")?.counts["instance"];
    assert_eq!((counts["FLAGGED"], counts["AUTHORIZED"]), (2, 3));

    // Audit mode never enforces, however long it waits.
    g.enforce(&[], hours(t0, 500)).await?;
    assert_eq!(state(&ec2, &rogue).await?, InstanceStateName::Running);
    assert!(g.audit().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_terminates_after_the_grace_not_before_and_records_why() -> Result<()> {
    let g = Gov::start("security-live").await?;
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    let ec2 = g.ec2("us-east-1");
    let rogue = Launch::new("c5.large").run(&ec2).await?;
    let inbox = Inbox::subscribe(&g.bed, g.tables.name("NoticeTopic"), None).await?;
    let t0 = Utc::now();
    g.enforce(&live, t0).await?;
    assert!(g.tags("us-east-1", &rogue).await?[UNAUTHORIZED_TAG].contains("will terminate after"));
    // The owner is told, with the deadline.
    let told = inbox.wait_for(&format!("Instance {rogue} ")).await?;
    let deadline = hours(t0, 24).format("%Y-%m-%dT%H:%MZ").to_string();
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "flagged");
    assert_eq!(told["MessageAttributes"]["kind"]["Value"], "enforcement");
    assert_eq!(
        told["MessageAttributes"]["deadline"]["Value"],
        deadline.as_str()
    );
    assert!(
        told["Message"]
            .as_str()
            .is_some_and(|m| m.contains(&deadline)),
        "{told}"
    );

    g.enforce(&live, hours(t0, 23)).await?;
    assert_eq!(
        state(&ec2, &rogue).await?,
        InstanceStateName::Running,
        "23 h: within the grace"
    );

    let report = g.enforce(&live, hours(t0, 25)).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        state(&ec2, &rogue).await?,
        InstanceStateName::Terminated,
        "25 h: terminated"
    );
    assert_eq!(status(&g.enforcement(&rogue).await?), "TERMINATED");
    let audit = g.audit().await?;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (s(&audit[0], "action"), s(&audit[0], "outcome")),
        ("terminate", "done")
    );
    assert!(s(&audit[0], "pre_state").contains("FLAGGED"));

    let report = g.enforce(&live, hours(t0, 26)).await?;
    assert_eq!(report.actions, 0, "nothing left to do");
    let notices = inbox.notifications().await?;
    let events: Vec<&str> = notices
        .iter()
        .filter_map(|v| v["MessageAttributes"]["event"]["Value"].as_str())
        .collect();
    assert_eq!(
        events,
        ["flagged", "enforced"],
        "told once each: {notices:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_needs_the_allowlist_and_a_late_authorising_tag_clears_the_flag() -> Result<()> {
    let g = Gov::start("security-allowlist").await?;
    let ec2 = g.ec2("us-east-1");
    let rogue = Launch::new("c5.large").run(&ec2).await?;
    let t0 = Utc::now();
    let not_listed = [("MODE", "live"), ("LIVE_ACCOUNTS", "999999999999")];
    g.enforce(&not_listed, t0).await?;
    g.enforce(&not_listed, hours(t0, 48)).await?;
    assert_eq!(state(&ec2, &rogue).await?, InstanceStateName::Running);

    ec2.create_tags()
        .resources(&rogue)
        .tags(Tag::builder().key("eks:cluster-name").value("prod").build())
        .send()
        .await?;
    g.enforce(&not_listed, hours(t0, 49)).await?;
    let record = g.enforcement(&rogue).await?.unwrap();
    assert_eq!(s(&record, "auth_status"), "AUTHORIZED");
    assert!(s(&record, "reason").contains("eks:cluster-name"));
    assert!(
        !g.tags("us-east-1", &rogue)
            .await?
            .contains_key(UNAUTHORIZED_TAG)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_protection_is_reported_never_forced_and_stop_can_replace_terminate()
-> Result<()> {
    let g = Gov::start("security-protect").await?;
    let ec2 = g.ec2("us-east-1");
    let protected = Launch::new("r5.large").run(&ec2).await?;
    ec2.modify_instance_attribute()
        .instance_id(&protected)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await?;
    let t0 = Utc::now();
    let live = [("MODE", "live"), ("LIVE_ACCOUNTS", g.account.as_str())];
    g.enforce(&live, t0).await?;
    let report = g.enforce(&live, hours(t0, 25)).await?;

    assert_eq!(state(&ec2, &protected).await?, InstanceStateName::Running);
    assert_eq!(status(&g.enforcement(&protected).await?), "UNAUTHORIZED");
    let action = &target(&report, "us-east-1")?.actions[0];
    assert!(action.outcome.starts_with("refused"), "{action:?}");
    assert!(s(&g.audit().await?[0], "outcome").starts_with("refused"));

    // ACTION=stop stops instead.
    let stoppable = Launch::new("r5.large").run(&ec2).await?;
    let stop = [
        ("MODE", "live"),
        ("LIVE_ACCOUNTS", g.account.as_str()),
        ("ACTION", "stop"),
    ];
    g.enforce(&stop, hours(t0, 30)).await?;
    g.enforce(&stop, hours(t0, 55)).await?;
    assert_eq!(state(&ec2, &stoppable).await?, InstanceStateName::Stopped);
    assert_eq!(status(&g.enforcement(&stoppable).await?), "STOPPED");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_on_a_schedule() -> Result<()> {
    let g = Gov::start("security-binary").await?;
    Launch::new("m5.large")
        .in_az("us-west-2a")
        .run(&g.ec2("us-west-2"))
        .await?;
    let mut host =
        LambdaHost::start(g.tables.function("security-enforcer", &g.bed.endpoint)?).await?;
    host.wait_ready().await?;
    let report = host
        .invoke(&json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}))
        .await?
        .ok()?;
    assert_eq!(report["function"], "security-enforcer");
    let west = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["account"] == g.account.as_str() && t["region"] == "us-west-2")
        .unwrap()
        .clone();
    assert_eq!(west["counts"]["instance"]["FLAGGED"], 1);
    assert_eq!(west["mode"], "audit");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_tags_every_instance_flagged_in_a_run_and_a_failed_tag_starts_no_deadline()
-> Result<()> {
    let g = Gov::start("security-batch").await?;
    let ec2 = g.ec2("us-east-1");
    let mut rogues = Vec::new();
    for _ in 0..5 {
        rogues.push(Launch::new("t3.micro").run(&ec2).await?);
    }
    g.proxy
        .forwarder
        .inject(testbed::Fault::new("CreateTags", "RequestLimitExceeded", 400).times(3));
    let report = g.enforce(&[], Utc::now()).await?;
    assert_eq!(report.errors.len(), 5, "{:?}", report.errors);
    for id in &rogues {
        assert_eq!(
            status(&g.enforcement(id).await?),
            "-",
            "not told, not flagged"
        );
    }

    let before = g.proxy.forwarder.calls().len();
    let report = g.enforce(&[], Utc::now()).await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let tagging = g
        .proxy
        .forwarder
        .calls_since(before)
        .iter()
        .filter(|c| c.operation == "CreateTags")
        .count();
    assert_eq!(tagging, 1, "five instances, one call");
    for id in &rogues {
        assert_eq!(status(&g.enforcement(id).await?), "FLAGGED");
    }
    Ok(())
}
