//! The emergency failover end to end: the interruption handler's binary receives the signal and
//! starts `statemachines/emergency-failover.asl.json`, which moto executes against the five step
//! binaries (each with its own role, IAM enforced).
//!
//! Every test checks the failover's invariants: the workload ends with exactly one PRIMARY, no
//! instance is left that nobody owns, and the interrupted instance's data is kept.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;
use spot_aws::LedgerTable;
use spot_domain::pool::quarantine::QuarantineStore;
use spot_domain::saga::failover::WorkloadHistory;
use spot_domain::saga::failover::{
    FailoverRecord, FailoverStatus, Market, Role, RoleRecord, execution_name, role_violations,
};
use spot_domain::tags::{
    FAILOVER_TAG, ON_DEMAND_UNTIL_TAG, ORIGIN_TAG, PRESERVED_TAG, REPLICA_TAG, ROLE_TAG,
};
use spot_domain::{Account, Environment, ErrorName};
use testbed::saga::{
    EMERGENCY_FAILOVER, Execution, FAILOVER_LIVE, SagaBed, address_holder, elastic_ip, state,
};
use testbed::{Fault, HOME_ACCOUNT, LambdaHost, Launch, REGION};

use crate::support::{REBALANCE, WARNING, event};

/// The pool of the clone: us-east-1b is use1-az1 in the bed.
const SIGNALLED: &str = "us-east-1#use1-az1#m5.large";

struct Failover {
    saga: SagaBed,
    handler: LambdaHost,
    /// The switch's stopped original.
    origin: String,
    /// Its Spot clone, which the signals name.
    clone: String,
    allocation: String,
}

impl Failover {
    /// A switched workload: the stopped on-demand original, its Spot clone (tagged as the atomic
    /// switch tags it) holding an Elastic IP, and the handler wired to the failover machine.
    async fn start(label: &str) -> Result<Self> {
        Self::start_with(label, &[]).await
    }

    /// As [`Failover::start`], the clone (the workload's primary) carrying `extra` tags too.
    async fn start_with(label: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let saga = SagaBed::start_machine(EMERGENCY_FAILOVER, label, FAILOVER_LIVE, None).await?;
        let ec2 = saga.bed.ec2();
        let origin = Launch::new("m5.large")
            .in_az("us-east-1b")
            .tag("Name", "db")
            .tag("spot-optimizer:switch", "sw-1")
            .run(&ec2)
            .await?;
        ec2.stop_instances().instance_ids(&origin).send().await?;
        let mut launch = Launch::new("m5.large")
            .in_az("us-east-1b")
            .spot()
            .tag("Name", "db")
            .tag("Team", "core")
            .tag("ManagedBy", "SpotOptimizer")
            .tag("CreatedVia", "AtomicSwitch")
            .tag("SourceInstance", &origin)
            .tag("spot-optimizer:switch", "sw-1");
        for (k, v) in extra {
            launch = launch.tag(k, v);
        }
        let clone = launch.run(&ec2).await?;
        let (allocation, _) = elastic_ip(&ec2, &clone).await?;
        let handler = saga.interruption_handler(None).await?;
        Ok(Self {
            saga,
            handler,
            origin,
            clone,
            allocation,
        })
    }

    async fn signal(&mut self, file: &str) -> Result<Value> {
        self.handler
            .invoke(event(file, &self.clone)?.json())
            .await?
            .ok()
    }

    fn name(&self) -> String {
        execution_name(HOME_ACCOUNT, &self.clone)
    }

    async fn finished(&self) -> Result<Execution> {
        self.finished_for(&self.clone).await
    }

    /// The failover of `instance`, once its execution ended.
    async fn finished_for(&self, instance: &str) -> Result<Execution> {
        let arn = format!(
            "{}:{}",
            self.saga
                .machine
                .replacen(":stateMachine:", ":execution:", 1),
            execution_name(HOME_ACCOUNT, instance)
        );
        self.saga.wait(&arn, Duration::from_secs(120)).await
    }

    fn ledger(&self) -> LedgerTable {
        LedgerTable::new(
            self.saga.bed.dynamodb(),
            self.saga.tables.name("LedgerTable"),
        )
    }

    async fn record(&self) -> Result<FailoverRecord> {
        self.ledger()
            .get_as(&self.name())
            .await?
            .context("no failover record")
    }

    async fn role(&self, instance: &str) -> Result<Option<RoleRecord>> {
        Ok(self
            .ledger()
            .get_as(&RoleRecord::key(HOME_ACCOUNT, REGION, instance))
            .await?)
    }

    async fn executions(&self) -> Result<usize> {
        Ok(self
            .saga
            .sfn
            .list_executions()
            .state_machine_arn(&self.saga.machine)
            .send()
            .await?
            .executions()
            .len())
    }

    /// The replacement's id and tags, from the launch step's output.
    fn replacement(e: &Execution) -> Option<Value> {
        e.exited
            .get("Launch")
            .map(|s| s["launch"]["replacement"].clone())
    }

