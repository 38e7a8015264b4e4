//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{AwsContext, PriceList, QuarantineTable};
use spot_domain::SystemClock;
use spot_domain::catalog::Catalog;
use spot_domain::settings::Env;
use spot_domain::switch::Risk;
use swap_plan::Planner;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = Arc::new(AwsContext::from_env().await);
    let planner = Planner {
        quarantine: QuarantineTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("QUARANTINE_TABLE")?,
        ),
        prices: PriceList::from_config(ctx.base(), Catalog::shipped()),
        approval_threshold: env.parsed("APPROVAL_THRESHOLD", Risk::Medium)?,
        reach: spot_aws::reach(ctx, &env).await?,
        clock: SystemClock,
        catalog: Catalog::shipped(),
    };
    spot_aws::step::run(|input| planner.handle(input)).await
}
