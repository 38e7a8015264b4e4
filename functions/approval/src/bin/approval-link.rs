//! Lambda `approval-link` (function URL): wiring only; the handler is `approval::link`.

use approval::link::{Config, Links};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spot_domain::config::Env;
use spot_domain::{Clock, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::process();
    spot_aws::telemetry::init_logging(&env.log_level());
    let links = Links::connect(Config::from_env(&env)?).await;
    let links = &links;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(links.handle(&event.payload, SystemClock.now()).await)
    }))
    .await
}
