//! DynamoDB, one module per table. Item layouts (`docs/tables.md`) are private structs here;
//! callers see domain types.

mod accounts;
mod approvals;
mod audit;
mod control;
mod governance;
mod hibernation;
mod ledger;
mod quarantine;
mod schedules;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::pool::quarantine::Write;

use crate::error::{classify, invalid_data};

pub use accounts::AccountsTable;
pub use approvals::ApprovalsTable;
pub use audit::{AuditTable, STARTED};
pub use control::ControlTable;
pub use governance::{EnforcementTable, WasteTable};
pub use hibernation::{Hibernation, HibernationTable};
pub use ledger::{LedgerTable, SavingsInputs};
pub use quarantine::QuarantineTable;
pub use schedules::SchedulesTable;

/// Writes `record` as one item of `table` (PutItem, replacing any item of its key).
pub(crate) async fn put_as<T: serde::Serialize>(
    client: &Client,
    table: &str,
    record: &T,
) -> Result<(), AwsError> {
    let item: Item =
        serde_dynamo::to_item(record).map_err(|e| invalid_data("PutItem", e.to_string()))?;
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item.into()))
        .send()
        .await
        .map_err(|e| classify("PutItem", e))?;
    Ok(())
}

/// The item of `table` whose string key `key` is `value`, read as `T` (strongly consistent).
pub(crate) async fn get_as<T: serde::de::DeserializeOwned>(
    client: &Client,
    table: &str,
    key: &str,
    value: &str,
) -> Result<Option<T>, AwsError> {
    let answer = client
        .get_item()
        .table_name(table)
        .key(key, AttributeValue::S(value.to_owned()))
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

/// The `by-scope` index of the waste, enforcement and hibernation tables: `scope` is
/// `{account}#{region}`, so one run reads its account and region with one paginated query.
const SCOPE_INDEX: &str = "by-scope";

/// Every item of `table` whose `scope` is `scope` (the `by-scope` index, paginated).
pub(crate) async fn query_scope(
    client: &Client,
    table: &str,
    scope: String,
) -> Result<Vec<Item>, AwsError> {
    let items: Vec<_> = client
        .query()
        .table_name(table)
        .index_name(SCOPE_INDEX)
        .key_condition_expression("#scope = :scope")
        .expression_attribute_names("#scope", "scope")
        .expression_attribute_values(":scope", AttributeValue::S(scope))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("Query", e))?;
    Ok(items.into_iter().map(Item::from).collect())
}

/// Writes `records` as items of `table`, 25 per `BatchWriteItem` (its limit), and again what
/// DynamoDB left unprocessed (a few times, with a pause; then an error).
pub(crate) async fn put_all<T: serde::Serialize>(
    client: &Client,
    table: &str,
    records: &[T],
) -> Result<(), AwsError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in records.chunks(25) {
        let mut requests = chunk
            .iter()
            .map(|r| {
                let item: Item = serde_dynamo::to_item(r)
                    .map_err(|e| invalid_data("BatchWriteItem", e.to_string()))?;
                let put = PutRequest::builder()
                    .set_item(Some(item.into()))
                    .build()
                    .map_err(|e| invalid_data("BatchWriteItem", e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        for attempt in 0..5u32 {
            let answer = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|e| classify("BatchWriteItem", e))?;
            requests = answer
                .unprocessed_items
                .and_then(|mut left| left.remove(table))
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
            if attempt == 4 {
                return Err(AwsError::new(
                    spot_domain::AwsErrorKind::Transient,
                    "BatchWriteItem",
                    None,
                    format!("{} items left unprocessed", requests.len()),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
    Ok(())
}

/// Every item of `table` (paginated, strongly consistent).
pub(crate) async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>, AwsError> {
    scan_pages(client.scan().table_name(table)).await
}

/// Every item of `table` whose string attribute `key` starts with `prefix`.
pub(crate) async fn scan_prefix(
    client: &Client,
    table: &str,
    key: &str,
    prefix: &str,
) -> Result<Vec<Item>, AwsError> {
    scan_pages(
        client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(#key, :prefix)")
            .expression_attribute_names("#key", key)
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned())),
    )
    .await
}

async fn scan_pages(
    request: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
) -> Result<Vec<Item>, AwsError> {
    let items: Vec<_> = request
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("Scan", e))?;
    Ok(items.into_iter().map(Item::from).collect())
}

/// PutItem guarded by the optimistic lock: it succeeds only if the stored `version` is
/// `version - 1`, or, for version 1, if no item has this `key` yet.
pub(crate) async fn put_versioned(
    client: &Client,
    table: &str,
    key: &str,
    item: Item,
    version: u64,
) -> Result<Write, AwsError> {
    let request = client
        .put_item()
        .table_name(table)
        .set_item(Some(item.into()))
        .expression_attribute_names("#key", key);
    let request = match version.checked_sub(1).filter(|v| *v > 0) {
        None => request.condition_expression("attribute_not_exists(#key)"),
        Some(previous) => request
            .condition_expression("attribute_exists(#key) AND #version = :previous")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":previous", AttributeValue::N(previous.to_string())),
    };
    match request.send().await {
        Ok(_) => Ok(Write::Written),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Write::Conflict),
        Err(e) => Err(classify("PutItem", e)),
    }
}
