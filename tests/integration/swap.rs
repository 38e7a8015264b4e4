//! The ASG swap end to end: moto executes statemachines/asg-swap.asl.json and calls the swap's
//! step binaries through the bed's gateway; a sampler reads the group's in-service count all along;
//! faults are injected by the test's proxy.
//!
//! Invariants checked after every execution: the in-service count never fell below its start, no
//! instance the swap launched is left running outside the group, MaxSize and processes are as the
//! owner had them, and an old member was terminated only if its replacement was InService.

use anyhow::Result;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use spot_domain::saga::SwitchStatus;
use testbed::HOME_ACCOUNT;
use testbed::saga::{Execution, SagaBed};
use testbed::swap::{GroupSpec, Sampler, replacements, snapshot};

/// No approval unless a test wants one.
const NO_APPROVAL: &[(&str, &str, &str)] = &[("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL")];

fn request(group: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": "us-east-1", "asg_name": group, "mode": mode,
        "settings": {"wait_seconds": 1, "health_checks": 3, "approval_timeout_seconds": 60}
    })
}

fn show(e: &Execution) -> String {
    format!(
        "{:?} {:?} {:?} path {:?} output {}",
        e.status, e.error, e.cause, e.path, e.output
    )
}

struct Swap {
    saga: SagaBed,
    autoscaling: aws_sdk_autoscaling::Client,
    group: String,
}

impl Swap {
    async fn start(
        label: &str,
        overrides: &[(&str, &str, &str)],
        spec: impl FnOnce(String) -> GroupSpec,
    ) -> Result<Self> {
        let saga = SagaBed::swap(label, overrides).await?;
        let group = saga.name(label);
        spec(group.clone()).create(&saga.bed).await?;
        let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
        Ok(Self {
            saga,
            autoscaling,
            group,
        })
    }

    /// Runs the swap while sampling the group; returns the execution and the lowest in-service
    /// count seen.
    async fn run(&self, name: &str, mode: &str) -> Result<(Execution, usize)> {
        let sampler = Sampler::start(self.autoscaling.clone(), &self.group);
        let e = self.saga.run(name, &request(&self.group, mode)).await?;
        let samples = sampler.stop().await?;
        assert!(samples.len() > 10, "too few samples: {}", samples.len());
        Ok((e, samples.into_iter().min().unwrap_or(0)))
    }

    /// No instance launched by `swap_id` runs outside the group.
    async fn assert_no_orphan(&self, swap_id: &str) -> Result<()> {
        let members = snapshot(&self.autoscaling, &self.group).await?.members;
        for (id, state, _) in replacements(&self.saga.bed.ec2(), swap_id).await? {
            assert!(
                members.contains(&id) || state == "terminated" || state == "shutting-down",
                "{id} is {state} outside the group"
            );
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_on_demand_member_is_replaced_and_capacity_never_drops() -> Result<()> {
    let swap = Swap::start("swap-ok", NO_APPROVAL, |n| {
        GroupSpec::new(&n).size(3, 4).with_target_group()
    })
    .await?;
    let before = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!(before.in_service, 3);
    let name = swap.saga.name("ok");

    let (e, lowest) = swap.run(&name, "live").await?;

    assert_eq!(e.status, ExecutionStatus::Succeeded, "{}", show(&e));
    assert!(lowest >= 3, "in service fell to {lowest}");
    let after = snapshot(&swap.autoscaling, &swap.group).await?;
    assert_eq!((after.desired, after.max, after.in_service), (3, 4, 3));
    assert!(after.suspended.is_empty(), "{:?}", after.suspended);
    let ec2 = swap.saga.bed.ec2();
    let launched = replacements(&ec2, &name).await?;
    assert_eq!(launched.len(), 3);
    for (id, state, spot) in &launched {
        assert!(after.members.contains(id), "{id} not in the group");
        assert_eq!((state.as_str(), *spot), ("running", true));
    }
    for old in &before.members {
        assert!(!after.members.contains(old));
        let answer = ec2.describe_instances().instance_ids(old).send().await?;
        let state = answer.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned());
        assert_eq!(state.as_deref(), Some("terminated"), "{old}");
    }
    for old in &before.members {
        let record = swap
            .saga
            .ledger(&format!("{name}#{old}"))
            .await?
            .expect("a ledger record");
        assert_eq!(record.status, SwitchStatus::Switched);
        assert_eq!(record.group.as_deref(), Some(swap.group.as_str()));
    }
    swap.assert_no_orphan(&name).await?;
    let per_member = e.path.iter().filter(|s| *s == "LaunchBatch").count();
    println!(
        "swap of 3: {} states ({} per member), {} Lambda invocations, {:.1} s (waits of 1 s), lowest in service {lowest}",
        e.path.len(),
        (e.path.len() - 7) / per_member.max(1),
        e.invocations,
        e.wall.as_secs_f64()
    );
    Ok(())
}
