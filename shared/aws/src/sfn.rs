//! Step Functions adapter: answering a saga's approval task.

use aws_sdk_sfn::Client;
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
