//! Lambda entry point: wiring only. `NO_REBOOT=true` images without rebooting the source.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::AwsContext;
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
    spot_aws::step::run(|input| imager.handle(input)).await
}
