//! Lambda `saga-approval`: wiring only; the step is `approval::Approval`.

use approval::{Approval, Config};
use lambda_runtime::Error;
use spot_domain::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let step = Approval::connect(Config::from_env(&env)?).await;
    spot_aws::step::run(&env, |input| step.handle(input)).await
}
