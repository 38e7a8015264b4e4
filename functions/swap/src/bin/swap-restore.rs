//! Lambda `swap-restore`: wiring only; the step is `swap::restore`.

use spot_domain::config::Env;
use swap::restore::{Config, Restorer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Restorer::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
