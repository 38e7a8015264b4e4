//! One isolated handler per test: its own tables, its own recording proxy, its own process.

use std::collections::HashMap;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SubsecRound, Utc};
use spot_aws::AccountsTable;
use spot_domain::{Account, Environment};
use testbed::{AwsProxy, Bed, Call, Event, LambdaHost, Outcome, Tables};

pub type Item = HashMap<String, AttributeValue>;

pub struct Harness {
    pub bed: Bed,
    pub tables: Tables,
    pub proxy: AwsProxy,
    pub handler: LambdaHost,
}

impl Harness {
    pub async fn start(label: &str) -> Result<Self> {
        Self::start_with(label, &[]).await
    }

    /// A handler configured as the template deploys it, plus `env` overrides.
    pub async fn start_with(label: &str, env: &[(&str, &str)]) -> Result<Self> {
        let bed = Bed::connect().await?;
        let tables = bed.create_tables(label).await?;
        let proxy = AwsProxy::start(&bed.endpoint).await?;
        let mut spec = tables.function("interruption-handler", &proxy.endpoint())?;
        spec.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut handler = LambdaHost::start(spec).await?;
        handler.wait_ready().await?;
        Ok(Self {
            bed,
            tables,
            proxy,
            handler,
        })
    }

    pub async fn invoke(&mut self, event: &Event) -> Result<Outcome> {
        self.handler.invoke(event.json()).await
    }

    pub async fn register(&self, account: &str, environment: Environment) -> Result<()> {
        AccountsTable::new(self.bed.dynamodb(), self.tables.name("AccountsTable"))
            .put(&Account {
                account_id: account.into(),
                environment,
                role_arn: Some(Bed::role_arn(account)),
                external_id: Some("bed-external-id".into()),
                regions: Vec::new(),
            })
            .await?;
        Ok(())
    }

    /// Every item of the quarantine table, raw.
    pub async fn items(&self) -> Result<Vec<Item>> {
        let answer = self
            .bed
            .dynamodb()
            .scan()
            .table_name(self.tables.name("QuarantineTable"))
            .consistent_read(true)
            .send()
            .await?;
        Ok(answer.items.unwrap_or_default())
    }

    pub async fn item(&self, pool: &str) -> Result<Option<Item>> {
        let answer = self
            .bed
            .dynamodb()
            .get_item()
            .table_name(self.tables.name("QuarantineTable"))
            .key("pool", AttributeValue::S(pool.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(answer.item)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.proxy.forwarder.calls()
    }
}

/// A sample event with a fresh id, timed now: the quarantine window is relative to the event
/// time, and `make test` may run long after the samples were written.
pub fn event(file: &str, instance_id: &str) -> Result<Event> {
    Ok(Event::load(file)?
        .instance(instance_id)
        .id(&unique_id())
        .time(&now().to_rfc3339()))
}

pub const WARNING: &str = "spot-interruption-warning.json";
pub const REBALANCE: &str = "rebalance-recommendation.json";

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) & 0xffff,
        std::process::id() & 0xfff,
        N.fetch_add(1, Ordering::SeqCst) & 0xfff,
        nanos & 0xffff_ffff_ffff
    )
}

pub fn s<'a>(item: &'a Item, key: &str) -> &'a str {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

pub fn n(item: &Item, key: &str) -> i64 {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(i64::MIN)
}

pub fn ss(item: &Item, key: &str) -> Vec<String> {
    let mut set = item
        .get(key)
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    set.sort();
    set
}

pub fn operations(calls: &[Call]) -> Vec<String> {
    calls.iter().map(ToString::to_string).collect()
}
