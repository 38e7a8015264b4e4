//! DynamoDB adapter, continued: the waste, enforcement and audit tables of the scheduled functions.
//!
//! Waste and enforcement items carry `scope` = `{account}#{region}`, the partition key of their
//! `by-scope` index, so one run reads its account and region with one paginated query.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spot_domain::AwsError;
use spot_domain::governance::enforcement::{AuthStatus, EnforcementRecord};
use spot_domain::governance::mode::Mode;
use spot_domain::governance::ports::{EnforcementStore, WasteStore};
use spot_domain::governance::waste::{WasteKind, WasteRecord, WasteStatus, record_key};
use spot_domain::pool::quarantine::Write;
use spot_domain::tags::Tags;

use super::put_versioned;
use crate::error::invalid_data;

/// Closed waste records and enforcement decisions stay this long for reports, then TTL removes them.
const RETENTION: TimeDelta = TimeDelta::days(90);
fn scope(account: &str, region: &str) -> String {
    format!("{account}#{region}")
}

async fn query_scope<T: DeserializeOwned>(
    client: &Client,
    table: &str,
    scope: String,
) -> Result<Vec<T>, AwsError> {
    super::query_scope(client, table, scope)
        .await?
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(|e| invalid_data("Query", e.to_string())))
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct WasteItem {
    resource: String,
    scope: String,
    account: String,
    region: String,
    resource_id: String,
    kind: WasteKind,
    status: WasteStatus,
    monthly_cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size_gb: Option<u32>,
    reason: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flagged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete_after: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_snapshot_id: Option<String>,
    version: u64,
    /// TTL: set once the record is closed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "chrono::serde::ts_seconds_option"
    )]
    expires_at: Option<DateTime<Utc>>,
}

impl From<&WasteRecord> for WasteItem {
    fn from(r: &WasteRecord) -> Self {
        Self {
            resource: r.key(),
            scope: scope(&r.account, &r.region),
            account: r.account.clone(),
            region: r.region.clone(),
            resource_id: r.resource_id.clone(),
            kind: r.kind,
            status: r.status,
            monthly_cost_usd: (r.monthly_cost_usd * 100.0).round() / 100.0,
            size_gb: r.size_gb,
            reason: r.reason.clone(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            flagged_at: r.flagged_at,
            delete_after: r.delete_after,
            closed_at: r.closed_at,
            backup_snapshot_id: r.backup_snapshot_id.clone(),
            version: r.version,
            expires_at: r.closed_at.map(|t| t + RETENTION),
        }
    }
}

impl From<WasteItem> for WasteRecord {
    fn from(i: WasteItem) -> Self {
        Self {
            account: i.account,
            region: i.region,
            resource_id: i.resource_id,
            kind: i.kind,
            status: i.status,
            monthly_cost_usd: i.monthly_cost_usd,
            size_gb: i.size_gb,
            reason: i.reason,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            flagged_at: i.flagged_at,
            delete_after: i.delete_after,
            closed_at: i.closed_at,
            backup_snapshot_id: i.backup_snapshot_id,
            version: i.version,
        }
    }
}

/// The waste table (env `WASTE_TABLE`), partition key `resource`.
#[derive(Debug, Clone)]
pub struct WasteTable {
    client: Client,
    table: String,
}

impl WasteTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl WasteTable {
    /// Every record of every account and region (`spotctl waste list`).
    pub async fn all(&self) -> Result<Vec<WasteRecord>, AwsError> {
        super::scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, WasteItem>(item)
                    .map(WasteRecord::from)
                    .map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect()
    }
}

impl WasteStore for WasteTable {
    async fn records(&self, account: &str, region: &str) -> Result<Vec<WasteRecord>, AwsError> {
        let items: Vec<WasteItem> =
            query_scope(&self.client, &self.table, scope(account, region)).await?;
        Ok(items.into_iter().map(WasteRecord::from).collect())
    }

    async fn put(&self, record: &WasteRecord) -> Result<Write, AwsError> {
        let item = serde_dynamo::to_item(WasteItem::from(record))
            .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        put_versioned(&self.client, &self.table, "resource", item, record.version).await
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct EnforcementItem {
    instance: String,
    scope: String,
    account: String,
    region: String,
    instance_id: String,
    auth_status: AuthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flagged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terminate_after: Option<DateTime<Utc>>,
    deadline_mode: Mode,
    reason: String,
    #[serde(default)]
    tags: Tags,
    decided_at: DateTime<Utc>,
    version: u64,
    #[serde(with = "chrono::serde::ts_seconds")]
    expires_at: DateTime<Utc>,
}

/// The enforcement table (env `ENFORCEMENT_TABLE`), partition key `instance`.
#[derive(Debug, Clone)]
pub struct EnforcementTable {
    client: Client,
    table: String,
}

impl EnforcementTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl EnforcementTable {
    /// Every record of every account and region (`spotctl enforcement list`).
    pub async fn all(&self) -> Result<Vec<EnforcementRecord>, AwsError> {
        super::scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, EnforcementItem>(item)
                    .map(EnforcementRecord::from)
                    .map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect()
    }
}

impl From<EnforcementItem> for EnforcementRecord {
    fn from(i: EnforcementItem) -> Self {
        Self {
            account: i.account,
            region: i.region,
            instance_id: i.instance_id,
            auth_status: i.auth_status,
            flagged_at: i.flagged_at,
            terminate_after: i.terminate_after,
            deadline_mode: i.deadline_mode,
            reason: i.reason,
            tags: i.tags,
            decided_at: i.decided_at,
            version: i.version,
        }
    }
}

impl EnforcementStore for EnforcementTable {
    async fn records(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<EnforcementRecord>, AwsError> {
        let items: Vec<EnforcementItem> =
            query_scope(&self.client, &self.table, scope(account, region)).await?;
        Ok(items.into_iter().map(EnforcementRecord::from).collect())
    }

    async fn put(&self, r: &EnforcementRecord) -> Result<Write, AwsError> {
        let item = serde_dynamo::to_item(EnforcementItem {
            instance: record_key(&r.account, &r.region, &r.instance_id),
            scope: scope(&r.account, &r.region),
            account: r.account.clone(),
            region: r.region.clone(),
            instance_id: r.instance_id.clone(),
            auth_status: r.auth_status,
            flagged_at: r.flagged_at,
            terminate_after: r.terminate_after,
            deadline_mode: r.deadline_mode,
            reason: r.reason.clone(),
            tags: r.tags.clone(),
            decided_at: r.decided_at,
            version: r.version,
            expires_at: r.decided_at + RETENTION,
        })
        .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        put_versioned(&self.client, &self.table, "instance", item, r.version).await
    }
}
