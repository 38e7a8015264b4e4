//! Lambda entry point: wiring only. `KEEP_IMAGE=true` keeps a failed switch's image.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use spot_aws::{ApprovalsTable, AuditTable, AwsContext, SwitchTable};
use spot_domain::SystemClock;
use spot_domain::saga::StepInput;
use spot_domain::settings::Env;
use switch_rollback::Rollback;

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
        keep_image: env.parsed("KEEP_IMAGE", false)?,
    };
    let rollback = &rollback;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StepInput>| async move {
            rollback
                .handle(event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.name.to_owned(),
                    error_message: e.message,
                })
        },
    ))
    .await
}
