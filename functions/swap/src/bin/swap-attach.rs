//! Lambda `swap-attach`: wiring only; the step is `swap::attach`.

use spot_domain::config::Env;
use swap::attach::{Attacher, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Attacher::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
