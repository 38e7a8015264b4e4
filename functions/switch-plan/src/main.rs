//! Lambda entry point: wiring only.

use std::sync::Arc;

use lambda_runtime::Error;
use spot_aws::{
    AccountsTable, AwsContext, AwsSwitchFleets, PriceList, QuarantineTable, SwitchTable,
};
use spot_domain::catalog::Catalog;
use spot_domain::settings::Env;
use spot_domain::{CachedRegistry, SystemClock};
use switch_plan::{Config, Planner};

#[tokio::main]
async fn main() -> Result<(), Error> {
    spot_aws::telemetry::init_logging();
    let env = Env(|key: &str| std::env::var(key).ok());
    let config = Config::from_env(&env)?;
    let ctx = Arc::new(AwsContext::from_env().await);
    let home_account = ctx.home_account(env.optional("HOME_ACCOUNT_ID")).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let planner = Planner {
        registry: CachedRegistry::new(
            AccountsTable::new(dynamodb.clone(), env.required("ACCOUNTS_TABLE")?),
            SystemClock,
            chrono::TimeDelta::seconds(300),
        ),
        prices: PriceList::from_config(ctx.base(), Catalog::shipped()),
        fleets: AwsSwitchFleets::new(ctx),
        quarantine: QuarantineTable::new(dynamodb.clone(), env.required("QUARANTINE_TABLE")?),
        ledger: SwitchTable::new(dynamodb, env.required("SWITCH_TABLE")?),
        clock: SystemClock,
        catalog: Catalog::shipped(),
        home_account,
        config,
    };
    spot_aws::step::run(|input| planner.handle(input)).await
}
