//! Lambda `swap-prepare`: wiring only; the step is `swap::prepare`.

use spot_domain::config::Env;
use swap::prepare::{Config, Preparer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Preparer::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
