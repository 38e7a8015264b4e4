//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{ApprovalsTable, AuditTable, AwsContext, SwitchTable};
use spot_domain::SystemClock;
use spot_domain::settings::Env;
use swap_rollback::Rollback;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = Arc::new(AwsContext::from_env().await);
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let rollback = Rollback {
        ledger: SwitchTable::new(dynamodb.clone(), env.required("SWITCH_TABLE")?),
        audit: AuditTable::new(dynamodb.clone(), env.required("AUDIT_TABLE")?),
        approvals: ApprovalsTable::new(dynamodb, env.required("APPROVALS_TABLE")?),
        reach: spot_aws::reach(ctx, &env).await?,
        clock: SystemClock,
    };
    spot_aws::step::run(|input| rollback.handle(input)).await
}
