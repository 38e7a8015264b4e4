//! The quarantine table (`QUARANTINE_TABLE`): one item per pool, written with optimistic locking.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::pool::quarantine::{QuarantineStore, Write};
use spot_domain::{AwsError, PoolKey, QuarantineRecord, SignalKind};

use super::{put_versioned, scan_all};

use crate::error::{classify, invalid_data};

/// One item of the quarantine table; partition key `pool`, TTL attribute `expires_at`.
#[derive(Debug, Serialize, Deserialize)]
struct QuarantineItem {
    pool: String,
    region: String,
    az_id: String,
    instance_type: String,
    /// The EventBridge detail-type of the strongest signal in this quarantine.
    reason: String,
    interruptions: u32,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_event_id: String,
    #[serde(default)]
    recent_event_ids: Vec<String>,
    #[serde(with = "chrono::serde::ts_seconds")]
    expires_at: DateTime<Utc>,
    #[serde(with = "serde_dynamo::string_set", default)]
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    source_accounts: BTreeSet<String>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released_by: Option<String>,
}

impl From<&QuarantineRecord> for QuarantineItem {
    fn from(r: &QuarantineRecord) -> Self {
        Self {
            pool: r.pool.to_string(),
            region: r.pool.region().to_owned(),
            az_id: r.pool.az_id().to_owned(),
            instance_type: r.pool.instance_type().to_owned(),
            reason: r.reason.detail_type().to_owned(),
            interruptions: r.interruptions,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            last_event_id: r.last_event_id.clone(),
            recent_event_ids: r.recent_event_ids.clone(),
            expires_at: r.expires_at,
            source_accounts: r.source_accounts.clone(),
            version: r.version,
            released_at: r.released_at,
            released_by: r.released_by.clone(),
        }
    }
}

impl TryFrom<QuarantineItem> for QuarantineRecord {
    type Error = String;

    fn try_from(item: QuarantineItem) -> Result<Self, String> {
        Ok(Self {
            pool: item.pool.parse().map_err(|e| format!("{e}"))?,
            reason: SignalKind::from_reason(&item.reason)
                .ok_or_else(|| format!("{}: unknown reason `{}`", item.pool, item.reason))?,
            interruptions: item.interruptions,
            first_seen: item.first_seen,
            last_seen: item.last_seen,
            last_event_id: item.last_event_id,
            recent_event_ids: item.recent_event_ids,
            expires_at: item.expires_at,
            source_accounts: item.source_accounts,
            version: item.version,
            released_at: item.released_at,
            released_by: item.released_by,
        })
    }
}

fn record_from(operation: &str, item: Item) -> Result<QuarantineRecord, AwsError> {
    let parsed: QuarantineItem = serde_dynamo::from_item(item)
        .map_err(|e| invalid_data(operation, format!("quarantine item: {e}")))?;
    QuarantineRecord::try_from(parsed).map_err(|e| invalid_data(operation, e))
}

/// The quarantine table (env `QUARANTINE_TABLE`).
#[derive(Debug, Clone)]
pub struct QuarantineTable {
    client: Client,
    table: String,
}

impl QuarantineTable {
    /// One BatchGetItem of at most 100 pools; unprocessed keys (throttling) are asked again.
    async fn get_chunk(&self, chunk: &[PoolKey]) -> Result<Vec<QuarantineRecord>, AwsError> {
        let mut records = Vec::new();
        let mut keys: Vec<std::collections::HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|p| {
                std::collections::HashMap::from([(
                    "pool".to_owned(),
                    AttributeValue::S(p.to_string()),
                )])
            })
            .collect();
        for _ in 0..5 {
            if keys.is_empty() {
                break;
            }
            let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| invalid_data("BatchGetItem", e.to_string()))?;
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify("BatchGetItem", e))?;
            for item in answer
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                records.push(record_from("BatchGetItem", item.into())?);
            }
            keys = answer
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        if !keys.is_empty() {
            return Err(AwsError::new(
                spot_domain::AwsErrorKind::Transient,
                "BatchGetItem",
                None,
                "keys left unprocessed after 5 attempts",
            ));
        }
        Ok(records)
    }

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl QuarantineStore for QuarantineTable {
    async fn get(&self, pool: &PoolKey) -> Result<Option<QuarantineRecord>, AwsError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pool", AttributeValue::S(pool.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        answer
            .item
            .map(|item| record_from("GetItem", item.into()))
            .transpose()
    }

    async fn put(&self, record: &QuarantineRecord) -> Result<Write, AwsError> {
        let item: Item = serde_dynamo::to_item(QuarantineItem::from(record))
            .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        put_versioned(&self.client, &self.table, "pool", item, record.version).await
    }

    async fn get_many(&self, pools: &[PoolKey]) -> Result<Vec<QuarantineRecord>, AwsError> {
        // BatchGetItem takes 100 keys: a plan's few hundred pools are asked in one round of
        // calls at once (a failover's launch waits on them).
        let calls: Vec<_> = pools.chunks(100).map(|c| self.get_chunk(c)).collect();
        let chunks = futures::future::try_join_all(calls).await?;
        Ok(chunks.into_iter().flatten().collect())
    }

    async fn all(&self) -> Result<Vec<QuarantineRecord>, AwsError> {
        scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| record_from("Scan", item))
            .collect()
    }
}
