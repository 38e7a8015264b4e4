//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{AuditTable, AwsContext};
use spot_domain::SystemClock;
use spot_domain::settings::Env;
use swap_prepare::Preparer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = Arc::new(AwsContext::from_env().await);
    let preparer = Preparer {
        audit: AuditTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("AUDIT_TABLE")?,
        ),
        reach: spot_aws::reach(ctx, &env).await?,
        clock: SystemClock,
    };
    spot_aws::step::run(|input| preparer.handle(input)).await
}
