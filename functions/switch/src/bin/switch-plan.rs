//! Lambda `switch-plan`: wiring only; the step is `switch::plan`.

use spot_domain::config::Env;
use switch::plan::{Config, Planner};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Planner::connect(Config::from_env(&env)?).await?;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
