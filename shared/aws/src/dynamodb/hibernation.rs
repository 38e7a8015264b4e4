//! The hibernation reconciler's state (`HIBERNATION_TABLE`), partition key `target`, index
//! `by-scope`: one item per scheduled target (`account#region#resource`, see
//! `spot_domain::hibernation::state`) and one per operator override (`override#…`, removed by TTL
//! a week after it ends). The reconciler reads an account and region with one query and writes
//! only the targets that changed, 25 per call.

use aws_sdk_dynamodb::Client;
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::hibernation::state::{OVERRIDE_PREFIX, OverrideItem, TargetState, scope};

use crate::error::invalid_data;

#[derive(Debug, Clone)]
pub struct HibernationTable {
    client: Client,
    table: String,
}

/// What the table holds for one account and region, or for all.
#[derive(Debug, Clone, Default)]
pub struct Hibernation {
    pub targets: Vec<TargetState>,
    pub overrides: Vec<OverrideItem>,
}

impl HibernationTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The targets and overrides of one account and region.
    pub async fn scope(&self, account: &str, region: &str) -> Result<Hibernation, AwsError> {
        split(
            "Query",
            super::query_scope(&self.client, &self.table, scope(account, region)).await?,
        )
    }

    /// Everything (for `spotctl schedule savings`).
    pub async fn all(&self) -> Result<Hibernation, AwsError> {
        split("Scan", super::scan_all(&self.client, &self.table).await?)
    }

    /// Writes the targets that changed.
    pub async fn put_targets(&self, targets: &[TargetState]) -> Result<(), AwsError> {
        super::put_all(&self.client, &self.table, targets).await
    }

    /// Writes (or replaces) an override, checked by the caller.
    pub async fn put_override(&self, item: &OverrideItem) -> Result<(), AwsError> {
        super::put_as(&self.client, &self.table, item).await
    }
}

fn split(operation: &str, items: Vec<Item>) -> Result<Hibernation, AwsError> {
    let mut out = Hibernation::default();
    for item in items {
        let is_override = matches!(
            item.get("target"),
            Some(serde_dynamo::AttributeValue::S(key)) if key.starts_with(OVERRIDE_PREFIX)
        );
        let bad =
            |e: serde_dynamo::Error| invalid_data(operation, format!("hibernation item: {e}"));
        if is_override {
            out.overrides
                .push(serde_dynamo::from_item(item).map_err(bad)?);
        } else {
            out.targets
                .push(serde_dynamo::from_item(item).map_err(bad)?);
        }
    }
    Ok(out)
}
