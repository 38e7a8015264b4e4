//! The atomic-switch state machine in the bed: moto executes the ASL from `statemachines/`, and its
//! Lambda tasks run this test's copies of the eight step binaries (registered with the gateway
//! under unique names, configured from the template, calling AWS through this test's proxy).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_ec2::types::{DomainType, Filter, InstanceStateName};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use chrono::{DateTime, Utc};
use serde_json::Value;
use spot_aws::{LedgerTable, QuarantineTable};
use spot_domain::config::key;
use spot_domain::pool::quarantine::QuarantineStore;
use spot_domain::pool::quarantine::{Decision, QuarantinePolicy, decide};
use spot_domain::saga::ledger::LedgerRecord;
use spot_domain::{PoolKey, Signal, SignalKind};

use crate::bed::{Bed, HOME_ACCOUNT, REGION, Tables, bin_path};
use crate::proxy::{AwsProxy, Call, Fault};
use crate::template::Template;

pub const ATOMIC_SWITCH: &str = "AtomicSwitchStateMachine";

/// The sagas' live switch, open for the bed's home account (the template's default is shadow).
pub const LIVE_AT_HOME: [(&str, &str, &str); 4] = [
    ("switch-plan", "MODE", "live"),
    ("switch-plan", "LIVE_ACCOUNTS", HOME_ACCOUNT),
    ("swap-discover", "MODE", "live"),
    ("swap-discover", "LIVE_ACCOUNTS", HOME_ACCOUNT),
];
pub const ASG_SWAP: &str = "AsgSwapStateMachine";
pub const EMERGENCY_FAILOVER: &str = "EmergencyFailoverStateMachine";

/// A state machine that only waits: its running executions stand for a saga's in tests that run a
/// step on its own ([`SagaBed::held_step`]).
const HOLD: &str =
    r#"{"StartAt":"Hold","States":{"Hold":{"Type":"Wait","Seconds":1800,"End":true}}}"#;

fn hold_machine(tables: &Tables) -> String {
    format!("{}-hold", tables.stack)
}

async fn create_machine(sfn: &aws_sdk_sfn::Client, name: &str, definition: &str) -> Result<String> {
    Ok(sfn
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(format!("arn:aws:iam::{HOME_ACCOUNT}:role/bed-states"))
        .send()
        .await
        .with_context(|| format!("creating state machine {name}"))?
        .state_machine_arn()
        .to_owned())
}

/// What an execution did.
#[derive(Debug, Clone)]
pub struct Execution {
    pub arn: String,
    pub status: ExecutionStatus,
    pub output: Value,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The states entered, in order.
    pub path: Vec<String>,
    /// Lambda invocations (tasks scheduled).
    pub invocations: usize,
    /// Each state's output when it last exited (a failed execution has no `output`).
    pub exited: BTreeMap<String, Value>,
    /// Every state exit, in order, with its time.
    pub timeline: Vec<(String, chrono::DateTime<Utc>)>,
    pub wall: Duration,
    /// Events in the execution's history (Step Functions ends an execution at 25,000).
    pub events: usize,
    /// The largest state a state entered or left with, in bytes (Step Functions' limit is
    /// 256 KiB; over it the execution fails without reaching its rollback).
    pub largest_state: usize,
}

pub struct SagaBed {
    pub bed: Bed,
    pub tables: Tables,
    pub proxy: AwsProxy,
    pub sfn: aws_sdk_sfn::Client,
    pub machine: String,
    suffix: String,
}

impl SagaBed {
    /// Registers the step functions with `overrides` (binary, variable, value) on top of the
    /// template's environment, and creates the state machine.
    pub async fn start(label: &str, overrides: &[(&str, &str, &str)]) -> Result<Self> {
        Self::start_with_bins(label, overrides, None).await
    }

    /// As [`SagaBed::start`], running the step binaries found in `bin_dir` (cargo-lambda's
    /// `<function>/bootstrap` layout, or `<function>`) instead of the debug build.
    pub async fn start_with_bins(
        label: &str,
        overrides: &[(&str, &str, &str)],
        bin_dir: Option<&std::path::Path>,
    ) -> Result<Self> {
        Self::start_machine(ATOMIC_SWITCH, label, overrides, bin_dir).await
    }

    /// The ASG swap's state machine, with its step functions.
    pub async fn swap(label: &str, overrides: &[(&str, &str, &str)]) -> Result<Self> {
        Self::start_machine(ASG_SWAP, label, overrides, None).await
    }

    /// State machine `machine` (the template's logical id) with its step functions.
    pub async fn start_machine(
        machine: &str,
        label: &str,
        overrides: &[(&str, &str, &str)],
        bin_dir: Option<&std::path::Path>,
    ) -> Result<Self> {
        Self::start_delivered(machine, label, overrides, bin_dir, 1).await
    }

    /// As [`SagaBed::start_machine`], every step invocation delivered twice: each step runs again
    /// after it did its work, as at-least-once delivery may, and the saga gets the second answer.
    pub async fn delivering_twice(
        machine: &str,
        label: &str,
        overrides: &[(&str, &str, &str)],
    ) -> Result<Self> {
        Self::start_delivered(machine, label, overrides, None, 2).await
    }

