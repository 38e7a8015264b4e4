//! DynamoDB adapter, continued: the switch ledger (`SWITCH_TABLE`) and pending approvals
//! (`APPROVALS_TABLE`), keyed by the execution name (`switch_id`, `saga_id`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::ports::{Approvals, SwitchLedger};
use spot_domain::saga::{ApprovalRequest, SwitchRecord};

use crate::dynamodb::scan_all;
use crate::error::{classify, invalid_data};

/// Answered approval requests stay this long after they expire, then TTL removes them.
const APPROVAL_RETENTION: TimeDelta = TimeDelta::days(30);

#[derive(Debug, Clone)]
pub struct SwitchTable {
    client: Client,
    table: String,
}

impl SwitchTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl SwitchLedger for SwitchTable {
    async fn record(&self, record: &SwitchRecord) -> Result<(), AwsError> {
        let item: Item =
            serde_dynamo::to_item(record).map_err(|e| invalid_data("PutItem", e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into()))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    async fn get(&self, switch_id: &str) -> Result<Option<SwitchRecord>, AwsError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("switch_id", AttributeValue::S(switch_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        answer
            .item
            .map(|item| {
                serde_dynamo::from_item(Item::from(item))
                    .map_err(|e| invalid_data("GetItem", e.to_string()))
            })
            .transpose()
    }

    async fn lock(
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

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), AwsError> {
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

#[derive(Debug, Serialize, Deserialize)]
struct ApprovalItem {
    #[serde(flatten)]
    request: ApprovalRequest,
    /// TTL attribute.
    #[serde(with = "chrono::serde::ts_seconds")]
    ttl: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ApprovalsTable {
    client: Client,
    table: String,
}

impl ApprovalsTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl Approvals for ApprovalsTable {
    async fn request(&self, request: &ApprovalRequest) -> Result<(), AwsError> {
        let item: Item = serde_dynamo::to_item(ApprovalItem {
            request: request.clone(),
            ttl: request.expires_at + APPROVAL_RETENTION,
        })
        .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        // A redelivered request replaces the pending one (same switch, fresher token); an answered
        // one is never reopened.
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into()))
            .condition_expression("attribute_not_exists(saga_id) OR #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", AttributeValue::S("PENDING".into()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    async fn pending(&self) -> Result<Vec<ApprovalRequest>, AwsError> {
        let mut pending: Vec<ApprovalRequest> = scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ApprovalItem>(item)
                    .map(|i| i.request)
                    .map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        pending.retain(|r| r.status == "PENDING");
        pending.sort_by_key(|r| r.requested_at);
        Ok(pending)
    }

    async fn answer(
        &self,
        saga_id: &str,
        status: &str,
        by: &str,
        note: &str,
    ) -> Result<bool, AwsError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("saga_id", AttributeValue::S(saga_id.to_owned()))
            .update_expression("SET #status = :status, answered_by = :by, answer_note = :note")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.to_owned()))
            .expression_attribute_values(":by", AttributeValue::S(by.to_owned()))
            .expression_attribute_values(":note", AttributeValue::S(note.to_owned()))
            .expression_attribute_values(":pending", AttributeValue::S("PENDING".into()))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}
