//! Lambda entry point: wiring only.

use lambda_runtime::Error;
use spot_aws::{AwsContext, SwitchTable};
use spot_domain::SystemClock;
use spot_domain::settings::Env;
use swap_shadow::Shadow;

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let ctx = AwsContext::from_env().await;
    let shadow = Shadow {
        ledger: SwitchTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            env.required("SWITCH_TABLE")?,
        ),
        clock: SystemClock,
    };
    spot_aws::step::run(|input| shadow.handle(input)).await
}