    async fn start_delivered(
        machine: &str,
        label: &str,
        overrides: &[(&str, &str, &str)],
        bin_dir: Option<&std::path::Path>,
        deliveries: u32,
    ) -> Result<Self> {
        let bed = Bed::connect().await?;
        let tables = bed.create_tables(label).await?;
        let proxy = AwsProxy::start(&bed.endpoint).await?;
        let suffix = format!(
            "{:x}",
            chrono::Utc::now().timestamp_micros() % 0xff_ffff_ffff
        );
        let template = Template::load()?;
        let (uri, substitutions) = template.state_machine(machine)?;
        let mut definition =
            std::fs::read_to_string(&uri).with_context(|| format!("reading {}", uri.display()))?;
        for (placeholder, function) in &substitutions {
            let binary = template
                .function_binary(function)
                .with_context(|| format!("{function} has no binary"))?;
            let name = format!("{binary}-{suffix}");
            let mut spec = tables.function(&binary, &proxy.endpoint())?;
            if let Some(dir) = bin_dir {
                spec.binary = lambda_binary(dir, &binary);
            }
            // The bed's home account is on the sagas' live allowlist unless a test says otherwise.
            for (b, k, v) in LIVE_AT_HOME.iter().chain(overrides) {
                if *b == binary {
                    spec.env.insert((*k).to_owned(), (*v).to_owned());
                }
            }
            bed.register_delivered(&name, &spec, deliveries).await?;
            definition = definition.replace(
                &format!("${{{placeholder}}}"),
                &format!("arn:aws:lambda:{REGION}:{HOME_ACCOUNT}:function:{name}"),
            );
        }
        for (placeholder, value) in template.state_machine_values(machine, |name| {
            (name == "AWS::Partition").then(|| "aws".to_owned())
        })? {
            definition = definition.replace(&format!("${{{placeholder}}}"), &value);
        }
        let sfn = aws_sdk_sfn::Client::new(&bed.home);
        // Named as the template names it in this run's stack: the steps' `STATE_MACHINES`.
        let machine =
            create_machine(&sfn, &tables.state_machine_name(machine)?, &definition).await?;
        create_machine(&sfn, &hold_machine(&tables), HOLD).await?;
        Ok(Self {
            bed,
            tables,
            proxy,
            sfn,
            machine,
            suffix,
        })
    }

    /// Step `binary` started on its own (outside the state machine), acting for `execution`: a
    /// running execution of that name, of a state machine that only waits, stands for the saga
    /// (a step acts only for a running execution of the state machines it is configured with).
    pub async fn held_step(&self, binary: &str, execution: &str) -> Result<crate::LambdaHost> {
        let spec = self.held_spec(binary)?;
        self.hold(execution).await?;
        let mut host = crate::LambdaHost::start(spec).await?;
        host.wait_ready().await?;
        Ok(host)
    }

    /// How to start step `binary` acting for executions [`SagaBed::hold`] started.
    pub fn held_spec(&self, binary: &str) -> Result<crate::FunctionSpec> {
        let mut spec = self.tables.function(binary, &self.proxy.endpoint())?;
        spec.env
            .insert(key::STATE_MACHINES.into(), hold_machine(&self.tables));
        Ok(spec)
    }

    /// Starts a running execution named `execution` of the waiting state machine, for which a
    /// [`SagaBed::held_step`] acts.
    pub async fn hold(&self, execution: &str) -> Result<()> {
        let hold = hold_machine(&self.tables);
        self.sfn
            .start_execution()
            .state_machine_arn(format!(
                "arn:aws:states:{REGION}:{HOME_ACCOUNT}:stateMachine:{hold}"
            ))
            .name(execution)
            .input("{}")
            .send()
            .await
            .with_context(|| format!("holding execution {execution}"))?;
        Ok(())
    }

    /// Per step binary, how many times the gateway ran this saga's functions (every delivery).
    pub async fn deliveries(&self) -> Result<BTreeMap<String, u32>> {
        let tail = format!("-{}", self.suffix);
        Ok(self
            .bed
            .deliveries()
            .await?
            .into_iter()
            .filter_map(|(name, n)| name.strip_suffix(&tail).map(|b| (b.to_owned(), n)))
            .collect())
    }

    /// Kills step `binary`'s process right after its next `operation` call reached AWS.
    pub fn kill_after(&self, operation: &str, binary: &str) {
        let url = format!(
            "{}/__bed/functions/{binary}-{}/kill",
            self.bed.endpoint, self.suffix
        );
        self.proxy
            .forwarder
            .inject(crate::proxy::Fault::kill_after(operation, &url).times(1));
    }

    /// The interruption handler wired to this bed's machine as the failover it starts (the
    /// binary from `bin_dir`, else the debug build), ready for events.
    pub async fn interruption_handler(
        &self,
        bin_dir: Option<&std::path::Path>,
    ) -> Result<crate::LambdaHost> {
        let mut spec = self.tables.function_with(
            "interruption-handler",
            &self.proxy.endpoint(),
            &[("EmergencyFailoverStateMachine", &self.machine)],
        )?;
        if let Some(dir) = bin_dir {
            spec.binary = lambda_binary(dir, "interruption-handler");
        }
        let mut handler = crate::LambdaHost::start(spec).await?;
        handler.wait_ready().await?;
        Ok(handler)
    }

    /// A name no other test uses.
    pub fn name(&self, what: &str) -> String {
        format!("{what}-{}", self.suffix)
    }

    pub async fn start_execution(&self, name: &str, input: &Value) -> Result<String> {
        Ok(self
            .sfn
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await?
            .execution_arn()
            .to_owned())
    }

