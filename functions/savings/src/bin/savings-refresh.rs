//! Lambda `savings-refresh`: wiring only; the flow is `savings::Refresher`.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use savings::{Config, Refresher};
use serde_json::Value;
use spot_aws::{AwsContext, PriceList};
use spot_domain::SystemClock;
use spot_domain::config::Env;
use spot_domain::market::Catalog;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx =
        Arc::new(AwsContext::load(spot_domain::Capability::Read, env!("CARGO_BIN_NAME")).await);
    let home_account = ctx
        .home_account(config.accounts.home_account_id.clone())
        .await?;
    let prices = PriceList::from_config(ctx.base(), Catalog::shipped());
    let refresher = Refresher::new(ctx, prices, SystemClock, home_account, config);
    let refresher = &refresher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        refresher
            .run(event.payload, &event.context.request_id)
            .await
            .map_err(|err| lambda_runtime::Diagnostic {
                error_type: err.error_name().as_str().to_owned(),
                error_message: err.to_string(),
            })
    }))
    .await
}
