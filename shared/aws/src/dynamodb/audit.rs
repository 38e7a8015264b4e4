//! The audit table (`AUDIT_TABLE`): every destructive action, recorded before it is taken.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog, AuditRecord};
use spot_domain::governance::mode::Mode;

use crate::error::{classify, invalid_data};

#[derive(Debug, Serialize, Deserialize)]
struct AuditItem {
    #[serde(flatten)]
    entry: AuditEntryItem,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditEntryItem {
    action_id: String,
    function: String,
    action: String,
    account: String,
    region: String,
    resource_id: String,
    reason: String,
    pre_state: String,
    mode: Mode,
    request_id: String,
    at: DateTime<Utc>,
}

/// The audit table (env `AUDIT_TABLE`), partition key `action_id`: one item per destructive action,
/// written before the action and completed after it.
#[derive(Debug, Clone)]
pub struct AuditTable {
    client: Client,
    table: String,
}

impl AuditTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl AuditTable {
    /// The whole trail (`spotctl audit list`), newest first.
    pub async fn all(&self) -> Result<Vec<AuditRecord>, AwsError> {
        let mut all = super::scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| invalid_data("Scan", e.to_string()))
            })
            .collect::<Result<Vec<AuditRecord>, _>>()?;
        all.sort_by_key(|r| std::cmp::Reverse(r.at));
        Ok(all)
    }
}

pub const STARTED: &str = "started";

impl AuditLog for AuditTable {
    async fn begin(&self, e: &AuditEntry) -> Result<AuditBegin, AwsError> {
        let item = serde_dynamo::to_item(AuditItem {
            entry: AuditEntryItem {
                action_id: e.action_id.clone(),
                function: e.function.clone(),
                action: e.action.clone(),
                account: e.account.clone(),
                region: e.region.clone(),
                resource_id: e.resource_id.clone(),
                reason: e.reason.clone(),
                pre_state: e.pre_state.clone(),
                mode: e.mode,
                request_id: e.request_id.clone(),
                at: e.at,
            },
            outcome: STARTED.into(),
            finished_at: None,
        })
        .map_err(|err| invalid_data("PutItem", err.to_string()))?;
        let answer = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Item::into(item)))
            .condition_expression("attribute_not_exists(action_id)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match answer {
            Ok(_) => Ok(AuditBegin::Proceed),
            Err(err) => {
                let done = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item(),
                    _ => None,
                }
                .and_then(|old| old.get("outcome"))
                .and_then(|o| o.as_s().ok())
                .is_some_and(|o| o == "done");
                match err.code() {
                    Some("ConditionalCheckFailedException") if done => Ok(AuditBegin::AlreadyDone),
                    // An earlier attempt that did not finish: the action is idempotent, take it again.
                    Some("ConditionalCheckFailedException") => Ok(AuditBegin::Proceed),
                    _ => Err(classify("PutItem", err)),
                }
            }
        }
    }

    async fn finish(&self, action_id: &str, outcome: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("action_id", AttributeValue::S(action_id.to_owned()))
            .update_expression("SET outcome = :outcome, finished_at = :at")
            .condition_expression("attribute_exists(action_id)")
            .expression_attribute_values(":outcome", AttributeValue::S(outcome.to_owned()))
            .expression_attribute_values(":at", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(())
    }
}