    /// Waits for the execution to end (at most `timeout`).
    /// Registers `accounts` as PROD members reached through the bed's member role, scanned in
    /// `regions`.
    pub async fn register_members(&self, accounts: &[String], regions: &[&str]) -> Result<()> {
        let registry =
            spot_aws::AccountsTable::new(self.bed.dynamodb(), self.tables.name("AccountsTable"));
        for account in accounts {
            registry
                .put(&spot_domain::Account {
                    account_id: account.clone(),
                    environment: spot_domain::Environment::Prod,
                    role_arn: Some(Bed::role_arn(account)),
                    external_id: Some("bed-external-id".into()),
                    regions: regions.iter().map(|r| (*r).to_owned()).collect(),
                })
                .await?;
        }
        Ok(())
    }

    /// Every event of execution `arn`'s history.
    pub async fn history(&self, arn: &str) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>> {
        Ok(self
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await?)
    }

    pub async fn wait(&self, arn: &str, timeout: Duration) -> Result<Execution> {
        let started = std::time::Instant::now();
        loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await?;
            if *d.status() != ExecutionStatus::Running {
                let history = self.history(arn).await?;
                let path = history
                    .iter()
                    .filter_map(|e| e.state_entered_event_details().map(|s| s.name().to_owned()))
                    .collect();
                let invocations = history
                    .iter()
                    .filter(|e| {
                        matches!(
                            e.r#type(),
                            HistoryEventType::LambdaFunctionScheduled
                                | HistoryEventType::TaskScheduled
                        )
                    })
                    .count();
                return Ok(Execution {
                    arn: arn.to_owned(),
                    status: d.status().clone(),
                    output: d
                        .output()
                        .map(serde_json::from_str)
                        .transpose()?
                        .unwrap_or(Value::Null),
                    error: d.error().map(str::to_owned),
                    cause: d.cause().map(str::to_owned),
                    path,
                    invocations,
                    exited: history
                        .iter()
                        .filter_map(|e| {
                            let d = e.state_exited_event_details()?;
                            Some((d.name().to_owned(), serde_json::from_str(d.output()?).ok()?))
                        })
                        .collect(),
                    timeline: history
                        .iter()
                        .filter_map(|e| {
                            let d = e.state_exited_event_details()?;
                            let at = e.timestamp();
                            Some((
                                d.name().to_owned(),
                                chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos())?,
                            ))
                        })
                        .collect(),
                    wall: started.elapsed(),
                    events: history.len(),
                    largest_state: history
                        .iter()
                        .filter_map(|e| {
                            let entered = e.state_entered_event_details().and_then(|d| d.input());
                            let exited = e.state_exited_event_details().and_then(|d| d.output());
                            entered.or(exited).map(str::len)
                        })
                        .max()
                        .unwrap_or(0),
                });
            }
            if started.elapsed() > timeout {
                bail!("execution {arn} still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn run(&self, name: &str, input: &Value) -> Result<Execution> {
        let arn = self.start_execution(name, input).await?;
        self.wait(&arn, Duration::from_secs(120)).await
    }

    /// The task token of the execution's pending approval, once it is waiting.
    pub async fn approval_token(&self, arn: &str) -> Result<String> {
        for _ in 0..300 {
            let history = self
                .sfn
                .get_execution_history()
                .execution_arn(arn)
                .send()
                .await?;
            for e in history.events() {
                if let Some(d) = e.task_scheduled_event_details()
                    && d.resource().contains("waitForTaskToken")
                {
                    let parameters: Value = serde_json::from_str(d.parameters())?;
                    if let Some(token) = parameters["Payload"]["token"].as_str() {
                        return Ok(token.to_owned());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no approval task in {arn}")
    }

    /// The state machine definition as deployed (placeholders still in).
    pub fn definition(machine: &str) -> Result<Value> {
        let (uri, _) = Template::load()?.state_machine(machine)?;
        Ok(serde_json::from_str(&std::fs::read_to_string(uri)?)?)
    }

    /// The template's substitutions: placeholder → function resource.
    pub fn substitutions(machine: &str) -> Result<BTreeMap<String, String>> {
        Ok(Template::load()?.state_machine(machine)?.1)
    }
}

/// Every operation the atomic switch's steps call (its live path and its rollback), with its
/// service.
pub const SWITCH_OPERATIONS: &[(&str, &str)] = &[
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeInstanceTypes"),
    ("ec2", "DescribeInstanceAttribute"),
    ("ec2", "DescribeSubnets"),
    ("ec2", "DescribeVolumes"),
    ("ec2", "DescribeAddresses"),
    ("ec2", "DescribeSpotPriceHistory"),
    ("ec2", "CreateImage"),
    ("ec2", "DescribeImages"),
    ("ec2", "RunInstances"),
    ("ec2", "DescribeInstanceStatus"),
    ("ec2", "StopInstances"),
    ("ec2", "CreateTags"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "DeleteItem"),
    ("dynamodb", "BatchGetItem"),
    ("pricing", "GetProducts"),
    ("states", "DescribeExecution"),
];

/// Every operation the ASG swap's steps call, with its service (`DeleteTags`, which EC2 and
/// Auto Scaling share, once: a fault matches the operation's name).
pub const SWAP_OPERATIONS: &[(&str, &str)] = &[
    ("autoscaling", "DescribeAutoScalingGroups"),
    ("autoscaling", "DescribeLifecycleHooks"),
    ("autoscaling", "SuspendProcesses"),
    ("autoscaling", "ResumeProcesses"),
    ("autoscaling", "CreateOrUpdateTags"),
    ("autoscaling", "AttachInstances"),
    ("autoscaling", "DetachInstances"),
    ("autoscaling", "DeleteTags"),
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeInstanceTypes"),
    ("ec2", "DescribeSubnets"),
    ("ec2", "DescribeSpotPriceHistory"),
    ("ec2", "RunInstances"),
    ("ec2", "DescribeInstanceStatus"),
    ("ec2", "TerminateInstances"),
    ("ec2", "CreateTags"),
    ("elasticloadbalancing", "DescribeTargetHealth"),
    ("elasticloadbalancing", "DeregisterTargets"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "DeleteItem"),
    ("dynamodb", "BatchGetItem"),
    ("pricing", "GetProducts"),
    ("states", "DescribeExecution"),
];

/// The failover's steps, live for the bed's home account, with one-second waits.
pub const FAILOVER_LIVE: &[(&str, &str, &str)] = &[
    ("failover-launch", "MODE", "live"),
    ("failover-launch", "LIVE_ACCOUNTS", crate::HOME_ACCOUNT),
    ("failover-launch", "WAIT_SECONDS", "1"),
    ("failover-launch", "HEALTH_CHECKS", "10"),
    ("failover-rollback", "MODE", "live"),
    ("failover-rollback", "LIVE_ACCOUNTS", crate::HOME_ACCOUNT),
    ("failover-standby", "MODE", "live"),
    ("failover-standby", "LIVE_ACCOUNTS", crate::HOME_ACCOUNT),
];

/// Every operation the emergency failover calls (the handler's start, its steps' live path and its
/// rollback), with its service.
pub const FAILOVER_OPERATIONS: &[(&str, &str)] = &[
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeAvailabilityZones"),
    ("ec2", "DescribeInstanceTypes"),
    ("ec2", "DescribeInstanceAttribute"),
    ("ec2", "DescribeSubnets"),
    ("ec2", "DescribeVolumes"),
    ("ec2", "DescribeAddresses"),
    ("ec2", "DescribeTags"),
    ("ec2", "DescribeSpotPriceHistory"),
    ("ec2", "RunInstances"),
    ("ec2", "StartInstances"),
    ("ec2", "ModifyInstanceAttribute"),
    ("ec2", "CreateTags"),
    ("ec2", "DescribeInstanceStatus"),
    ("ec2", "AssociateAddress"),
    ("ec2", "TerminateInstances"),
    ("elasticloadbalancing", "DescribeTargetGroups"),
    ("elasticloadbalancing", "RegisterTargets"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "BatchGetItem"),
    ("states", "StartExecution"),
    ("states", "DescribeExecution"),
    ("events", "PutEvents"),
];

/// A throttling answer for each operation, as its service sends it.
pub fn throttles(operations: &[(&str, &'static str)]) -> Vec<(&'static str, &'static str, u16)> {
    operations
        .iter()
        .map(|&(service, op)| match service {
            "ec2" => (op, "RequestLimitExceeded", 503),
            _ => (op, "ThrottlingException", 400),
        })
        .collect()
}

/// The instances launched from `image` (its lineage: no tag of ours involved).
pub async fn launched_from(ec2: &aws_sdk_ec2::Client, image: &str) -> Result<Vec<String>> {
    let answer = ec2
        .describe_instances()
        .filters(Filter::builder().name("image-id").values(image).build())
        .send()
        .await?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect())
}

/// The operations the proxy answered with an injected fault (at most twice each: a step may stop
/// asking after one, e.g. the price list falls back to the shipped table).
pub fn throttled(calls: &[crate::proxy::Call]) -> BTreeMap<String, usize> {
    let mut faulted = BTreeMap::<String, usize>::new();
    for c in calls.iter().filter(|c| c.sent.is_none()) {
        *faulted.entry(c.operation.clone()).or_default() += 1;
    }
    faulted
}

/// `dir/<function>/bootstrap` (cargo-lambda's layout) if it exists, else `dir/<function>`.
pub fn lambda_binary(dir: &std::path::Path, function: &str) -> std::path::PathBuf {
    let bootstrap = dir.join(function).join("bootstrap");
    if bootstrap.is_file() {
        bootstrap
    } else {
        dir.join(function)
    }
}

/// The step binaries of the state machine, as the template builds them.
pub fn step_binaries(machine: &str) -> Result<Vec<String>> {
    let template = Template::load()?;
    let (_, substitutions) = template.state_machine(machine)?;
    substitutions
        .values()
        .map(|f| {
            template
                .function_binary(f)
                .with_context(|| format!("{f} has no binary"))
        })
        .collect()
}

impl SagaBed {
    /// Quarantines `pool` as an interruption warning from `HOME_ACCOUNT` would.
    pub async fn quarantine(&self, pool: &str) -> Result<()> {
        let pool: PoolKey = pool.parse()?;
        let now = Utc::now();
        let signal = Signal {
            event_id: format!("bed-{}", self.suffix),
            kind: SignalKind::InterruptionWarning,
            account: HOME_ACCOUNT.into(),
            region: REGION.into(),
            time: now,
            instance_id: "i-0bedbedbedbedbed0".into(),
            instance_action: Some("terminate".into()),
        };
        let Decision::Quarantine(record) =
            decide(None, &pool, &signal, &QuarantinePolicy::default(), now)
        else {
            bail!("{pool}: not a new quarantine");
        };
        self.quarantine_table().put(&record).await?;
        Ok(())
    }

    pub fn quarantine_table(&self) -> QuarantineTable {
        QuarantineTable::new(self.bed.dynamodb(), self.tables.name("QuarantineTable"))
    }

    /// The switch's ledger record.
    pub async fn ledger(&self, switch_id: &str) -> Result<Option<LedgerRecord>> {
        Ok(
            LedgerTable::new(self.bed.dynamodb(), self.tables.name("LedgerTable"))
                .get(switch_id)
                .await?,
        )
    }

    /// A subscription to the owners' notice topic of this bed's stack.
    pub async fn notices(&self) -> Result<Inbox> {
        Inbox::subscribe(&self.bed, self.tables.name("NoticeTopic"), None).await
    }

    /// Runs `spotctl` against this bed's tables.
    pub fn spotctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(std::process::Command::new(bin_path("spotctl"))
            .args(args)
            .env("AWS_ENDPOINT_URL", self.proxy.endpoint())
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("APPROVALS_TABLE", self.tables.name("ApprovalsTable"))
            .env("QUARANTINE_TABLE", self.tables.name("QuarantineTable"))
            .env("ACCOUNTS_TABLE", self.tables.name("AccountsTable"))
            .env("CONTROL_TABLE", self.tables.name("ControlTable"))
            .env("AUDIT_TABLE", self.tables.name("AuditTable"))
            .env("LEDGER_TABLE", self.tables.name("LedgerTable"))
            .output()?)
    }

    /// Waits until the execution pauses for approval and the request is stored.
    pub async fn wait_for_approval(&self, switch_id: &str) -> Result<()> {
        for _ in 0..300 {
            let list = self.spotctl(&["approvals", "list", "--json"])?;
            if String::from_utf8_lossy(&list.stdout)
                .contains(&format!("\"saga_id\":\"{switch_id}\""))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{switch_id} never asked for approval")
    }
}

/// An SNS topic's notifications, as a subscriber gets them: moto delivers them to an SQS queue
/// subscribed to the topic (its HTTP deliveries leave the message attributes out).
pub struct Inbox {
    pub topic_arn: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    received: std::sync::Mutex<Vec<Value>>,
}

impl Inbox {
    /// The ARN a topic named `name` gets in the bed (known before it exists).
    pub fn arn(name: &str) -> String {
        format!("arn:aws:sns:{REGION}:{HOME_ACCOUNT}:{name}")
    }

    /// Creates topic `name` (or finds it) and subscribes to it.
    pub async fn start(bed: &Bed, name: &str) -> Result<Self> {
        let topic_arn = aws_sdk_sns::Client::new(&bed.home)
            .create_topic()
            .name(name)
            .send()
            .await?
            .topic_arn
            .context("no topic ARN")?;
        Self::subscribe(bed, &topic_arn, None).await
    }

    /// A queue of its own subscribed to the existing topic `topic_arn`, with SNS filter policy
    /// `filter` (on message attributes) if given.
    pub async fn subscribe(bed: &Bed, topic_arn: &str, filter: Option<&str>) -> Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(&bed.home);
        let name = format!("inbox-{}", crate::bed::unique_suffix());
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await?
            .queue_url
            .context("no queue URL")?;
        let mut subscribe = aws_sdk_sns::Client::new(&bed.home)
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{REGION}:{HOME_ACCOUNT}:{name}"));
        if let Some(filter) = filter {
            subscribe = subscribe.attributes("FilterPolicy", filter);
        }
        subscribe.send().await?;
        Ok(Self {
            topic_arn: topic_arn.to_owned(),
            sqs,
            queue_url,
            received: Default::default(),
        })
    }

    /// Takes what the queue holds now into `received`.
    async fn drain(&self) -> Result<()> {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(());
            }
            for m in messages {
                if let Some(body) = m.body.as_deref()
                    && let Ok(v) = serde_json::from_str::<Value>(body)
                    && let Ok(mut received) = self.received.lock()
                {
                    received.push(v);
                }
                if let Some(handle) = m.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }

    /// Every notification delivered so far.
    pub async fn notifications(&self) -> Result<Vec<Value>> {
        self.drain().await?;
        Ok(self
            .received
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|v| v["Type"] == "Notification")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first notification whose message contains `text` (waits up to 10 s).
    pub async fn wait_for(&self, text: &str) -> Result<Value> {
        for _ in 0..100 {
            let found = self
                .notifications()
                .await?
                .into_iter()
                .find(|v| v["Message"].as_str().is_some_and(|s| s.contains(text)));
            if let Some(v) = found {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no notification about {text} on {}", self.topic_arn)
    }
}

/// An EC2 answer to `DescribeImages` for one image id: the image failed.
pub fn failed_image() -> Fault {
    Fault::respond(
        "DescribeImages",
        r#"<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bed</requestId><imagesSet><item><imageId>{ImageId.1}</imageId><imageState>failed</imageState><stateReason><code>Client.InternalError</code><message>injected by the test bed: snapshot failed</message></stateReason></item></imagesSet></DescribeImagesResponse>"#,
    )
    .when_body_contains("ImageId.1=")
}

/// An EC2 answer to `DescribeInstanceStatus` for one instance: running, instance check impaired.
pub fn impaired_status() -> Fault {
    Fault::respond(
        "DescribeInstanceStatus",
        r#"<DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bed</requestId><instanceStatusSet><item><instanceId>{InstanceId.1}</instanceId><availabilityZone>us-east-1a</availabilityZone><instanceState><code>16</code><name>running</name></instanceState><systemStatus><status>ok</status><details><item><name>reachability</name><status>passed</status></item></details></systemStatus><instanceStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status></item></details></instanceStatus></item></instanceStatusSet></DescribeInstanceStatusResponse>"#,
    )
}

/// An EC2 answer to `DescribeInstanceStatus`: running, checks still initializing.
pub fn initializing_status() -> Fault {
    Fault::respond(
        "DescribeInstanceStatus",
        r#"<DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bed</requestId><instanceStatusSet><item><instanceId>{InstanceId.1}</instanceId><availabilityZone>us-east-1a</availabilityZone><instanceState><code>16</code><name>running</name></instanceState><systemStatus><status>initializing</status></systemStatus><instanceStatus><status>initializing</status></instanceStatus></item></instanceStatusSet></DescribeInstanceStatusResponse>"#,
    )
}

/// An EC2 answer to `DescribeSpotPriceHistory` with these prices (instance type, AZ name, USD/h),
/// stamped now: moto quotes one constant price for every pool.
pub fn spot_prices(prices: &[(&str, &str, f64)]) -> Fault {
    let now = Utc::now();
    let at: Vec<_> = prices
        .iter()
        .map(|(t, az, usd)| (*t, *az, *usd, now))
        .collect();
    spot_price_history(&at)
}

/// An EC2 answer to `DescribeSpotPriceHistory` with these price changes (instance type, AZ name,
/// USD/h, when), whatever was asked.
pub fn spot_price_history(prices: &[(&str, &str, f64, DateTime<Utc>)]) -> Fault {
    let items: String = prices
        .iter()
        .map(|(instance_type, az, usd, at)| {
            let at = at.format("%Y-%m-%dT%H:%M:%S.000Z");
            format!(
                "<item><instanceType>{instance_type}</instanceType><productDescription>Linux/UNIX</productDescription>\
                 <spotPrice>{usd:.6}</spotPrice><timestamp>{at}</timestamp><availabilityZone>{az}</availabilityZone></item>"
            )
        })
        .collect();
    Fault::respond(
        "DescribeSpotPriceHistory",
        &format!(
            r#"<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>bed</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet></DescribeSpotPriceHistoryResponse>"#
        ),
    )
}

/// A Price List `GetProducts` answer: one Linux on-demand product at `usd` per hour.
pub fn price_list(instance_type: &str, region: &str, usd: f64) -> Fault {
    let product = serde_json::json!({
        "product": {"productFamily": "Compute Instance",
            "attributes": {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {"BED.TERM": {"priceDimensions": {"BED.TERM.DIM": {
            "unit": "Hrs", "pricePerUnit": {"USD": format!("{usd:.10}")},
            "description": format!("${usd} per On Demand Linux {instance_type} Instance Hour")}}}}}
    });
    Fault::respond(
        "GetProducts",
        &serde_json::json!({"FormatVersion": "aws_v1", "PriceList": [product.to_string()]})
            .to_string(),
    )
}

/// The instance's state.
pub async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<InstanceStateName> {
    let answer = ec2.describe_instances().instance_ids(id).send().await?;
    answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state()?.name().cloned())
        .with_context(|| format!("{id} has no state"))
}

/// Instances a switch launched, with their states.
pub async fn clones(
    ec2: &aws_sdk_ec2::Client,
    switch_id: &str,
) -> Result<Vec<(String, InstanceStateName)>> {
    let answer = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:spot-optimizer:switch")
                .values(switch_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag:CreatedVia")
                .values("AtomicSwitch")
                .build(),
        )
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
                    .cloned()
                    .unwrap_or(InstanceStateName::Pending),
            )
        })
        .collect())
}

/// Images and snapshots a switch made that still exist.
pub async fn leftovers(
    ec2: &aws_sdk_ec2::Client,
    switch_id: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let images = ec2
        .describe_images()
        .owners("self")
        .filters(
            Filter::builder()
                .name("name")
                .values(format!("spot-optimizer-switch-{switch_id}"))
                .build(),
        )
        .send()
        .await?;
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name("tag:spot-optimizer:switch")
                .values(switch_id)
                .build(),
        )
        .send()
        .await?;
    Ok((
        images
            .images()
            .iter()
            .filter_map(|i| i.image_id().map(str::to_owned))
            .collect(),
        snapshots
            .snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id().map(str::to_owned))
            .collect(),
    ))
}

/// Gives `instance` an Elastic IP; returns (allocation id, address).
pub async fn elastic_ip(ec2: &aws_sdk_ec2::Client, instance: &str) -> Result<(String, String)> {
    let address = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await?;
    let allocation = address
        .allocation_id()
        .context("no allocation id")?
        .to_owned();
    ec2.associate_address()
        .allocation_id(&allocation)
        .instance_id(instance)
        .send()
        .await?;
    Ok((
        allocation,
        address.public_ip().unwrap_or_default().to_owned(),
    ))
}

/// The instance an address is associated with.
pub async fn address_holder(ec2: &aws_sdk_ec2::Client, allocation: &str) -> Result<Option<String>> {
    let answer = ec2
        .describe_addresses()
        .allocation_ids(allocation)
        .send()
        .await?;
    Ok(answer
        .addresses()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_owned))
}

/// `RunInstances` calls in `calls` not preceded (since the previous launch) by a read of the
/// quarantine table `table`: launches that skipped the gatekeeper.
pub fn launches_without_gatekeeper(calls: &[Call], table: &str) -> usize {
    let mut checked = false;
    let mut unchecked = 0;
    for call in calls {
        match (call.service.as_str(), call.operation.as_str()) {
            ("dynamodb", "GetItem" | "BatchGetItem") if call.table.as_deref() == Some(table) => {
                checked = true
            }
            ("ec2", "RunInstances") => {
                if !checked {
                    unchecked += 1;
                }
                checked = false;
            }
            _ => {}
        }
    }
    unchecked
}

#[cfg(test)]
mod tests {
    //! The state machine's shape, checked without running it: what asl-validator cannot know.

