//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{AwsContext, SwitchTable};
use spot_domain::SystemClock;
use spot_domain::settings::Env;
use swap_discover::{Config, Discoverer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let config = Config::from_env(&env)?;
    let ctx = Arc::new(AwsContext::from_env().await);
    let discoverer = Discoverer {
        ledger: SwitchTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("SWITCH_TABLE")?,
        ),
        reach: spot_aws::reach(ctx, &env).await?,
        clock: SystemClock,
        config,
    };
    spot_aws::step::run(|input| discoverer.handle(input)).await
}
