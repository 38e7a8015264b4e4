//! Lambda entry point: wiring only. The flow lives in `lib.rs`, the rules in `spot_domain::route`.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use optimizer::{Config, Router};
use serde_json::Value;
use spot_aws::{AccountsTable, AwsContext, AwsSwitchFleets, StateMachines};
use spot_domain::SystemClock;
use spot_domain::settings::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let config = Config::from_env(&Env(|key: &str| std::env::var(key).ok()))?;
    let ctx = Arc::new(AwsContext::from_env().await);
    let router = Router {
        registry: AccountsTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            &config.accounts_table,
        ),
        executions: StateMachines::new(aws_sdk_sfn::Client::new(ctx.base())),
        home_account: ctx.home_account(config.home_account_id.clone()).await?,
        fleets: AwsSwitchFleets::new(ctx),
        clock: SystemClock,
        config,
    };
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        router
            .run(event.payload, &event.context.request_id)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_type().to_owned(),
                error_message: e.to_string(),
            })
    }))
    .await
}
