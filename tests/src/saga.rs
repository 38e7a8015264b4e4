//! The atomic-switch state machine in the bed: moto executes the ASL from `statemachines/`, and its
//! Lambda tasks run this test's copies of the eight step binaries (registered with the gateway
//! under unique names, configured from the template, calling AWS through this test's proxy).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::Value;

use crate::bed::{Bed, HOME_ACCOUNT, REGION, Tables};
use crate::proxy::AwsProxy;
use crate::template::Template;

pub const STATE_MACHINE: &str = "AtomicSwitchStateMachine";

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
    pub wall: Duration,
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
        let bed = Bed::connect().await?;
        let tables = bed.create_tables(label).await?;
        let proxy = AwsProxy::start(&bed.endpoint).await?;
        let suffix = format!(
            "{:x}",
            chrono::Utc::now().timestamp_micros() % 0xff_ffff_ffff
        );
        let template = Template::load()?;
        let (uri, substitutions) = template.state_machine(STATE_MACHINE)?;
        let mut definition =
            std::fs::read_to_string(&uri).with_context(|| format!("reading {}", uri.display()))?;
        for (placeholder, function) in &substitutions {
            let binary = template
                .function_binary(function)
                .with_context(|| format!("{function} has no binary"))?;
            let name = format!("{binary}-{suffix}");
            let mut spec = tables.function(&binary, &proxy.endpoint())?;
            for (b, k, v) in overrides {
                if *b == binary {
                    spec.env.insert((*k).to_owned(), (*v).to_owned());
                }
            }
            bed.register_function(&name, &spec).await?;
            definition = definition.replace(
                &format!("${{{placeholder}}}"),
                &format!("arn:aws:lambda:{REGION}:{HOME_ACCOUNT}:function:{name}"),
            );
        }
        let sfn = aws_sdk_sfn::Client::new(&bed.home);
        let machine = sfn
            .create_state_machine()
            .name(format!("{label}-{suffix}"))
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{HOME_ACCOUNT}:role/bed-states"))
            .send()
            .await?
            .state_machine_arn()
            .to_owned();
        Ok(Self {
            bed,
            tables,
            proxy,
            sfn,
            machine,
            suffix,
        })
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
                let history: Vec<_> = self
                    .sfn
                    .get_execution_history()
                    .execution_arn(arn)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await?;
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
                    wall: started.elapsed(),
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
    pub fn definition() -> Result<Value> {
        let (uri, _) = Template::load()?.state_machine(STATE_MACHINE)?;
        Ok(serde_json::from_str(&std::fs::read_to_string(uri)?)?)
    }

    /// The template's substitutions: placeholder → function resource.
    pub fn substitutions() -> Result<BTreeMap<String, String>> {
        Ok(Template::load()?.state_machine(STATE_MACHINE)?.1)
    }
}