    use std::collections::BTreeSet;

    use serde_json::Value;
    use spot_domain::ErrorName;

    use super::{ASG_SWAP, ATOMIC_SWITCH, EMERGENCY_FAILOVER, SagaBed};
    use crate::template::Template;

    const ROLLBACK: &str = "Rollback";

    /// The tasks of the compensation chain that `Rollback` starts.
    fn compensating(machine: &str, name: &str) -> bool {
        let states = states(machine);
        let mut chain = vec![ROLLBACK.to_owned()];
        let mut i = 0;
        while i < chain.len() {
            for next in targets(&states[&chain[i]]) {
                if !chain.contains(&next) {
                    chain.push(next);
                }
            }
            i += 1;
        }
        chain.iter().any(|c| c == name)
    }

    /// Both sagas, with the error names each routes on.
    const MACHINES: [(&str, &[ErrorName]); 3] = [
        (ATOMIC_SWITCH, ErrorName::SWITCH),
        (ASG_SWAP, ErrorName::SWAP),
        (EMERGENCY_FAILOVER, ErrorName::FAILOVER),
    ];

    fn states(machine: &str) -> serde_json::Map<String, Value> {
        SagaBed::definition(machine).unwrap()["States"]
            .as_object()
            .unwrap()
            .clone()
    }

