//! The Lambda runner of the saga steps: reads the payload as the step's typed input (a payload it
//! cannot read is `InvalidRequest`, never a panic or the runtime's own error name) and names its
//! failures as the state machine routes on them.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use spot_domain::config::{Env, Executions};
use spot_domain::saga::StepError;
use tracing::warn;

use crate::sfn;

/// The Lambda error a [`StepError`] becomes: `errorType` is its stable name (`NotEligible`,
/// `Transient`...), not the Rust type name.
pub fn diagnostic(e: StepError) -> Diagnostic {
    Diagnostic {
        error_type: e.name.as_str().to_owned(),
        error_message: e.message,
    }
}

/// Runs the Lambda runtime loop, handing each event to `handle` once Step Functions confirmed the
/// event's `execution` is running in one of the step's state machines (`STATE_MACHINES`): a
/// direct invocation naming a made-up or ended execution is `InvalidRequest` and does nothing.
pub async fn run<I, T, F, Fut, E>(env: &Env<E>, handle: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned,
    T: Serialize,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
    E: Fn(&str) -> Option<String>,
{
    let executions = &connect(Executions::from_env(env)?).await?;
    let handle = &handle;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let execution = event
            .payload
            .get("execution")
            .and_then(Value::as_str)
            .ok_or_else(|| diagnostic(StepError::invalid("the step's input names no execution")))?;
        if !executions
            .running(execution)
            .await
            .map_err(|e| diagnostic(e.into()))?
        {
            // At most 80 characters of it: a name Step Functions gives is never longer.
            let shown: String = execution.chars().take(80).collect();
            let refused = StepError::invalid(format!(
                "`{shown}` is not a running execution of {}: a step acts only for the saga \
                 that runs it",
                executions.machines()
            ));
            warn!(execution = shown, error = %refused.message, "step refused");
            return Err(diagnostic(refused));
        }
        let input: I = serde_json::from_value(event.payload)
            .map_err(|e| diagnostic(StepError::invalid(format!("the step's input: {e}"))))?;
        // The step's own span logs the failure (with the saga id, account and target).
        handle(input).await.map_err(diagnostic)
    }))
    .await
}

async fn connect(config: Executions) -> Result<sfn::Executions, lambda_runtime::Error> {
    let base = crate::tls::load().await;
    let home_account = match &config.home_account_id {
        Some(id) => id.clone(),
        None => crate::clients::account_of(&base).await?,
    };
    Ok(sfn::Executions::new(
        aws_sdk_sfn::Client::new(&base),
        config,
        home_account,
    ))
}
