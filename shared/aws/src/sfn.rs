//! Step Functions adapter: answering a saga's approval task, starting the sagas, and telling a
//! step whether the execution it is asked to act for is running.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::ExecutionStatus;
use spot_domain::AwsError;

use crate::error::classify;

#[derive(Debug, Clone)]
pub struct TaskAnswers {
    client: Client,
}

impl TaskAnswers {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Lets the paused saga continue; `output` becomes the task's result.
    pub async fn approve(&self, token: &str, output: &serde_json::Value) -> Result<(), AwsError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map_err(|e| classify("SendTaskSuccess", e))?;
        Ok(())
    }

    /// Fails the paused task with `error`, which the state machine routes on.
    pub async fn reject(&self, token: &str, error: &str, cause: &str) -> Result<(), AwsError> {
        self.client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map_err(|e| classify("SendTaskFailure", e))?;
        Ok(())
    }
}

/// Starts executions (the router).
#[derive(Debug, Clone)]
pub struct StateMachines {
    client: Client,
}

/// Whether a start began an execution or found one of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    New(String),
    /// An execution of that name exists (running or ended): nothing was started.
    AlreadyExists,
}

impl StateMachines {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn start(
        &self,
        state_machine: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<Started, AwsError> {
        use aws_sdk_sfn::error::ProvideErrorMetadata;
        // StartExecution answers a running execution of the same name and input with its ARN, as
        // if it had started it: ask first, so the router reports what it really started.
        let arn = format!(
            "{}:{name}",
            state_machine.replacen(":stateMachine:", ":execution:", 1)
        );
        if status(&self.client, &arn).await?.is_some() {
            return Ok(Started::AlreadyExists);
        }
        match self
            .client
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await
        {
            Ok(answer) => Ok(Started::New(answer.execution_arn().to_owned())),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(Started::AlreadyExists),
            Err(e) => Err(classify("StartExecution", e)),
        }
    }
}

impl StateMachines {
    /// Starts execution `name` in one call, for a caller that counts the milliseconds (the
    /// interruption handler): `AlreadyExists` for a name already used with another input. A
    /// repeated start with the very same input (Step Functions then answers the running
    /// execution's ARN) cannot happen for a failover, whose input carries its receipt time.
    pub async fn start_at_once(
        &self,
        state_machine: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<Started, AwsError> {
        use aws_sdk_sfn::error::ProvideErrorMetadata;
        match self
            .client
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await
        {
            Ok(answer) => Ok(Started::New(answer.execution_arn().to_owned())),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(Started::AlreadyExists),
            Err(e) => Err(classify("StartExecution", e)),
        }
    }
}

/// Whether a saga step is acting for a running execution of its own state machines (see
/// [`spot_domain::config::Executions`]).
#[derive(Debug, Clone)]
pub struct Executions {
    client: Client,
    config: spot_domain::config::Executions,
    home_account: String,
}

impl Executions {
    pub fn new(
        client: Client,
        config: spot_domain::config::Executions,
        home_account: String,
    ) -> Self {
        Self {
            client,
            config,
            home_account,
        }
    }

    /// The state machines this step serves, for messages.
    pub fn machines(&self) -> String {
        self.config.machines.join(", ")
    }

    /// Whether `execution` names a running execution of one of the state machines: one
    /// `DescribeExecution` per state machine until found (one, for every step but the approval's).
    pub async fn running(&self, execution: &str) -> Result<bool, AwsError> {
        for arn in self.config.arns(&self.home_account, execution) {
            if let Some(found) = status(&self.client, &arn).await? {
                return Ok(found == ExecutionStatus::Running);
            }
        }
        Ok(false)
    }
}

/// The status of execution `arn`; `None` when it does not exist.
async fn status(client: &Client, arn: &str) -> Result<Option<ExecutionStatus>, AwsError> {
    match client.describe_execution().execution_arn(arn).send().await {
        Ok(found) => Ok(Some(found.status().clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(classify("DescribeExecution", e)),
    }
}
