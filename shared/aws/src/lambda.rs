//! Lambda: an operator's synchronous request to one of the stack's functions (`spotctl switch
//! revert` asks `switch-revert`), with the function's own error name and message when it refuses.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;
use spot_domain::AwsError;

use crate::error::{classify, invalid_data};

/// A function's answer: its result, or the error it returned (`errorType`, `errorMessage`).
pub type Answer = Result<Value, (String, String)>;

#[derive(Debug, Clone)]
pub struct Functions {
    client: Client,
}

impl Functions {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Invokes `function` (name or ARN) with `payload` and waits for its answer.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Answer, AwsError> {
        let answer = self
            .client
            .invoke()
            .function_name(function)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| classify("Invoke", e))?;
        let body: Value = match answer.payload() {
            Some(bytes) if !bytes.as_ref().is_empty() => serde_json::from_slice(bytes.as_ref())
                .map_err(|e| invalid_data("Invoke", e.to_string()))?,
            _ => Value::Null,
        };
        if answer.function_error().is_some() {
            let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
            return Ok(Err((text("errorType"), text("errorMessage"))));
        }
        Ok(Ok(body))
    }
}
