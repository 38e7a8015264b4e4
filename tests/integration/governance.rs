//! Harness for the scheduled functions: a fresh member account per test (moto keys state by
//! account, so no test sees another's resources), the flows run in-process with an injected clock
//! against the bed, through a recording proxy.

use anyhow::{Result, anyhow};
use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::json;
use spot_aws::AccountsTable;
use spot_domain::governance::report::RunReport;
use spot_domain::tags::Tags;
use spot_domain::{Account, Environment};
use testbed::governance::{Flows, Scanner};
use testbed::{AwsProxy, Bed, Tables};

use crate::support::Item;

pub struct Gov {
    pub bed: Bed,
    pub tables: Tables,
    pub proxy: AwsProxy,
    pub account: String,
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
        let member = bed.member(&account).await?;
        let gov = Self {
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

    async fn flows(&self) -> Flows<'_> {
        Flows::new(&self.tables, &self.proxy.endpoint()).await
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

    pub async fn scanner(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<Scanner> {
        self.flows().await.scanner(overrides, now)
    }

    /// One waste scan of this test's account at `now`.
    pub async fn scan(&self, overrides: &[(&str, &str)], now: DateTime<Utc>) -> Result<RunReport> {
        let scanner = self.scanner(overrides, now).await?;
        Ok(scanner
            .run(json!({"accounts": [self.account]}), "test-request")
            .await?)
    }

    /// One enforcement run of this test's account (us-east-1) at `now`.
    pub async fn enforce(
        &self,
        overrides: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<RunReport> {
        let enforcer = self.flows().await.enforcer(overrides, now)?;
        Ok(enforcer
            .run(
                json!({"accounts": [self.account], "regions": ["us-east-1"]}),
                "test-request",
            )
            .await?)
    }

    /// One hibernation reconciler run of this test's account (`regions`) at `now`.
    pub async fn reconcile(
        &self,
        overrides: &[(&str, &str)],
        regions: &[&str],
        now: DateTime<Utc>,
    ) -> Result<RunReport> {
        let reconciler = self.flows().await.reconciler(overrides, now)?;
        Ok(reconciler
            .run(
                json!({"accounts": [self.account], "regions": regions}),
                "test-request",
            )
            .await?)
    }

    /// One savings refresh of this test's account (us-east-1) at `now`.
    pub async fn refresh_savings(&self, now: DateTime<Utc>) -> Result<RunReport> {
        let refresher = self.flows().await.refresher(&[], now)?;
        Ok(refresher
            .run(
                json!({"accounts": [self.account], "regions": ["us-east-1"]}),
                "test-request",
            )
            .await?)
    }

    /// `spotctl` with this test's tables, as the bed's administrator.
    pub fn spotctl(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut command = std::process::Command::new(testbed::bed::bin_path("spotctl"));
        command
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.bed.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (var, table) in [
            ("HIBERNATION_TABLE", "HibernationTable"),
            ("WASTE_TABLE", "WasteTable"),
            ("ENFORCEMENT_TABLE", "EnforcementTable"),
            ("LEDGER_TABLE", "LedgerTable"),
            ("AUDIT_TABLE", "AuditTable"),
            ("ACCOUNTS_TABLE", "AccountsTable"),
        ] {
            command.env(var, self.tables.name(table));
        }
        Ok(command.output()?)
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
) -> Result<&'a spot_domain::governance::report::TargetReport> {
    report
        .targets
        .iter()
        .find(|t| t.region == region)
        .ok_or_else(|| anyhow!("no report for {region}: {report:?}"))
}
