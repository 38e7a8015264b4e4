//! The sagas' ledger (`LEDGER_TABLE`), keyed by `switch_id`, and the locks that keep one saga at a
//! time per instance or group (items keyed `lock#…` in the same table).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use spot_domain::AwsError;
use spot_domain::saga::failover::{self, FailoverRecord};
use spot_domain::saga::ledger::LedgerRecord;
use spot_domain::savings::{Accrual, KEY_PREFIX};

use crate::error::{classify, invalid_data};

/// The ledger table's items the savings refresh reads.
#[derive(Debug, Clone, Default)]
pub struct SavingsInputs {
    pub records: Vec<LedgerRecord>,
    pub failovers: Vec<FailoverRecord>,
    pub accruals: Vec<Accrual>,
}

/// The ledger table.
#[derive(Debug, Clone)]
pub struct LedgerTable {
    client: Client,
    table: String,
}

impl LedgerTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes `record` (a [`LedgerRecord`], or the failover's records, keyed the same way).
    pub async fn record<T: serde::Serialize>(&self, record: &T) -> Result<(), AwsError> {
        super::put_as(&self.client, &self.table, record).await
    }

    pub async fn get(&self, switch_id: &str) -> Result<Option<LedgerRecord>, AwsError> {
        self.get_as(switch_id).await
    }

    /// The item keyed `switch_id`, read as `T`.
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        switch_id: &str,
    ) -> Result<Option<T>, AwsError> {
        super::get_as(&self.client, &self.table, "switch_id", switch_id).await
    }

    /// Every item whose key starts with `prefix` (e.g. the failovers, `failover-`), read as `T`.
    /// A scan: for operators, not for a saga's hot path.
    pub async fn with_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<T>, AwsError> {
        super::scan_prefix(&self.client, &self.table, "switch_id", prefix)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect()
    }

    /// Every switch and swapped member's record (`spotctl ledger list`), newest first; the
    /// table's other items (locks, failovers, roles, notes) are not switch records and are left out.
    pub async fn switches(&self) -> Result<Vec<LedgerRecord>, AwsError> {
        let mut all: Vec<LedgerRecord> = super::scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .filter(|item| item.get("source_instance_id").is_some() && item.get("status").is_some())
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        all.sort_by_key(|r| std::cmp::Reverse(r.at));
        Ok(all)
    }

    /// What the savings refresh reads, with one scan: the switch and member records, the
    /// failovers and the accruals (locks, roles and notes left out).
    pub async fn savings_inputs(&self) -> Result<SavingsInputs, AwsError> {
        let mut inputs = SavingsInputs::default();
        for item in super::scan_all(&self.client, &self.table).await? {
            let key = match item.get("switch_id") {
                Some(serde_dynamo::AttributeValue::S(key)) => key.clone(),
                _ => String::new(),
            };
            let read = |e: serde_dynamo::Error| invalid_data("Scan", format!("{key}: {e}"));
            if key.starts_with(KEY_PREFIX) {
                inputs
                    .accruals
                    .push(serde_dynamo::from_item(item).map_err(read)?);
            } else if key.starts_with(failover::EXECUTION_PREFIX) && item.get("status").is_some() {
                inputs
                    .failovers
                    .push(serde_dynamo::from_item(item).map_err(read)?);
            } else if item.get("source_instance_id").is_some() && item.get("status").is_some() {
                inputs
                    .records
                    .push(serde_dynamo::from_item(item).map_err(read)?);
            }
        }
        Ok(inputs)
    }

    /// Every savings accrual (`spotctl savings`).
    pub async fn accruals(&self) -> Result<Vec<Accrual>, AwsError> {
        self.with_prefix(KEY_PREFIX).await
    }

    /// Writes `accrual` if the stored one is still the revision it was read at (or absent, for a
    /// new line), with the revision incremented; `false` when another refresh wrote it first
    /// (then this one's interval is theirs, and adding it again would count it twice).
    pub async fn put_accrual(&self, accrual: &Accrual) -> Result<bool, AwsError> {
        let read_at = accrual.revision;
        let mut next = accrual.clone();
        next.revision = read_at + 1;
        let item: serde_dynamo::Item =
            serde_dynamo::to_item(&next).map_err(|e| invalid_data("PutItem", e.to_string()))?;
        let write = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into()));
        let write = if read_at == 0 {
            write.condition_expression("attribute_not_exists(switch_id)")
        } else {
            write
                .condition_expression("revision = :read")
                .expression_attribute_values(":read", AttributeValue::N(read_at.to_string()))
        };
        match write.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    pub async fn lock(
        &self,
        key: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("switch_id", AttributeValue::S(key.to_owned()))
            .item(LOCK_OWNER, AttributeValue::S(owner.to_owned()))
            .item(LOCK_TTL, AttributeValue::N(until.timestamp().to_string()))
            // Free, already ours (a redelivered step), or left by a switch that can no longer run.
            .condition_expression(
                "attribute_not_exists(switch_id) OR #owner = :owner OR #ttl <= :now",
            )
            .expression_attribute_names("#owner", LOCK_OWNER)
            .expression_attribute_names("#ttl", LOCK_TTL)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match answer {
            Ok(_) => Ok(None),
            Err(e) => {
                let holder = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                        Some(c.item().and_then(|i| i.get(LOCK_OWNER)).and_then(|o| o.as_s().ok()).cloned().unwrap_or_default())
                    }
                    _ => None,
                };
                match holder {
                    Some(holder) => Ok(Some(holder)),
                    None => Err(classify("PutItem", e)),
                }
            }
        }
    }

    /// Of the lock `keys`, those held now, with their holder (`BatchGetItem`, 100 keys a call).
    pub async fn held(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut held = std::collections::BTreeMap::new();
        for chunk in keys.chunks(100) {
            let mut ask = KeysAndAttributes::builder().consistent_read(true);
            for key in chunk {
                ask = ask.keys([("switch_id".to_owned(), AttributeValue::S(key.clone()))].into());
            }
            let mut request = Some(
                ask.build()
                    .map_err(|e| invalid_data("BatchGetItem", e.to_string()))?,
            );
            while let Some(keys) = request.take() {
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", e))?;
                for item in answer
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                    let live = item
                        .get(LOCK_TTL)
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<i64>().ok())
                        .is_some_and(|ttl| ttl > now.timestamp());
                    if let (Some(key), Some(owner), true) =
                        (text("switch_id"), text(LOCK_OWNER), live)
                    {
                        held.insert(key, owner);
                    }
                }
                request = answer
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(held)
    }

    pub async fn unlock(&self, key: &str, owner: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("switch_id", AttributeValue::S(key.to_owned()))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", LOCK_OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Not ours, or already released.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("DeleteItem", e)),
        }
    }
}

/// Attribute names of the per-instance lock items the ledger table also holds (key `lock#…`).
const LOCK_OWNER: &str = "owner";
/// The table's TTL attribute (ledger records have none and stay).
const LOCK_TTL: &str = "ttl";
