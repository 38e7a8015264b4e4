//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::AwsContext;
use spot_domain::settings::Env;
use swap_health::Checker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let checker = Checker {
        reach: spot_aws::reach(Arc::new(AwsContext::from_env().await), &env).await?,
    };
    spot_aws::step::run(|input| checker.handle(input)).await
}