    /// Every state a state can go to next.
    fn targets(state: &Value) -> Vec<String> {
        let mut next: Vec<String> = ["Next", "Default"]
            .iter()
            .filter_map(|k| state[*k].as_str().map(str::to_owned))
            .collect();
        for list in ["Choices", "Catch"] {
            for item in state[list].as_array().into_iter().flatten() {
                next.extend(item["Next"].as_str().map(str::to_owned));
            }
        }
        next
    }

    /// Tasks whose failure needs no compensation, with why: the failover's standby step runs
    /// after the promotion (which stands without it) or launches a standby alone (nothing to
    /// undo: a standby it launched is found again by its tokens).
    const UNCOMPENSATED: &[(&str, &str, &str)] =
        &[(EMERGENCY_FAILOVER, "KeepStandby", "StandbyMissed")];

    #[test]
    fn every_task_but_the_compensation_catches_everything_into_the_rollback() {
        for (machine, _) in MACHINES {
            for (name, state) in states(machine) {
                if state["Type"] != "Task" || compensating(machine, &name) {
                    continue;
                }
                if let Some((_, _, next)) = UNCOMPENSATED
                    .iter()
                    .find(|(m, n, _)| *m == machine && *n == name)
                {
                    let catches = state["Catch"].as_array().expect("a Catch");
                    assert!(
                        catches.iter().all(|c| c["Next"] == *next),
                        "{name}: {catches:?}"
                    );
                    continue;
                }
                let catches = state["Catch"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: no Catch"));
                let all = catches
                    .iter()
                    .find(|c| {
                        c["ErrorEquals"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|e| e == "States.ALL")
                    })
                    .unwrap_or_else(|| panic!("{name}: no States.ALL catch"));
                assert_eq!(all["Next"], ROLLBACK, "{name}");
                for c in catches {
                    assert_eq!(c["Next"], ROLLBACK, "{name}: every failure compensates");
                    assert_eq!(
                        c["ResultPath"], "$.error",
                        "{name}: the input is kept for the rollback"
                    );
                }
            }
        }
    }

    #[test]
    fn every_task_retries_transient_lambda_service_errors_and_timeouts() {
        for (machine, _) in MACHINES {
            for (name, state) in states(machine) {
                if state["Type"] != "Task" || compensating(machine, &name) {
                    continue;
                }
                let retried: Vec<&str> = state["Retry"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: no Retry"))
                    .iter()
                    .flat_map(|r| {
                        r["ErrorEquals"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|e| e.as_str())
                    })
                    .collect();
                // A Lambda that timed out or died after its AWS call is retried, never compensated:
                // every step is safe to run again.
                for e in [
                    ErrorName::Transient.as_str(),
                    "Lambda.TooManyRequestsException",
                    "Lambda.ServiceException",
                    "Sandbox.Timedout",
                    "Lambda.Unknown",
                    // The process ended mid-invocation (killed, crashed).
                    "Runtime.ExitError",
                ] {
                    assert!(retried.contains(&e), "{name} does not retry {e}");
                }
            }
        }
    }

    #[test]
    fn the_compensation_retries_everything_catches_nothing_and_ends_in_fail() {
        for (machine, _) in MACHINES {
            let states = states(machine);
            let mut ends = BTreeSet::new();
            for (name, state) in &states {
                if !compensating(machine, name) {
                    continue;
                }
                // A compensation that fails for good fails the execution, except that the swap's
                // member phase hands over to its last task, which every path must reach.
                for catch in state["Catch"].as_array().into_iter().flatten() {
                    let next = catch["Next"].as_str().unwrap();
                    assert!(
                        compensating(machine, next) && states[next].get("Catch").is_none(),
                        "{machine}.{name}: a caught compensation failure must reach the last task"
                    );
                }
                if state["Type"] == "Task" {
                    let retry = state["Retry"].as_array().expect("the compensation retries");
                    assert!(
                        retry.iter().any(|r| r["ErrorEquals"][0] == "States.ALL"),
                        "{machine}.{name}"
                    );
                }
                if targets(state).is_empty() {
                    ends.insert(state["Type"].as_str().unwrap().to_owned());
                }
            }
            assert_eq!(ends, BTreeSet::from(["Fail".to_owned()]), "{machine}");
        }
    }

    #[test]
    fn every_transition_exists_and_every_state_is_reachable() {
        for (machine, _) in MACHINES {
            let states = states(machine);
            let mut seen = BTreeSet::from([SagaBed::definition(machine).unwrap()["StartAt"]
                .as_str()
                .unwrap()
                .to_owned()]);
            let mut todo: Vec<String> = seen.iter().cloned().collect();
            while let Some(name) = todo.pop() {
                let state = states
                    .get(&name)
                    .unwrap_or_else(|| panic!("transition to missing state {name}"));
                for next in targets(state) {
                    if seen.insert(next.clone()) {
                        todo.push(next);
                    }
                }
            }
            let all: BTreeSet<String> = states.keys().cloned().collect();
            assert_eq!(seen, all, "{machine}: unreachable states");
        }
    }

    #[test]
    fn the_asl_routes_on_exactly_the_stable_error_names() {
        for (machine, names) in MACHINES {
            let mut used = BTreeSet::new();
            for (_, state) in states(machine) {
                for list in ["Catch", "Retry"] {
                    for item in state[list].as_array().into_iter().flatten() {
                        for e in item["ErrorEquals"].as_array().unwrap() {
                            let e = e.as_str().unwrap();
                            // `States.*`, Lambda's service errors, its sandbox's and its
                            // runtime's are AWS's names, not ours.
                            if !["States.", "Lambda.", "Sandbox.", "Runtime."]
                                .iter()
                                .any(|aws| e.starts_with(aws))
                            {
                                used.insert(e.to_owned());
                            }
                        }
                    }
                }
            }
            let named: BTreeSet<String> = names.iter().map(|e| e.as_str().to_owned()).collect();
            assert_eq!(used, named, "{machine}");
        }
    }

    /// Every value a Choice compares and every `phase` a Task passes is one the steps' enums
    /// serialise to: a renamed variant fails here, not in a stuck execution.
    #[test]
    fn the_asl_compares_and_passes_only_the_steps_own_values() {
        use spot_domain::saga::switch::{ImageState, SourceRestore};
        use spot_domain::saga::{Phase, SagaMode, StepStatus};
        fn is<T: serde::de::DeserializeOwned>(value: &Value) -> bool {
            serde_json::from_value::<T>(value.clone()).is_ok()
        }
        let mut checked = 0;
        for (machine, _) in MACHINES {
            for (name, state) in states(machine) {
                if let Some(phase) = state["Parameters"].get("phase") {
                    assert!(is::<Phase>(phase), "{machine}.{name}: phase {phase}");
                    checked += 1;
                }
                for choice in state["Choices"].as_array().into_iter().flatten() {
                    let variable = choice["Variable"].as_str().unwrap();
                    let Some(value) = choice.get("StringEquals") else {
                        continue;
                    };
                    let known = match variable {
                        "$.request.mode" | "$.launch.mode" => is::<SagaMode>(value),
                        "$.image.state" => is::<ImageState>(value),
                        "$.health.status" | "$.attach.status" | "$.detach.status" => {
                            is::<StepStatus>(value)
                        }
                        "$.rollback.source" => is::<SourceRestore>(value),
                        "$.launch.replacement.market" => {
                            is::<spot_domain::saga::failover::Market>(value)
                        }
                        other => panic!("{machine}.{name}: compares {other}, which no enum types"),
                    };
                    assert!(known, "{machine}.{name}: {variable} == {value}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "only {checked} values checked");
    }

    #[test]
    fn every_placeholder_is_substituted_by_a_function_of_this_workspace() {
        for (machine, _) in MACHINES {
            let (uri, _) = Template::load().unwrap().state_machine(machine).unwrap();
            let text = std::fs::read_to_string(uri).unwrap();
            let placeholders: BTreeSet<String> = text
                .split("${")
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
                .collect();
            let substitutions = SagaBed::substitutions(machine).unwrap();
            let template = Template::load().unwrap();
            let values = template
                .state_machine_values(machine, |name| {
                    (name == "AWS::Partition").then(|| "aws".to_owned())
                })
                .unwrap();
            let substituted: BTreeSet<String> =
                substitutions.keys().chain(values.keys()).cloned().collect();
            assert_eq!(placeholders, substituted, "{machine}");
            // No partition written into a definition: China and GovCloud have their own.
            assert!(
                !text.contains("arn:aws:"),
                "{machine} names the aws partition"
            );
            let template = Template::load().unwrap();
            for function in substitutions.values() {
                let binary = template
                    .function_binary(function)
                    .unwrap_or_else(|| panic!("{function}: no binary"));
                assert!(
                    crate::functions::binaries().unwrap().contains(&binary),
                    "{function} builds {binary}, which is not a binary of functions/"
                );
            }
        }
    }

    /// Every test the README's fault matrix names exists (a name ending in `*` is a prefix).
    #[test]
    fn the_fault_matrix_names_tests_that_exist() {
        let root = crate::template::workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let matrix = readme
            .split("## Fault matrix")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a fault matrix section");
        let tests: String = [
            "tests/integration/switch.rs",
            "tests/integration/swap.rs",
            "tests/integration/failover.rs",
            "tests/integration/iam.rs",
            // The rule a test names when the bed cannot show the behaviour end to end.
            "shared/domain/src/saga/switch.rs",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect();
        let names: Vec<&str> = matrix
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '*')
            })
            .collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            let wanted = format!("fn {}", name.trim_end_matches('*'));
            assert!(
                tests.contains(&wanted),
                "the fault matrix names {name}, which is no test"
            );
        }
    }
}
