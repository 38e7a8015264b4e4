//! Lambda entry point: wiring only. The flow lives in `lib.rs`, the rules in `spot_domain::waste`.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_aws::{AccountsTable, AuditTable, AwsContext, AwsFleets, WasteTable};
use spot_domain::SystemClock;
use waste_scanner::{Config, Scanner};

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let config = Config::from_env(|key| std::env::var(key).ok())?;
    let ctx = Arc::new(AwsContext::from_env().await);
    let home_account = ctx
        .home_account(config.governance.home_account_id.clone())
        .await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let scanner = Scanner {
        registry: AccountsTable::new(dynamodb.clone(), &config.governance.accounts_table),
        fleets: AwsFleets::new(ctx.clone()),
        store: WasteTable::new(dynamodb.clone(), &config.waste_table),
        audit: AuditTable::new(dynamodb, &config.governance.audit_table),
        clock: SystemClock,
        home_account,
        config,
    };
    let scanner = &scanner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        scanner
            .run(event.payload, &event.context.request_id)
            .await
            .map_err(diagnostic)
    }))
    .await
}

fn diagnostic(err: spot_domain::run::RunError) -> Diagnostic {
    Diagnostic {
        error_type: err.error_type().to_owned(),
        error_message: err.to_string(),
    }
}
