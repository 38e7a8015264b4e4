//! The scheduled functions' flows in-process, configured exactly as the template deploys them, with
//! an injected clock: how the tests and the demo travel in time (the Lambda binaries always use
//! the system clock).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use spot_aws::{AccountsTable, AuditTable, AwsContext, AwsFleets, EnforcementTable, WasteTable};
use spot_domain::FixedClock;
use spot_domain::config::Env;

use crate::bed::{HOME_ACCOUNT, Tables};

pub type Scanner =
    governance::waste::Scanner<AccountsTable, AwsFleets, WasteTable, AuditTable, FixedClock>;
pub type Enforcer = governance::enforce::Enforcer<
    AccountsTable,
    AwsFleets,
    EnforcementTable,
    AuditTable,
    FixedClock,
>;

/// Builds the flows of one set of tables, reaching AWS through `endpoint`.
pub struct Flows<'a> {
    pub tables: &'a Tables,
    pub endpoint: String,
    pub ctx: Arc<AwsContext>,
}

impl<'a> Flows<'a> {
    pub async fn new(tables: &'a Tables, endpoint: &str) -> Self {
        Self {
            tables,
            endpoint: endpoint.to_owned(),
            ctx: Arc::new(AwsContext::new(
                crate::bed::sdk_config(endpoint).await,
                spot_domain::Capability::Governance,
                "governance-test",
            )),
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

    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(self.ctx.base())
    }

    pub fn accounts(&self) -> AccountsTable {
        AccountsTable::new(self.dynamodb(), self.tables.name("AccountsTable"))
    }

    pub fn scanner(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Scanner> {
        let env = self.env("waste-scanner", overrides)?;
        let config = governance::waste::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        Ok(governance::waste::Scanner {
            registry: self.accounts(),
            fleets: AwsFleets::new(self.ctx.clone()),
            store: WasteTable::new(self.dynamodb(), &config.waste_table),
            audit: AuditTable::new(self.dynamodb(), &config.governance.audit_table),
            clock: FixedClock(now),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }

    pub fn enforcer(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Enforcer> {
        let env = self.env("security-enforcer", overrides)?;
        let config = governance::enforce::Config::from_env(&Env(|k: &str| env.get(k).cloned()))?;
        Ok(governance::enforce::Enforcer {
            registry: self.accounts(),
            fleets: AwsFleets::new(self.ctx.clone()),
            store: EnforcementTable::new(self.dynamodb(), &config.enforcement_table),
            audit: AuditTable::new(self.dynamodb(), &config.governance.audit_table),
            clock: FixedClock(now),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }
}
