//! Lambda entry point: wiring only. `APPROVAL_TOPIC_ARN` (optional) receives the notifications.

use lambda_runtime::Error;
use spot_aws::{ApprovalsTable, AwsContext, Notifier};
use spot_domain::SystemClock;

use saga_approval::{Gate, Nobody, Notify};
use spot_domain::settings::Env;

async fn serve<N: Notify>(gate: Gate<ApprovalsTable, N, SystemClock>) -> Result<(), Error> {
    spot_aws::step::run(|input| gate.handle(input)).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = AwsContext::from_env().await;
    let approvals = ApprovalsTable::new(
        aws_sdk_dynamodb::Client::new(ctx.base()),
        env.required("APPROVALS_TABLE")?,
    );
    match env.optional("APPROVAL_TOPIC_ARN") {
        Some(topic) => {
            let notify = Notifier::new(aws_sdk_sns::Client::new(ctx.base()), topic);
            serve(Gate {
                approvals,
                notify,
                clock: SystemClock,
            })
            .await
        }
        None => {
            serve(Gate {
                approvals,
                notify: Nobody,
                clock: SystemClock,
            })
            .await
        }
    }
}
