//! The scheduled functions' flows in-process, configured exactly as the template deploys them, with
//! an injected clock: how the tests and the demo travel in time (the Lambda binaries always use
//! the system clock).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use spot_aws::{
    AccountsTable, AuditTable, AwsContext, AwsFleets, EnforcementTable, Notifier, WasteTable,
};
use spot_domain::FixedClock;
use spot_domain::config::Env;

use crate::bed::{HOME_ACCOUNT, Tables};

pub type Scanner = governance::waste::Scanner<
    AccountsTable,
    AwsFleets,
    WasteTable,
    AuditTable,
    FixedClock,
    Option<Notifier>,
    spot_aws::Guardian,
>;
pub type Reconciler = hibernation::Reconciler<FixedClock>;
pub type Refresher = savings::Refresher<FixedClock>;
pub type Enforcer = governance::enforce::Enforcer<
    AccountsTable,
    AwsFleets,
    EnforcementTable,
    AuditTable,
    FixedClock,
    Option<Notifier>,
    spot_aws::Guardian,
>;

/// Builds the flows of one set of tables, reaching AWS through `endpoint`: each flow as its
/// function's role (the bed's moto evaluates its actions), the tests' own seeding as the bed.
pub struct Flows<'a> {
    pub tables: &'a Tables,
    pub endpoint: String,
    /// The bed's administrator, for seeding the tables.
    pub ctx: Arc<AwsContext>,
    scanner: Arc<AwsContext>,
    enforcer: Arc<AwsContext>,
    reconciler: Arc<AwsContext>,
    refresher: Arc<AwsContext>,
}

impl<'a> Flows<'a> {
    pub async fn new(tables: &'a Tables, endpoint: &str) -> Self {
        let context = |config| {
            Arc::new(AwsContext::new(
                config,
                spot_domain::Capability::Governance,
                "governance-test",
            ))
        };
        let base = crate::bed::sdk_config(endpoint).await;
        Self {
            tables,
            endpoint: endpoint.to_owned(),
            scanner: context(tables.function_config(&base, "waste-scanner")),
            enforcer: context(tables.function_config(&base, "security-enforcer")),
            reconciler: Arc::new(AwsContext::new(
                tables.function_config(&base, "hibernation-reconciler"),
                spot_domain::Capability::Hibernation,
                "hibernation-test",
            )),
            refresher: Arc::new(AwsContext::new(
                tables.function_config(&base, "savings-refresh"),
                spot_domain::Capability::Read,
                "savings-test",
            )),
            ctx: context(base),
        }
    }

    fn env(&self, binary: &str, overrides: &[(&str, &str)]) -> Result<HashMap<String, String>> {
        let mut env: HashMap<String, String> = self
            .tables
            .function(binary, &self.endpoint)?
            .env
            .into_iter()
            .collect();
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Ok(env)
    }

    pub fn accounts(&self) -> AccountsTable {
        self.accounts_as(&self.ctx)
    }

    fn accounts_as(&self, ctx: &AwsContext) -> AccountsTable {
        AccountsTable::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            self.tables.name("AccountsTable"),
        )
    }

    pub fn scanner(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Scanner> {
        let env = self.env("waste-scanner", overrides)?;
        let config = governance::waste::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        let dynamodb = aws_sdk_dynamodb::Client::new(self.scanner.base());
        Ok(governance::waste::Scanner {
            registry: self.accounts_as(&self.scanner),
            fleets: AwsFleets::new(self.scanner.clone()),
            store: WasteTable::new(dynamodb.clone(), &config.waste_table),
            audit: AuditTable::new(dynamodb.clone(), &config.governance.audit_table),
            notices: Notifier::of(&self.scanner, config.notice_topic_arn.clone()),
            clock: FixedClock(now),
            guard: spot_aws::Guardian::new(
                dynamodb,
                &config.governance.guardrails,
                "waste-scanner",
                config.governance.shadow_period,
            ),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }

    /// The hibernation reconciler as deployed, at `now`, as its own role.
    pub fn reconciler(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Reconciler> {
        let env = self.env("hibernation-reconciler", overrides)?;
        let config = hibernation::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        let prices = spot_aws::PriceList::from_config(
            self.reconciler.base(),
            spot_domain::market::Catalog::shipped(),
        );
        Ok(hibernation::Reconciler::new(
            self.reconciler.clone(),
            prices,
            FixedClock(now),
            HOME_ACCOUNT.into(),
            config,
        ))
    }

    /// The savings refresh as deployed, at `now`, as its own role.
    pub fn refresher(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Refresher> {
        let env = self.env("savings-refresh", overrides)?;
        let config = savings::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        let prices = spot_aws::PriceList::from_config(
            self.refresher.base(),
            spot_domain::market::Catalog::shipped(),
        );
        Ok(savings::Refresher::new(
            self.refresher.clone(),
            prices,
            FixedClock(now),
            HOME_ACCOUNT.into(),
            config,
        ))
    }

    pub fn enforcer(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Enforcer> {
        let env = self.env("security-enforcer", overrides)?;
        let config = governance::enforce::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        let dynamodb = aws_sdk_dynamodb::Client::new(self.enforcer.base());
        Ok(governance::enforce::Enforcer {
            registry: self.accounts_as(&self.enforcer),
            fleets: AwsFleets::new(self.enforcer.clone()),
            store: EnforcementTable::new(dynamodb.clone(), &config.enforcement_table),
            audit: AuditTable::new(dynamodb.clone(), &config.governance.audit_table),
            notices: Notifier::of(&self.enforcer, config.notice_topic_arn.clone()),
            clock: FixedClock(now),
            guard: spot_aws::Guardian::new(
                dynamodb,
                &config.governance.guardrails,
                "security-enforcer",
                config.governance.shadow_period,
            ),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }
}
