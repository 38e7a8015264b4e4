//! Lambda adapter for the saga steps: serves one step with the Lambda runtime and names its
//! failures as the state machine routes on them.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spot_domain::saga::StepError;

/// Runs the Lambda runtime loop: each event is handed to `handle`; a [`StepError`] becomes the
/// Lambda error whose `errorType` is its stable name (`NotEligible`, `Transient`...), not the Rust
/// type name.
pub async fn run<I, T, F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned,
    T: Serialize,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let handle = &handle;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<I>| async move {
        handle(event.payload).await.map_err(|e| Diagnostic {
            error_type: e.name.to_owned(),
            error_message: e.message,
        })
    }))
    .await
}
