//! Lambda entry point: wiring only. The decisions live in `spot_domain`, the flow in `handler`.

use std::sync::Arc;

use interruption_handler::{Config, Handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{AccountsTable, AwsContext, Ec2Directory, QuarantineTable};
use spot_domain::{CachedRegistry, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let config = Config::from_env(|key| std::env::var(key).ok())?;
    let ctx = Arc::new(AwsContext::from_env().await);
    let home_account = ctx.home_account(config.home_account_id.clone()).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let handler = Handler {
        registry: CachedRegistry::new(
            AccountsTable::new(dynamodb.clone(), &config.accounts_table),
            SystemClock,
            config.account_cache,
        ),
        instances: Ec2Directory::new(ctx.clone()),
        store: QuarantineTable::new(dynamodb, &config.quarantine_table),
        clock: SystemClock,
        home_account,
        config,
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await
    }))
    .await
}
