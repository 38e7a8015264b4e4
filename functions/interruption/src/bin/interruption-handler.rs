//! Lambda `interruption-handler`: wiring only; the flow is `interruption::Handler`.

use std::sync::Arc;

use interruption::{Config, Handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{
    AccountsTable, AwsContext, Ec2Directory, EventBus, QuarantineTable, SignalReactions,
    StateMachines,
};
use spot_domain::config::Env;
use spot_domain::{CachedRegistry, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx =
        Arc::new(AwsContext::load(spot_domain::Capability::Read, env!("CARGO_BIN_NAME")).await);
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let handler = Handler {
        home_account: ctx
            .home_account(config.accounts.home_account_id.clone())
            .await?,
        registry: CachedRegistry::new(
            AccountsTable::new(dynamodb.clone(), &config.accounts.table),
            SystemClock,
            config.accounts.cache,
        ),
        reactions: SignalReactions {
            machines: StateMachines::new(aws_sdk_sfn::Client::new(ctx.base())),
            failover_machine: config.failover_state_machine.clone(),
            bus: config
                .event_bus
                .clone()
                .map(|bus| EventBus::new(aws_sdk_eventbridge::Client::new(ctx.base()), bus)),
        },
        instances: Ec2Directory::new(ctx),
        store: QuarantineTable::new(dynamodb, &config.quarantine_table),
        clock: SystemClock,
        config,
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await
    }))
    .await
}
