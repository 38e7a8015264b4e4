//! Lambda entry point: wiring only. `CAPACITY_HOLD_SECONDS` (default 600) sets how long a pool
//! without capacity is passed over.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{AwsContext, QuarantineTable};
use spot_domain::SystemClock;
use spot_domain::quarantine::QuarantinePolicy;
use spot_domain::settings::Env;
use swap_launch::Launcher;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = Arc::new(AwsContext::from_env().await);
    let launcher = Launcher {
        quarantine: QuarantineTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("QUARANTINE_TABLE")?,
        ),
        reach: spot_aws::reach(ctx, &env).await?,
        clock: SystemClock,
        policy: QuarantinePolicy::for_launches(&env)?,
    };
    spot_aws::step::run(|input| launcher.handle(input)).await
}
