//! Pending approvals (`APPROVALS_TABLE`), keyed by the execution name (`saga_id`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::saga::approval::{ApprovalRequest, ApprovalStatus};

use super::scan_all;
use crate::error::{classify, invalid_data};

/// Answered approval requests stay this long after they expire, then TTL removes them.
const APPROVAL_RETENTION: TimeDelta = TimeDelta::days(30);

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

    pub async fn request(&self, request: &ApprovalRequest) -> Result<(), AwsError> {
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
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalStatus::Pending.as_str().into()),
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    /// The request of `saga_id`, whatever its status (strongly consistent).
    pub async fn get(&self, saga_id: &str) -> Result<Option<ApprovalRequest>, AwsError> {
        super::get_as(&self.client, &self.table, "saga_id", saga_id).await
    }

    pub async fn pending(&self) -> Result<Vec<ApprovalRequest>, AwsError> {
        let mut pending: Vec<ApprovalRequest> = scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ApprovalItem>(item)
                    .map(|i| i.request)
                    .map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        pending.retain(|r| r.status == ApprovalStatus::Pending);
        pending.sort_by_key(|r| r.requested_at);
        Ok(pending)
    }

    pub async fn answer(
        &self,
        saga_id: &str,
        status: ApprovalStatus,
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
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().to_owned()))
            .expression_attribute_values(":by", AttributeValue::S(by.to_owned()))
            .expression_attribute_values(":note", AttributeValue::S(note.to_owned()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ApprovalStatus::Pending.as_str().into()),
            )
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}
