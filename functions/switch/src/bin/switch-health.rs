//! Lambda `switch-health`: wiring only; the step is `switch::health`.

use spot_domain::config::Env;
use switch::health::{Checker, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Checker::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
