//! Lambda `accounts-verify`: wiring only; the flow is `governance::verify::Verifier`.

use std::sync::Arc;

use governance::verify::{Config, Verifier};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{AccountsTable, AwsContext};
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx =
        Arc::new(AwsContext::load(spot_domain::Capability::Read, env!("CARGO_BIN_NAME")).await);
    let verifier = Verifier {
        home_account: ctx
            .home_account(config.accounts.home_account_id.clone())
            .await?,
        registry: AccountsTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            &config.accounts.table,
        ),
        ctx,
        config,
    };
    let verifier = &verifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        verifier
            .handle(event.payload)
            .await
            .map_err(governance::diagnostic)
    }))
    .await
}