    /// The clone's volumes: kept past its termination and tagged with where they came from.
    async fn assert_data_kept(&self) -> Result<()> {
        let ec2 = self.saga.bed.ec2();
        let described = ec2
            .describe_instances()
            .instance_ids(&self.clone)
            .send()
            .await?;
        // A terminated instance no longer lists its volumes; a running one says they stay.
        for m in described.reservations()[0].instances()[0].block_device_mappings() {
            assert_eq!(
                m.ebs().unwrap().delete_on_termination(),
                Some(false),
                "{m:?}"
            );
        }
        let kept = ec2
            .describe_volumes()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{PRESERVED_TAG}"))
                    .values(&self.clone)
                    .build(),
            )
            .send()
            .await?;
        assert!(
            !kept.volumes().is_empty(),
            "the clone's volumes are kept and tagged"
        );
        Ok(())
    }

    /// `spotctl` with the bed's operator credentials; its standard output, or an error.
    fn spotctl(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(testbed::bed::bin_path("spotctl"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.saga.bed.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("LEDGER_TABLE", self.saga.tables.name("LedgerTable"))
            .output()?;
        anyhow::ensure!(out.status.success(), "spotctl {args:?}: {out:?}");
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Launched by this failover and not terminated.
    async fn launched(&self) -> Result<Vec<String>> {
        let answer = self
            .saga
            .bed
            .ec2()
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{FAILOVER_TAG}"))
                    .values(self.name())
                    .build(),
            )
            .send()
            .await?;
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_for_a_switch_clone_gets_a_healthy_replacement_with_its_address_and_its_data()
-> Result<()> {
    let mut f = Failover::start("fo-warning").await?;
    let notices = f.saga.notices().await?;
    let sent = Instant::now();
    let answer = f.signal(WARNING).await?;
    assert_eq!(answer["action"], "quarantined", "{answer}");
    assert_eq!(answer["failover"]["started"], true, "{answer}");
    assert_eq!(answer["failover"]["workload"], f.origin.as_str());

    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(e.path.last().map(String::as_str), Some("FailedOver"));
    let replacement = Failover::replacement(&e).context("no replacement")?;
    let new = replacement["instance_id"].as_str().unwrap().to_owned();
    assert_ne!(new, f.clone);
    assert_eq!(replacement["market"], "spot");
    let pool = replacement["pool"].as_str().unwrap();
    assert_ne!(pool, SIGNALLED, "never the signalled pool");
    assert!(
        pool.starts_with("us-east-1#use1-az1#"),
        "the same AZ first: {pool}"
    );
    let ec2 = f.saga.bed.ec2();
    assert_eq!(state(&ec2, &new).await?, InstanceStateName::Running);
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(new.as_str())
    );
    f.assert_data_kept().await?;
    let told = notices
        .wait_for(&format!("Spot failover of {}", f.clone))
        .await?;
    assert_eq!(told["MessageAttributes"]["event"]["Value"], "finished");
    assert!(
        told["Message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("{new} (")) && m.contains("replaces")),
        "{told}"
    );

    let tags = ec2
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(&new)
                .build(),
        )
        .send()
        .await?;
    let tag = |k: &str| {
        tags.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag(ORIGIN_TAG), Some(f.origin.clone()));
    assert_eq!(tag("Team").as_deref(), Some("core"), "inherited tags");
    assert_eq!(tag("CreatedVia").as_deref(), Some("EmergencyFailover"));

    let record = f.record().await?;
    assert_eq!(record.status, FailoverStatus::Promoted);
    assert_eq!(record.new_instance_id.as_deref(), Some(new.as_str()));
    assert_eq!(record.market, Some(Market::Spot));
    assert!(record.fallbacks.is_empty());
    assert_eq!(f.role(&new).await?.map(|r| r.role), Some(Role::Primary));
    let zombie = f.role(&f.clone).await?.context("no zombie role")?;
    assert_eq!(zombie.role, Role::Zombie);
    assert!(zombie.ttl.is_some());
    assert_eq!(
        f.launched().await?,
        vec![new.clone()],
        "nothing else launched"
    );
    assert_eq!(state(&ec2, &f.origin).await?, InstanceStateName::Stopped);

    // AWS takes the clone two minutes later: its volumes stay.
    ec2.terminate_instances()
        .instance_ids(&f.clone)
        .send()
        .await?;
    let kept = ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{PRESERVED_TAG}"))
                .values(&f.clone)
                .build(),
        )
        .send()
        .await?;
    assert!(!kept.volumes().is_empty(), "the data outlives the instance");
    // The figure the issue asks for: the handler's receipt to the first launch call.
    let first_launch = f
        .saga
        .proxy
        .forwarder
        .calls()
        .iter()
        .filter(|c| c.operation == "RunInstances")
        .filter_map(|c| c.sent)
        .min()
        .context("no RunInstances seen")?;
    for c in f.saga.proxy.forwarder.calls() {
        if let Some(t) = c.sent.filter(|t| *t <= first_launch && *t >= sent) {
            eprintln!(
                "  +{:>6.0?} {} {} ({:?})",
                t.saturating_duration_since(sent),
                c.service,
                c.operation,
                c.upstream
            );
        }
    }
    // Where the time went: the emulator answering, and moto's Step Functions getting from the
    // handler's StartExecution to the first step's first call (on AWS, tens of milliseconds).
    let calls = f.saga.proxy.forwarder.calls();
    let before: Vec<_> = calls
        .iter()
        .filter(|c| c.sent.is_some_and(|t| t >= sent && t < first_launch))
        .cloned()
        .collect();
    let started = before
        .iter()
        .find(|c| c.operation == "StartExecution")
        .and_then(|c| Some(c.sent? + c.upstream));
    // Each step's first call checks its execution: the launch step's is the first such call.
    let first_step = before
        .iter()
        .find(|c| c.operation == "DescribeExecution")
        .and_then(|c| c.sent);
    let dispatch = started
        .zip(first_step)
        .map(|(end, step)| step.saturating_duration_since(end));
    // Ours: the time neither the emulator nor the dispatch covered.
    let mut spans: Vec<_> = before
        .iter()
        .filter_map(|c| c.sent.map(|t| (t, t + c.upstream)))
        .chain(started.zip(first_step))
        .collect();
    spans.sort();
    let mut covered = Duration::ZERO;
    let mut reach = sent;
    for (start, end) in spans {
        covered += end.saturating_duration_since(start.max(reach));
        reach = reach.max(end);
    }
    let total = first_launch.saturating_duration_since(sent);
    eprintln!(
        "failover: warning -> first RunInstances {total:?} (emulator answering {:?}, Step Functions dispatch {:?}, neither {:?}), -> promoted {:?} (bed waits of 1 s), {} Lambda invocations",
        testbed::proxy::busy(&before),
        dispatch.unwrap_or_default(),
        total.saturating_sub(covered),
        sent.elapsed(),
        e.invocations
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spot_capacity_falls_back_to_on_demand_and_then_to_the_original() -> Result<()> {
    // Spot refused everywhere: an on-demand replacement.
    let mut f = Failover::start("fo-ondemand").await?;
    f.saga.proxy.forwarder.inject(
        Fault::new("RunInstances", "InsufficientInstanceCapacity", 500)
            .when_body_contains("InstanceMarketOptions.MarketType=spot"),
    );
    f.signal(WARNING).await?;
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    let record = f.record().await?;
    assert_eq!(record.market, Some(Market::OnDemand));
    assert_eq!(record.fallbacks.len(), 1);
    assert!(
        record.fallbacks[0]
            .why
            .contains("InsufficientInstanceCapacity"),
        "{record:?}"
    );
    let new = record.new_instance_id.clone().unwrap();
    let described = f
        .saga
        .bed
        .ec2()
        .describe_instances()
        .instance_ids(&new)
        .send()
        .await?;
    assert_eq!(
        described.reservations()[0].instances()[0].instance_lifecycle(),
        None,
        "on-demand"
    );

    // On-demand refused too: the switch's original is started again, even when its first start
    // is throttled past the SDK's retries (the step is retried after marking it).
    let mut f = Failover::start("fo-origin").await?;
    f.saga.proxy.forwarder.inject(Fault::new(
        "RunInstances",
        "InsufficientInstanceCapacity",
        500,
    ));
    f.saga
        .proxy
        .forwarder
        .inject(Fault::new("StartInstances", "RequestLimitExceeded", 503).times(3));
    f.signal(WARNING).await?;
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    let record = f.record().await?;
    assert_eq!(record.market, Some(Market::Origin));
    assert_eq!(record.new_instance_id.as_deref(), Some(f.origin.as_str()));
    let runs = f.saga.deliveries().await?["failover-launch"];
    assert!(
        runs >= 2,
        "the throttled start failed the first attempt: {runs}"
    );
    // The retried attempt still records every fallback's reason.
    let to: Vec<Market> = record.fallbacks.iter().map(|b| b.to).collect();
    assert_eq!(to, [Market::OnDemand, Market::Origin], "{record:?}");
    let ec2 = f.saga.bed.ec2();
    assert_eq!(state(&ec2, &f.origin).await?, InstanceStateName::Running);
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(f.origin.as_str())
    );
    assert_eq!(
        f.role(&f.origin).await?.map(|r| r.role),
        Some(Role::Primary)
    );
    assert!(
        f.launched().await?.iter().all(|i| i == &f.origin),
        "no orphan"
    );
    f.assert_data_kept().await?;

    // What an operator sees: the failover, the fallback taken and why, the roles, the volumes.
    let list = f.spotctl(&["failovers", "list"])?;
    let row = format!("{} → {}", f.clone, f.origin);
    assert!(list.contains(&row), "{list}");
    assert!(list.contains("origin: "), "{list}");
    assert!(list.contains("promoted"), "{list}");
    let json: Value = serde_json::from_str(
        f.spotctl(&["failovers", "list", "--json", "--workload", &f.origin])?
            .trim(),
    )?;
    assert_eq!(json["market"], "origin", "{json}");
    assert!(json["seconds_to_healthy"].as_i64().is_some(), "{json}");
    let roles = f.spotctl(&["failovers", "roles", &f.origin])?;
    let primary = roles.lines().position(|l| l.contains("PRIMARY"));
    let zombie = roles.lines().position(|l| l.contains("ZOMBIE"));
    assert!(primary.is_some() && primary < zombie, "{roles}");
    assert!(roles.contains(&f.clone), "{roles}");
    let volumes = f.spotctl(&["failovers", "volumes"])?;
    assert!(volumes.contains(&f.clone), "kept from the clone: {volumes}");
    eprintln!("{list}\n{roles}\n{volumes}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_then_the_warning_and_its_redelivery_make_one_failover() -> Result<()> {
    let mut f = Failover::start("fo-once").await?;
    let first = f.signal(REBALANCE).await?;
    assert_eq!(first["failover"]["started"], true, "{first}");
    let warning = event(WARNING, &f.clone)?;
    for _ in 0..2 {
        let again = f.handler.invoke(warning.json()).await?.ok()?;
        assert_eq!(again["failover"]["started"], false, "{again}");
    }
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(f.executions().await?, 1);
    let record = f.record().await?;
    assert_eq!(record.signal, "EC2 Instance Rebalance Recommendation");
    // Retired only once its replacement served.
    let ec2 = f.saga.bed.ec2();
    assert!(matches!(
        state(&ec2, &f.clone).await?,
        InstanceStateName::Terminated | InstanceStateName::ShuttingDown
    ));
    assert_eq!(
        e.exited["Promote"]["promote"]["retired_old"],
        true,
        "{:?}",
        e.exited.get("Promote")
    );
    let new = record.new_instance_id.unwrap();
    assert_eq!(state(&ec2, &new).await?, InstanceStateName::Running);
    f.assert_data_kept().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmanaged_instance_is_only_quarantined_and_a_lab_workload_is_replaced_unquarantined()
-> Result<()> {
    let mut f = Failover::start("fo-scope").await?;
    let plain = Launch::new("m5.large")
        .in_az("us-east-1b")
        .spot()
        .run(&f.saga.bed.ec2())
        .await?;
    let answer = f
        .handler
        .invoke(event(WARNING, &plain)?.json())
        .await?
        .ok()?;
    assert_eq!(answer["action"], "quarantined");
    assert!(answer.get("failover").is_none(), "{answer}");
    assert_eq!(f.executions().await?, 0);

    // The same workload in a LAB account: replaced, its pool left open.
    spot_aws::AccountsTable::new(f.saga.bed.dynamodb(), f.saga.tables.name("AccountsTable"))
        .put(&Account {
            account_id: HOME_ACCOUNT.into(),
            environment: Environment::Lab,
            role_arn: None,
            external_id: None,
            regions: Vec::new(),
        })
        .await?;
    f.saga
        .bed
        .dynamodb()
        .delete_item()
        .table_name(f.saga.tables.name("QuarantineTable"))
        .key(
            "pool",
            aws_sdk_dynamodb::types::AttributeValue::S(SIGNALLED.into()),
        )
        .send()
        .await?;
    // A new handler: the first one cached the account as PROD.
    f.handler = f.saga.interruption_handler(None).await?;
    let answer = f.signal(WARNING).await?;
    assert_eq!(answer["action"], "ignored_lab", "{answer}");
    assert_eq!(answer["failover"]["started"], true, "{answer}");
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(f.record().await?.status, FailoverStatus::Promoted);
    let open = f.saga.quarantine_table().get(&SIGNALLED.parse()?).await?;
    assert!(open.is_none(), "a LAB signal never quarantines: {open:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_interrupted_twice_in_a_week_is_replaced_on_demand_and_held() -> Result<()> {
    let mut f = Failover::start("fo-hysteresis").await?;
    f.signal(WARNING).await?;
    let first = f.finished().await?;
    assert_eq!(first.status, ExecutionStatus::Succeeded, "{first:?}");
    let spot = f
        .record()
        .await?
        .new_instance_id
        .context("no replacement")?;
    assert_eq!(f.record().await?.market, Some(Market::Spot));

    // Its Spot replacement is warned too: the second interruption of the workload in a week.
    let answer = f
        .handler
        .invoke(event(WARNING, &spot)?.json())
        .await?
        .ok()?;
    assert_eq!(
        answer["failover"]["workload"],
        f.origin.as_str(),
        "{answer}"
    );
    let second = f.finished_for(&spot).await?;
    assert_eq!(second.status, ExecutionStatus::Succeeded, "{second:?}");
    let record: FailoverRecord = f
        .ledger()
        .get_as(&execution_name(HOME_ACCOUNT, &spot))
        .await?
        .context("no record of the second failover")?;
    assert_eq!(record.market, Some(Market::OnDemand), "{record:?}");
    assert_eq!(record.fallbacks.len(), 1, "{record:?}");
    assert!(
        record.fallbacks[0]
            .why
            .contains("interrupted 2 times in 7 days"),
        "{record:?}"
    );
    let until = record.on_demand_until.context("no hold recorded")?;
    let days = (until - record.received_at).num_days();
    assert_eq!(days, 7, "held for the default week");

    // The replacement says so on itself, for the router (which leaves it on-demand until then).
    let new = record.new_instance_id.clone().unwrap();
    let ec2 = f.saga.bed.ec2();
    let described = ec2.describe_instances().instance_ids(&new).send().await?;
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(instance.instance_lifecycle(), None, "on-demand");
    let held = instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(ON_DEMAND_UNTIL_TAG))
        .and_then(|t| t.value())
        .context("no hold tag")?;
    assert_eq!(held.parse::<chrono::DateTime<chrono::Utc>>()?, until);
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(new.as_str())
    );
    assert_eq!(f.role(&new).await?.map(|r| r.role), Some(Role::Primary));
    assert_eq!(f.role(&spot).await?.map(|r| r.role), Some(Role::Zombie));

    // The history counts each failover once and keeps the hold.
    let history: WorkloadHistory = f
        .ledger()
        .get_as(&WorkloadHistory::key(HOME_ACCOUNT, REGION, &f.origin))
        .await?
        .context("no workload history")?;
    assert_eq!(history.failovers.len(), 2, "{history:?}");
    assert_eq!(history.on_demand_until, Some(until));
    Ok(())
}

/// What every failover must leave, whatever failed: at most one replacement of this failover
/// running (no orphan), the interrupted instance's volumes kept, the switch's original untouched
/// unless the fallback started it, and the ledger naming the outcome.
async fn assert_invariants(f: &Failover, e: &Execution) -> Result<FailoverRecord> {
    let launched = f.launched().await?;
    assert!(launched.len() <= 1, "at most one replacement: {launched:?}");
    f.assert_data_kept().await?;
    let record = f.record().await?;
    match e.status {
        ExecutionStatus::Succeeded => {
            assert_eq!(record.status, FailoverStatus::Promoted, "{record:?}");
            let new = record.new_instance_id.clone().context("promoted nothing")?;
            assert_eq!(
                launched,
                std::slice::from_ref(&new),
                "the promoted one is the only one"
            );
            let ec2 = f.saga.bed.ec2();
            assert_eq!(state(&ec2, &new).await?, InstanceStateName::Running);
            assert_eq!(
                address_holder(&ec2, &f.allocation).await?.as_deref(),
                Some(new.as_str())
            );
            assert_eq!(f.role(&new).await?.map(|r| r.role), Some(Role::Primary));
        }
        _ => {
            assert_eq!(record.status, FailoverStatus::Failed, "{record:?}");
            assert_eq!(
                e.error.as_deref(),
                record.error.map(|n| n.as_str()),
                "the execution and the ledger name the same failure"
            );
        }
    }
    Ok(record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_throttled_twice_still_fails_over_once() -> Result<()> {
    let mut f = Failover::start("fo-throttle").await?;
    for (operation, code, status) in testbed::saga::throttles(testbed::saga::FAILOVER_OPERATIONS) {
        f.saga
            .proxy
            .forwarder
            .inject(Fault::new(operation, code, status).times(2));
    }

    let answer = f.signal(WARNING).await?;

    assert_eq!(answer["failover"]["started"], true, "{answer}");
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_invariants(&f, &e).await?;
    let throttled = testbed::saga::throttled(&f.saga.proxy.forwarder.calls());
    assert!(
        throttled.len() >= 15 && throttled.values().all(|n| (1..=2).contains(n)),
        "{throttled:?}"
    );
    assert_eq!(f.executions().await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_killed_right_after_its_aws_call_is_run_again_and_fails_over_once() -> Result<()> {
    // The process dies after its call reached AWS and before it answered: Step Functions gets
    // Runtime.ExitError and runs the step again, which must find its own work done.
    for (operation, binary) in [
        ("RunInstances", "failover-launch"),
        ("ModifyInstanceAttribute", "failover-preserve"),
        ("DescribeInstanceStatus", "failover-health"),
        ("AssociateAddress", "failover-promote"),
    ] {
        let mut f = Failover::start(&format!("fo-kill-{operation}")).await?;
        f.saga.kill_after(operation, binary);

        f.signal(WARNING).await?;

        let e = f.finished().await?;
        assert_eq!(e.status, ExecutionStatus::Succeeded, "{binary}: {e:?}");
        let runs = f.saga.deliveries().await?.get(binary).copied().unwrap_or(0);
        assert!(runs >= 2, "{binary} was killed and run again ({runs} runs)");
        assert_invariants(&f, &e).await?;
        assert_eq!(
            f.saga.proxy.forwarder.count("RunInstances"),
            1,
            "{binary}: launched once"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_step_is_named_and_the_invariants_hold() -> Result<()> {
    let cases: Vec<(&str, Vec<Fault>, ErrorName, usize)> = vec![
        (
            "launch",
            vec![
                Fault::new("RunInstances", "InsufficientInstanceCapacity", 500),
                Fault::new("StartInstances", "UnauthorizedOperation", 403),
            ],
            // What stopped the last fallback; the cause has every fallback's reason.
            ErrorName::AccessDenied,
            0,
        ),
        (
            "preserve",
            vec![Fault::new("ModifyInstanceAttribute", "UnauthorizedOperation", 403).times(1)],
            ErrorName::AccessDenied,
            1,
        ),
        (
            "health",
            vec![testbed::saga::impaired_status()],
            ErrorName::HealthCheckFailed,
            1,
        ),
        (
            "promote",
            vec![Fault::new("AssociateAddress", "InvalidParameterValue", 400).times(1)],
            ErrorName::AwsError,
            1,
        ),
    ];
    for (step, faults, expected, replacements) in cases {
        let mut f = Failover::start(&format!("fo-fail-{step}")).await?;
        for fault in faults {
            f.saga.proxy.forwarder.inject(fault);
        }

        f.signal(WARNING).await?;

        let e = f.finished().await?;
        assert_eq!(e.status, ExecutionStatus::Failed, "{step}: {e:?}");
        assert_eq!(e.error.as_deref(), Some(expected.as_str()), "{step}: {e:?}");
        let record = assert_invariants(&f, &e).await?;
        if step == "launch" {
            let cause = record.cause.as_deref().unwrap_or_default();
            assert!(
                cause.contains("no Spot pool launched it")
                    && cause.contains("no on-demand launch succeeded")
                    && cause.contains("starting its original"),
                "every fallback's reason: {cause}"
            );
        }
        // After a warning the interrupted instance is going: a replacement that was launched is
        // kept running as the workload's best chance, and the cause says so.
        // The original may carry the mark of a start that failed; it is no replacement.
        let launched: Vec<String> = f
            .launched()
            .await?
            .into_iter()
            .filter(|i| *i != f.origin)
            .collect();
        assert_eq!(launched.len(), replacements, "{step}: {launched:?}");
        if let Some(kept) = launched.first() {
            assert_eq!(
                state(&f.saga.bed.ec2(), kept).await?,
                InstanceStateName::Running,
                "{step}"
            );
            assert!(
                record
                    .cause
                    .as_deref()
                    .unwrap_or_default()
                    .contains("is kept"),
                "{step}: {record:?}"
            );
        }
        assert_eq!(
            state(&f.saga.bed.ec2(), &f.origin).await?,
            InstanceStateName::Stopped,
            "{step}: the original is started only as a fallback"
        );
    }
    Ok(())
}

/// How many of `group`'s members serve: in service in the group and running in EC2 (moto keeps a
/// terminated member listed, as AWS does until its health check notices).
async fn serving(
    autoscaling: &aws_sdk_autoscaling::Client,
    ec2: &aws_sdk_ec2::Client,
    group: &str,
) -> Result<(usize, Vec<String>)> {
    let members = testbed::swap::snapshot(autoscaling, group).await?.members;
    let mut running = 0;
    for id in &members {
        if state(ec2, id).await? == InstanceStateName::Running {
            running += 1;
        }
    }
    Ok((running, members))
}

/// A full group (desired = max = 2), one of whose members the swap replaced with Spot, and the
/// handler wired to the failover machine.
struct MemberBed {
    saga: SagaBed,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    group: String,
    /// The swap's Spot member, which the warning names.
    spot: String,
    /// The group's other, on-demand member.
    kept: String,
    handler: LambdaHost,
}

impl MemberBed {
    async fn start(label: &str) -> Result<Self> {
        let saga = SagaBed::start_machine(EMERGENCY_FAILOVER, label, FAILOVER_LIVE, None).await?;
        let ec2 = saga.bed.ec2();
        let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
        let group = saga.name("grp");
        testbed::swap::GroupSpec::new(&group)
            .size(2, 2)
            .create(&saga.bed)
            .await?;
        let members = testbed::swap::snapshot(&autoscaling, &group).await?.members;
        let spot = Launch::new("m5.large")
            .in_az("us-east-1b")
            .spot()
            .tag("Team", "web")
            .tag("ManagedBy", "SpotOptimizer")
            .tag("CreatedVia", "AsgSwap")
            .tag("SourceInstance", &members[0])
            .tag("spot-optimizer:swap", "swap-1")
            .run(&ec2)
            .await?;
        autoscaling
            .detach_instances()
            .auto_scaling_group_name(&group)
            .instance_ids(&members[0])
            .should_decrement_desired_capacity(true)
            .send()
            .await?;
        autoscaling
            .attach_instances()
            .auto_scaling_group_name(&group)
            .instance_ids(&spot)
            .send()
            .await?;
        ec2.terminate_instances()
            .instance_ids(&members[0])
            .send()
            .await?;
        let handler = saga.interruption_handler(None).await?;
        Ok(Self {
            kept: members[1].clone(),
            saga,
            ec2,
            autoscaling,
            group,
            spot,
            handler,
        })
    }

    async fn warn(&mut self) -> Result<Value> {
        self.handler
            .invoke(event(WARNING, &self.spot)?.json())
            .await?
            .ok()
    }

    async fn finished(&self) -> Result<Execution> {
        let arn = format!(
            "{}:{}",
            self.saga
                .machine
                .replacen(":stateMachine:", ":execution:", 1),
            execution_name(HOME_ACCOUNT, &self.spot)
        );
        self.saga.wait(&arn, Duration::from_secs(120)).await
    }

    async fn record(&self) -> Result<FailoverRecord> {
        LedgerTable::new(
            self.saga.bed.dynamodb(),
            self.saga.tables.name("LedgerTable"),
        )
        .get_as(&execution_name(HOME_ACCOUNT, &self.spot))
        .await?
        .context("no failover record")
    }

    /// Every instance this failover launched, terminated or not.
    async fn launched(&self) -> Result<Vec<(String, InstanceStateName)>> {
        let launched = self
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{FAILOVER_TAG}"))
                    .values(execution_name(HOME_ACCOUNT, &self.spot))
                    .build(),
            )
            .send()
            .await?;
        Ok(launched
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| Some((i.instance_id()?.to_owned(), i.state()?.name()?.clone())))
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_for_a_swapped_group_member_keeps_the_groups_capacity() -> Result<()> {
    let mut m = MemberBed::start("fo-member").await?;
    let (start, _) = serving(&m.autoscaling, &m.ec2, &m.group).await?;
    assert_eq!(start, 2);

    // The group's serving count, sampled until the bed has taken the interrupted member (its
    // two minutes shortened to 15 seconds).
    let sampling = {
        let (autoscaling, ec2, group, spot) = (
            m.autoscaling.clone(),
            m.ec2.clone(),
            m.group.clone(),
            m.spot.clone(),
        );
        tokio::spawn(async move {
            let taken_at = Instant::now() + Duration::from_secs(15);
            let mut samples = Vec::new();
            let detached_before_taken = loop {
                let (n, members) = serving(&autoscaling, &ec2, &group).await?;
                samples.push(n);
                if Instant::now() >= taken_at {
                    ec2.terminate_instances().instance_ids(&spot).send().await?;
                    break !members.contains(&spot);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            samples.push(serving(&autoscaling, &ec2, &group).await?.0);
            anyhow::Ok((samples, detached_before_taken))
        })
    };
    let answer = m.warn().await?;
    assert_eq!(answer["failover"]["workload"], m.group.as_str(), "{answer}");
    let e = m.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    let (samples, detached_before_taken) = sampling.await??;
    eprintln!(
        "member failover: serving min {:?} max {:?} over {} samples (start {start}), {} Lambda \
         invocations, {:?}",
        samples.iter().min(),
        samples.iter().max(),
        samples.len(),
        e.invocations,
        e.wall
    );

    assert!(
        samples.iter().all(|n| *n >= start),
        "serving never below {start}: {samples:?}"
    );
    // N -> N+1, then N+1 -> N: the attach reached Auto Scaling before the detach (the N+1
    // moment lasts milliseconds, too short for the sampler to see every time).
    let sent = |operation: &str| {
        m.saga
            .proxy
            .forwarder
            .calls()
            .iter()
            .find(|c| c.operation == operation)
            .and_then(|c| c.sent)
    };
    let (attached, detached) = (sent("AttachInstances"), sent("DetachInstances"));
    assert!(
        attached.is_some() && detached.is_some() && attached < detached,
        "attach {attached:?} before detach {detached:?}"
    );
    assert!(detached_before_taken, "detached before AWS took it");
    let record = m.record().await?;
    assert_eq!(record.status, FailoverStatus::Promoted, "{record:?}");
    assert_eq!(record.workload.as_deref(), Some(m.group.as_str()));
    let new = record.new_instance_id.clone().context("no replacement")?;
    let after = testbed::swap::snapshot(&m.autoscaling, &m.group).await?;
    let mut now_members = after.members.clone();
    now_members.sort();
    let mut expected = vec![m.kept.clone(), new.clone()];
    expected.sort();
    assert_eq!(now_members, expected, "the replacement in, the member out");
    assert_eq!(
        (after.desired, after.max),
        (2, 2),
        "N+1 -> N, the maximum back"
    );
    let tags = saga_tags(&m.ec2, &new).await?;
    assert_eq!(
        tags.get("CreatedVia").map(String::as_str),
        Some("EmergencyFailover")
    );
    assert_eq!(tags.get("Team").map(String::as_str), Some("web"));
    assert!(
        !tags.contains_key(ORIGIN_TAG),
        "a member has no original: {tags:?}"
    );
    let described = m.ec2.describe_instances().instance_ids(&new).send().await?;
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(
        instance.instance_lifecycle().map(|l| l.as_str()),
        Some("spot"),
        "from the group's template, on Spot"
    );
    assert_ne!(
        instance.instance_type().map(|t| t.as_str()),
        Some("m5.large"),
        "never the signalled pool"
    );
    // No orphan: the only instance this failover launched is the one in the group.
    let launched: Vec<String> = m.launched().await?.into_iter().map(|(id, _)| id).collect();
    assert_eq!(launched, [new]);
    let kept = m
        .ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{PRESERVED_TAG}"))
                .values(&m.spot)
                .build(),
        )
        .send()
        .await?;
    assert!(!kept.volumes().is_empty(), "the member's volumes are kept");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_the_group_refuses_is_terminated_and_the_group_left_as_it_was() -> Result<()>
{
    let mut m = MemberBed::start("fo-member-refused").await?;
    let before = testbed::swap::snapshot(&m.autoscaling, &m.group).await?;
    m.saga
        .proxy
        .forwarder
        .inject(Fault::new("AttachInstances", "AccessDenied", 403));

    m.warn().await?;

    let e = m.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Failed, "{e:?}");
    assert_eq!(e.error.as_deref(), Some(ErrorName::AccessDenied.as_str()));
    let record = m.record().await?;
    assert_eq!(record.status, FailoverStatus::Failed);
    let cause = record.cause.unwrap_or_default();
    assert!(cause.contains("never joined group"), "{cause}");
    assert!(cause.contains("maximum put back to 2"), "{cause}");
    // The group as it was (its Spot member goes with its two minutes; the group replaces it),
    // and the replacement that could not join is gone: no orphan.
    let after = testbed::swap::snapshot(&m.autoscaling, &m.group).await?;
    assert_eq!(
        (after.members, after.desired, after.max),
        (before.members, before.desired, before.max)
    );
    let launched = m.launched().await?;
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert!(
        matches!(
            launched[0].1,
            InstanceStateName::ShuttingDown | InstanceStateName::Terminated
        ),
        "{launched:?}"
    );
    Ok(())
}

async fn saga_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let described = ec2.describe_instances().instance_ids(id).send().await?;
    Ok(described.reservations()[0].instances()[0]
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect())
}

/// The opt-in of a standby-replica workload.
const REPLICA: (&str, &str) = (REPLICA_TAG, "standby");

impl Failover {
    /// Every role the ledger holds for this workload, checked against the rules (exactly one
    /// PRIMARY, at most one REPLICA, one role per instance).
    async fn roles(&self) -> Result<Vec<RoleRecord>> {
        let mut roles: Vec<RoleRecord> = self.ledger().with_prefix("role#").await?;
        roles.retain(|r| r.workload == self.origin);
        let wrong = role_violations(&roles);
        anyhow::ensure!(wrong.is_empty(), "{wrong:?} in {roles:#?}");
        Ok(roles)
    }

    /// The workload's instances that are not terminated (nor going), and their tags.
    async fn alive(&self) -> Result<Vec<(String, std::collections::BTreeMap<String, String>)>> {
        let ec2 = self.saga.bed.ec2();
        let answer = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await?;
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                let tags: std::collections::BTreeMap<String, String> = i
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                    .collect();
                let id = i.instance_id()?.to_owned();
                let ours = id == self.clone
                    || tags.get(ORIGIN_TAG).map(String::as_str) == Some(self.origin.as_str());
                ours.then_some((id, tags))
            })
            .collect())
    }

    /// Keeps the workload's standby as the router asks for it; the standby's id.
    async fn keep_standby(&self) -> Result<String> {
        let name = self.saga.name("standby");
        let arn = self
            .saga
            .start_execution(
                &name,
                &serde_json::json!({"account_id": HOME_ACCOUNT, "region": REGION,
                    "primary": self.clone}),
            )
            .await?;
        let e = self.saga.wait(&arn, Duration::from_secs(120)).await?;
        anyhow::ensure!(e.status == ExecutionStatus::Succeeded, "{e:?}");
        assert_eq!(
            e.path,
            [
                "Start",
                "Requested",
                "KeepRequested",
                "KeepStandby",
                "StandbyKept"
            ]
        );
        let kept = &e.exited["KeepStandby"]["standby"];
        assert_eq!(kept["launched"], true, "{kept}");
        Ok(kept["standby"].as_str().context("no standby")?.to_owned())
    }
}

/// The AZ id of an instance's pool (`region#az#type`) in a step's output.
fn az_of(pool: &Value) -> String {
    pool.as_str()
        .and_then(|p| p.split('#').nth(1))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_mode_promotes_the_warm_standby_in_seconds_then_keeps_a_new_one() -> Result<()> {
    let mut f = Failover::start_with("fo-replica", &[REPLICA]).await?;
    let ec2 = f.saga.bed.ec2();

    // The router keeps the replica workload's standby and never switches it.
    let mut spec = f.saga.tables.function_with(
        "optimizer",
        &f.saga.proxy.endpoint(),
        &[("EmergencyFailoverStateMachine", &f.saga.machine)],
    )?;
    spec.env.insert("MODE".into(), "live".into());
    spec.env.insert("LIVE_ACCOUNTS".into(), HOME_ACCOUNT.into());
    let mut router = LambdaHost::start(spec).await?;
    let report = router
        .invoke(&serde_json::json!({"instance_id": f.clone}))
        .await?
        .ok()?;
    let actions = report["targets"][0]["actions"].to_string();
    assert!(!actions.contains("start_switch"), "{report}");
    let outcome = report["targets"][0]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["action"] == "keep_standby" && a["resource_id"] == f.clone.as_str())
        .and_then(|a| a["outcome"].as_str())
        .with_context(|| format!("no keep_standby in {report}"))?
        .to_owned();
    let arn = outcome
        .strip_prefix("started ")
        .with_context(|| outcome.clone())?;
    let kept = f.saga.wait(arn, Duration::from_secs(120)).await?;
    assert_eq!(kept.status, ExecutionStatus::Succeeded, "{kept:?}");
    let first = &kept.exited["KeepStandby"]["standby"];
    let standby = first["standby"].as_str().context("no standby")?.to_owned();
    assert_ne!(
        az_of(&first["pool"]),
        "use1-az1",
        "another AZ than the primary's: {first}"
    );
    let tags = saga_tags(&ec2, &standby).await?;
    assert_eq!(tags[ROLE_TAG], "standby");
    assert_eq!(tags[REPLICA_TAG], "standby", "the opt-in goes on");
    assert_eq!(tags[ORIGIN_TAG], f.origin);
    assert_eq!(tags["Team"], "core", "the primary's own tags");
    assert_eq!(state(&ec2, &standby).await?, InstanceStateName::Running);
    let roles = f.roles().await?;
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert_eq!(f.role(&standby).await?.map(|r| r.role), Some(Role::Replica));
    assert_eq!(f.role(&f.clone).await?.map(|r| r.role), Some(Role::Primary));
    // Asked again within the hour: nothing new.
    let again = router
        .invoke(&serde_json::json!({"instance_id": f.clone}))
        .await?
        .ok()?;
    assert!(again.to_string().contains("already started"), "{again}");

    // The warning: the standby is promoted (no launch, no wait), then a new standby launched.
    let sent = chrono::Utc::now();
    let answer = f.signal(WARNING).await?;
    assert_eq!(answer["failover"]["started"], true, "{answer}");
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(
        e.path,
        [
            "Start",
            "Requested",
            "Launch",
            "StandbyTaken",
            "ShadowOrLive",
            "Preserve",
            "StandbyReady",
            "CheckHealth",
            "Healthy",
            "Promote",
            "ReplicaMode",
            "NewStandby",
            "KeepStandby",
            "StandbyKept"
        ]
    );
    let replacement = Failover::replacement(&e).context("no replacement")?;
    assert_eq!(replacement["market"], "standby");
    assert_eq!(replacement["instance_id"], standby.as_str());
    let promoted_at = e
        .timeline
        .iter()
        .find(|(state, _)| state == "Promote")
        .map(|(_, t)| *t)
        .context("never promoted")?;
    let promotion = promoted_at - sent;
    eprintln!(
        "replica mode: warning -> promoted {} ms (bed, debug binaries, IAM enforced), {} Lambda invocations",
        promotion.num_milliseconds(),
        e.invocations
    );
    assert!(
        promotion < chrono::TimeDelta::seconds(15),
        "a promotion is seconds: {promotion}"
    );
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(standby.as_str())
    );
    assert_eq!(saga_tags(&ec2, &standby).await?[ROLE_TAG], "primary");
    f.assert_data_kept().await?;
    let next = &e.exited["KeepStandby"]["standby"];
    let new_standby = next["standby"]
        .as_str()
        .context("no new standby")?
        .to_owned();
    assert_eq!(next["launched"], true, "{next}");
    assert!(![&standby, &f.clone].contains(&&new_standby));
    assert_ne!(az_of(&next["pool"]), az_of(&first["pool"]), "{next}");
    assert_ne!(next["pool"], SIGNALLED);

    let roles = f.roles().await?;
    let role_of = |id: &str| roles.iter().find(|r| r.instance_id == id).map(|r| r.role);
    assert_eq!(role_of(&standby), Some(Role::Primary));
    assert_eq!(role_of(&new_standby), Some(Role::Replica));
    assert_eq!(role_of(&f.clone), Some(Role::Zombie));
    let record = f.record().await?;
    assert_eq!(record.market, Some(Market::Standby));
    assert_eq!(record.status, FailoverStatus::Promoted);

    // AWS takes the old primary: the workload runs on exactly its primary and one standby.
    ec2.terminate_instances()
        .instance_ids(&f.clone)
        .send()
        .await?;
    let mut alive: Vec<String> = f.alive().await?.into_iter().map(|(id, _)| id).collect();
    alive.sort();
    let mut expected = vec![standby, new_standby];
    expected.sort();
    assert_eq!(alive, expected, "no orphan");
    assert_eq!(state(&ec2, &f.origin).await?, InstanceStateName::Stopped);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_taken_by_a_warning_is_replaced_and_the_primary_left_serving() -> Result<()> {
    let mut f = Failover::start_with("fo-standby-taken", &[REPLICA]).await?;
    let ec2 = f.saga.bed.ec2();
    let standby = f.keep_standby().await?;

    // The warning names the standby: the handler starts its failover like any managed one's.
    let answer = f
        .handler
        .invoke(event(WARNING, &standby)?.json())
        .await?
        .ok()?;
    assert_eq!(answer["failover"]["started"], true, "{answer}");
    let e = f.finished_for(&standby).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(
        e.path,
        [
            "Start",
            "Requested",
            "Launch",
            "StandbyTaken",
            "ReplaceStandby",
            "KeepStandby",
            "StandbyKept"
        ],
        "nothing promoted"
    );
    let kept = &e.exited["KeepStandby"]["standby"];
    let new_standby = kept["standby"].as_str().context("no standby")?.to_owned();
    assert_ne!(new_standby, standby);
    assert_eq!(kept["retired"], serde_json::json!([standby]), "{kept}");
    assert!(matches!(
        state(&ec2, &standby).await?,
        InstanceStateName::ShuttingDown | InstanceStateName::Terminated
    ));
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(f.clone.as_str()),
        "the primary serves on"
    );
    let roles = f.roles().await?;
    let role_of = |id: &str| roles.iter().find(|r| r.instance_id == id).map(|r| r.role);
    assert_eq!(role_of(&f.clone), Some(Role::Primary));
    assert_eq!(role_of(&new_standby), Some(Role::Replica));
    assert_eq!(role_of(&standby), Some(Role::Zombie));
    let alive: Vec<String> = f.alive().await?.into_iter().map(|(id, _)| id).collect();
    assert_eq!(alive.len(), 2, "{alive:?}");

    // Redelivered: the same execution, nothing new.
    let again = f
        .handler
        .invoke(event(WARNING, &standby)?.json())
        .await?
        .ok()?;
    assert_eq!(again["failover"]["started"], false, "{again}");
    // The router's request for the primary finds the standby it has: nothing launched.
    let name = f.saga.name("standby-again");
    let arn = f
        .saga
        .start_execution(
            &name,
            &serde_json::json!({"account_id": HOME_ACCOUNT, "region": REGION, "primary": f.clone}),
        )
        .await?;
    let e = f.saga.wait(&arn, Duration::from_secs(120)).await?;
    let kept = &e.exited["KeepStandby"]["standby"];
    assert_eq!(kept["launched"], false, "{kept}");
    assert_eq!(kept["standby"], new_standby.as_str());
    assert_eq!(f.alive().await?.len(), 2);
    f.roles().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_faults_leave_one_primary_and_at_most_one_standby() -> Result<()> {
    let mut f = Failover::start_with("fo-replica-faults", &[REPLICA]).await?;
    let ec2 = f.saga.bed.ec2();

    // The standby step dies right after its launch reached EC2: run again, it finds its standby
    // by its client token and launches nothing more.
    f.saga.kill_after("RunInstances", "failover-standby");
    let standby = f.keep_standby().await?;
    let runs = f.saga.deliveries().await?.get("failover-standby").copied();
    assert!(runs >= Some(2), "killed and run again: {runs:?}");
    assert_eq!(
        f.saga.proxy.forwarder.count("RunInstances"),
        1,
        "one standby"
    );
    assert_eq!(f.alive().await?.len(), 2);
    f.roles().await?;

    // No pool takes a new standby after the promotion: the promotion stands, the workload has a
    // primary and no standby, and the failure is named.
    f.saga.proxy.forwarder.inject(Fault::new(
        "RunInstances",
        "InsufficientInstanceCapacity",
        500,
    ));
    f.signal(WARNING).await?;
    let e = f.finished().await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(
        e.path.last().map(String::as_str),
        Some("FailedOverWithoutStandby")
    );
    let missed = &e.exited["StandbyMissed"]["standby_error"];
    assert_eq!(
        missed["Error"],
        ErrorName::InsufficientCapacity.as_str(),
        "{missed}"
    );
    assert_eq!(
        address_holder(&ec2, &f.allocation).await?.as_deref(),
        Some(standby.as_str())
    );
    let roles = f.roles().await?;
    assert!(!roles.iter().any(|r| r.role == Role::Replica), "{roles:?}");
    ec2.terminate_instances()
        .instance_ids(&f.clone)
        .send()
        .await?;
    let alive: Vec<String> = f.alive().await?.into_iter().map(|(id, _)| id).collect();
    assert_eq!(alive, vec![standby.clone()], "no orphan");

    // Capacity back: the router's next request gives the new primary its standby.
    f.saga.proxy.forwarder.clear_faults();
    let arn = f
        .saga
        .start_execution(
            &f.saga.name("standby-back"),
            &serde_json::json!({"account_id": HOME_ACCOUNT, "region": REGION, "primary": standby}),
        )
        .await?;
    let e = f.saga.wait(&arn, Duration::from_secs(120)).await?;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    assert_eq!(e.exited["KeepStandby"]["standby"]["launched"], true);
    let roles = f.roles().await?;
    assert_eq!(roles.iter().filter(|r| r.role == Role::Replica).count(), 1);
    assert_eq!(f.alive().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_account_launches_no_replacement_and_keeps_the_data() -> Result<()> {
    let mut f = Failover::start("fo-paused").await?;
    spot_aws::ControlTable::new(f.saga.bed.dynamodb(), f.saga.tables.name("ControlTable"))
        .pause(&spot_domain::guard::Pause {
            scope: spot_domain::guard::Scope::Account(HOME_ACCOUNT.into()),
            cause: spot_domain::guard::Cause::Operator,
            by: "ops".into(),
            reason: "incident 12".into(),
            at: chrono::Utc::now(),
            failures: Vec::new(),
        })
        .await?;

    f.signal(WARNING).await?;
    let e = f.finished().await?;

    assert_eq!(
        e.error.as_deref(),
        Some(ErrorName::Paused.as_str()),
        "{e:?}"
    );
    assert!(
        e.cause.as_deref().unwrap_or("").contains("incident 12"),
        "{e:?}"
    );
    assert!(
        f.launched().await?.is_empty(),
        "nothing launched while paused"
    );
    f.assert_data_kept().await?;
    let record = f.record().await?;
    assert_eq!(record.status, FailoverStatus::Failed);
    assert_eq!(record.error, Some(ErrorName::Paused));
    // A pause is nobody's failure: the breaker counted nothing.
    let control =
        spot_aws::ControlTable::new(f.saga.bed.dynamodb(), f.saga.tables.name("ControlTable"));
    assert!(control.failures(HOME_ACCOUNT).await?.is_empty());
    Ok(())
}
