//! Lambda `failover-standby`: wiring only; the step is `failover::standby`.

use failover::standby::{Config, Keeper};
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Keeper::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
