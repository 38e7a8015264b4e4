//! The Lambda runner of the saga steps: reads the payload as the step's typed input (a payload it
//! cannot read is `InvalidRequest`, never a panic or the runtime's own error name) and names its
//! failures as the state machine routes on them.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use spot_domain::saga::StepError;

/// The Lambda error a [`StepError`] becomes: `errorType` is its stable name (`NotEligible`,
/// `Transient`...), not the Rust type name.
pub fn diagnostic(e: StepError) -> Diagnostic {
    Diagnostic {
        error_type: e.name.as_str().to_owned(),
        error_message: e.message,
    }
}

/// Runs the Lambda runtime loop, handing each event to `handle`.
pub async fn run<I, T, F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned,
    T: Serialize,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let handle = &handle;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let input: I = serde_json::from_value(event.payload)
            .map_err(|e| diagnostic(StepError::invalid(format!("the step's input: {e}"))))?;
        // The step's own span logs the failure (with the saga id, account and target).
        handle(input).await.map_err(diagnostic)
    }))
    .await
}
