//! Lambda entry point: wiring only. `NO_REBOOT=true` images without rebooting the source.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use spot_aws::AwsContext;
use spot_domain::saga::StepInput;
use spot_domain::settings::Env;
use switch_image::Imager;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let imager = Imager {
        reach: spot_aws::reach(Arc::new(AwsContext::from_env().await), &env).await?,
        no_reboot: env.parsed("NO_REBOOT", false)?,
    };
    let imager = &imager;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StepInput>| async move {
            imager.handle(event.payload).await.map_err(|e| Diagnostic {
                error_type: e.name.to_owned(),
                error_message: e.message,
            })
        },
    ))
    .await
}
