//! Lambda `optimizer`: wiring only; the flow is `router::Router`, the rules
//! `spot_domain::saga::route`.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use router::{Config, Router};
use serde_json::Value;
use spot_aws::{AccountsTable, AwsContext, StateMachines};
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx =
        Arc::new(AwsContext::load(spot_domain::Capability::Read, env!("CARGO_BIN_NAME")).await);
    let router = Router {
        home_account: ctx
            .home_account(config.accounts.home_account_id.clone())
            .await?,
        registry: AccountsTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            &config.accounts.table,
        ),
        executions: StateMachines::new(aws_sdk_sfn::Client::new(ctx.base())),
        guard: spot_aws::Guardian::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            &config.guardrails,
            env!("CARGO_BIN_NAME"),
            None,
        ),
        ctx,
        config,
    };
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        router
            .run(event.payload, &event.context.request_id)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_name().as_str().to_owned(),
                error_message: e.to_string(),
            })
    }))
    .await
}
