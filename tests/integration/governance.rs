//! Harness for the scheduled functions: a fresh member account per test (moto keys state by
//! account, so no test sees another's resources), the flows run in-process with an injected clock
//! against the bed, through a recording proxy.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::json;
use spot_aws::{AccountsTable, AuditTable, AwsContext, AwsFleets, EnforcementTable, WasteTable};
use spot_domain::report::RunReport;
use spot_domain::waste::Tags;
use spot_domain::{Account, Environment, FixedClock};
use testbed::{AwsProxy, Bed, HOME_ACCOUNT, Tables};

use crate::support::Item;

pub type Scanner =
    waste_scanner::Scanner<AccountsTable, AwsFleets, WasteTable, AuditTable, FixedClock>;
pub type Enforcer =
    security_enforcer::Enforcer<AccountsTable, AwsFleets, EnforcementTable, AuditTable, FixedClock>;

pub struct Gov {
    pub bed: Bed,
    pub tables: Tables,
    pub proxy: AwsProxy,
    pub account: String,
    ctx: Arc<AwsContext>,
    member: SdkConfig,
}

fn fresh_account() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let micros = Utc::now().timestamp_micros() as u64;
    format!(
        "{:012}",
        100_000_000_000 + (micros * 64 + N.fetch_add(1, Ordering::SeqCst)) % 800_000_000_000
    )
}

impl Gov {
    /// A registered PROD member account of its own, scanned in us-east-1 and us-west-2.
    pub async fn start(label: &str) -> Result<Self> {
        let bed = Bed::connect().await?;
        let tables = bed.create_tables(label).await?;
        let proxy = AwsProxy::start(&bed.endpoint).await?;
        let account = fresh_account();
        let gov_base = testbed::bed::sdk_config(&proxy.endpoint()).await;
        let member = bed.member(&account).await?;
        let gov = Self {
            ctx: Arc::new(AwsContext::new(gov_base)),
            member,
            bed,
            tables,
            proxy,
            account,
        };
        gov.register(&gov.account.clone(), &["us-east-1", "us-west-2"])
            .await?;
        Ok(gov)
    }

    pub async fn register(&self, account: &str, regions: &[&str]) -> Result<()> {
        self.accounts()
            .put(&Account {
                account_id: account.into(),
                environment: Environment::Prod,
                role_arn: Some(Bed::role_arn(account)),
                external_id: Some("bed-external-id".into()),
                regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            })
            .await?;
        Ok(())
    }

    fn accounts(&self) -> AccountsTable {
        AccountsTable::new(self.bed.dynamodb(), self.tables.name("AccountsTable"))
    }

    /// The member account's EC2 in `region`.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(
            &self
                .member
                .clone()
                .into_builder()
                .region(Region::new(region.to_owned()))
                .build(),
        )
    }

    pub fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.member)
    }

    /// The function's environment as the template deploys it, plus `overrides`.
    fn env(&self, binary: &str, overrides: &[(&str, &str)]) -> Result<HashMap<String, String>> {
        let mut env: HashMap<String, String> = self
            .tables
            .function(binary, &self.proxy.endpoint())?
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

    pub fn scanner(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Scanner> {
        let env = self.env("waste-scanner", overrides)?;
        let config = waste_scanner::Config::from_env(|k| env.get(k).cloned())?;
        let ddb = aws_sdk_dynamodb::Client::new(self.ctx.base());
        Ok(waste_scanner::Scanner {
            registry: self.accounts(),
            fleets: AwsFleets::new(self.ctx.clone()),
            store: WasteTable::new(ddb.clone(), &config.waste_table),
            audit: AuditTable::new(ddb, &config.governance.audit_table),
            clock: FixedClock(now),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }

    /// One waste scan of this test's account at `now`.
    pub async fn scan(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<RunReport> {
        let scanner = self.scanner(overrides, now)?;
        Ok(scanner
            .run(json!({"accounts": [self.account]}), "test-request")
            .await?)
    }

    pub fn enforcer(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Enforcer> {
        let env = self.env("security-enforcer", overrides)?;
        let config = security_enforcer::Config::from_env(|k| env.get(k).cloned())?;
        let ddb = aws_sdk_dynamodb::Client::new(self.ctx.base());
        Ok(security_enforcer::Enforcer {
            registry: self.accounts(),
            fleets: AwsFleets::new(self.ctx.clone()),
            store: EnforcementTable::new(ddb.clone(), &config.enforcement_table),
            audit: AuditTable::new(ddb, &config.governance.audit_table),
            clock: FixedClock(now),
            home_account: HOME_ACCOUNT.into(),
            config,
        })
    }

    pub async fn enforce(
        &self,
        overrides: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<RunReport> {
        let enforcer = self.enforcer(overrides, now)?;
        Ok(enforcer
            .run(
                json!({"accounts": [self.account], "regions": ["us-east-1"]}),
                "test-request",
            )
            .await?)
    }

    async fn item(&self, table: &str, key: &str, value: String) -> Result<Option<Item>> {
        Ok(self
            .bed
            .dynamodb()
            .get_item()
            .table_name(self.tables.name(table))
            .key(key, AttributeValue::S(value))
            .consistent_read(true)
            .send()
            .await?
            .item)
    }

    pub async fn waste(&self, region: &str, resource_id: &str) -> Result<Option<Item>> {
        self.item(
            "WasteTable",
            "resource",
            format!("{}#{region}#{resource_id}", self.account),
        )
        .await
    }

    pub async fn enforcement(&self, instance_id: &str) -> Result<Option<Item>> {
        self.item(
            "EnforcementTable",
            "instance",
            format!("{}#us-east-1#{instance_id}", self.account),
        )
        .await
    }

    pub async fn audit(&self) -> Result<Vec<Item>> {
        Ok(self
            .bed
            .dynamodb()
            .scan()
            .table_name(self.tables.name("AuditTable"))
            .send()
            .await?
            .items
            .unwrap_or_default())
    }

    /// A resource's tags, as its owner sees them.
    pub async fn tags(&self, region: &str, resource_id: &str) -> Result<Tags> {
        let answer = self
            .ec2(region)
            .describe_tags()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("resource-id")
                    .values(resource_id)
                    .build(),
            )
            .send()
            .await?;
        Ok(answer
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect())
    }
}

pub fn status(item: &Option<Item>) -> String {
    item.as_ref()
        .and_then(|i| i.get("status").or_else(|| i.get("auth_status")))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_else(|| "-".into())
}

pub fn target<'a>(
    report: &'a RunReport,
    region: &str,
) -> Result<&'a spot_domain::report::TargetReport> {
    report
        .targets
        .iter()
        .find(|t| t.region == region)
        .ok_or_else(|| anyhow!("no report for {region}: {report:?}"))
}
