//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use spot_aws::AwsContext;
use spot_domain::saga::StepInput;
use spot_domain::settings::Env;
use switch_health::Checker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let checker = Checker {
        reach: spot_aws::reach(Arc::new(AwsContext::from_env().await), &env).await?,
    };
    let checker = &checker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StepInput>| async move {
            checker.handle(event.payload).await.map_err(|e| Diagnostic {
                error_type: e.name.to_owned(),
                error_message: e.message,
            })
        },
    ))
    .await
}
