//! Lambda `waste-scanner`: wiring only; the flow is `governance::waste::Scanner`.

use std::sync::Arc;

use governance::waste::{Config, Scanner};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{AccountsTable, AuditTable, AwsContext, AwsFleets, Guardian, Notifier, WasteTable};
use spot_domain::SystemClock;
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let config = Config::from_env(&env)?;
    let ctx = Arc::new(
        AwsContext::load(spot_domain::Capability::Governance, env!("CARGO_BIN_NAME")).await,
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let scanner = Scanner {
        home_account: ctx
            .home_account(config.governance.accounts.home_account_id.clone())
            .await?,
        registry: AccountsTable::new(dynamodb.clone(), &config.governance.accounts.table),
        fleets: AwsFleets::new(ctx.clone()),
        store: WasteTable::new(dynamodb.clone(), &config.waste_table),
        audit: AuditTable::new(dynamodb.clone(), &config.governance.audit_table),
        notices: Notifier::of(&ctx, config.notice_topic_arn.clone()),
        clock: SystemClock,
        guard: Guardian::new(
            dynamodb,
            &config.governance.guardrails,
            env!("CARGO_BIN_NAME"),
            config.governance.shadow_period,
        ),
        config,
    };
    let scanner = &scanner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        scanner
            .run(event.payload, &event.context.request_id)
            .await
            .map_err(governance::diagnostic)
    }))
    .await
}
