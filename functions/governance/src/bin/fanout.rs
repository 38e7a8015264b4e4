//! Lambda `fanout`: wiring only; the flow is `governance::fanout::FanOut`.

use governance::fanout::{Config, FanOut};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{AccountsTable, AwsContext};
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx = AwsContext::load(spot_domain::Capability::Read, env!("CARGO_BIN_NAME")).await;
    let fanout = FanOut {
        home_account: ctx.home_account(config.home_account_id.clone()).await?,
        registry: AccountsTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            &config.accounts_table,
        ),
        config,
    };
    let fanout = &fanout;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        fanout
            .handle(event.payload)
            .await
            .map_err(governance::diagnostic)
    }))
    .await
}
