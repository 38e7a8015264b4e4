//! Lambda entry point: wiring only.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use spot_aws::{AwsContext, SwitchTable};
use spot_domain::SystemClock;
use spot_domain::saga::StepInput;
use spot_domain::settings::Env;
use switch_shadow::Shadow;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = AwsContext::from_env().await;
    let shadow = Shadow {
        ledger: SwitchTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("SWITCH_TABLE")?,
        ),
        clock: SystemClock,
    };
    let shadow = &shadow;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StepInput>| async move {
            shadow.handle(event.payload).await.map_err(|e| Diagnostic {
                error_type: e.name.to_owned(),
                error_message: e.message,
            })
        },
    ))
    .await
}
