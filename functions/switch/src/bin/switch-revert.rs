//! Lambda `switch-revert`: wiring only; the step is `switch::revert` (invoked by
//! `spotctl switch revert`, not by the state machine).

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use spot_domain::config::Env;
use switch::revert::{Config, Revert};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let revert = Revert::connect(Config::from_env(&env)?).await?;
    let revert = &revert;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        revert
            .handle(event.payload, &event.context.request_id)
            .await
            .map_err(|err| lambda_runtime::Diagnostic {
                error_type: err.name.as_str().to_owned(),
                error_message: err.message,
            })
    }))
    .await
}
