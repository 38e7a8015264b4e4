//! The control table (`CONTROL_TABLE`): pauses, the circuit breaker's counts, shadow runs and
//! promotions. Partition key `pk`, sort key `sk`:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | a pause | `pause` | `all`, `account#<id>`, `function#<name>` |
//! | an account's failed live sagas | `breaker#<account>` | `count` |
//! | an account's shadow runs of an activity | `shadow#<account>` | `<activity>` |
//! | a promotion to live | `promotion#<account>` | `<activity>` |
//!
//! Every pause is one item of one partition, so a function reads them all with one `Query`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::guard::{Activity, Cause, Failure, Pause, Pauses, Promotion, Scope, ShadowRecord};

use crate::error::{classify, invalid_data};

const PAUSE: &str = "pause";

#[derive(Debug, Serialize, Deserialize)]
struct PauseItem {
    pk: String,
    sk: String,
    cause: Cause,
    by: String,
    reason: String,
    at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failures: Vec<Failure>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ShadowItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    record: ShadowRecord,
}

#[derive(Debug, Serialize, Deserialize)]
struct PromotionItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    promotion: Promotion,
}

#[derive(Debug, Deserialize)]
struct BreakerItem {
    #[serde(default)]
    failures: Vec<Failure>,
}

/// A pause item as the domain reads it.
fn pause_from(operation: &str, item: Item) -> Result<Pause, AwsError> {
    let item: PauseItem = serde_dynamo::from_item(item)
        .map_err(|e| invalid_data(operation, format!("pause item: {e}")))?;
    let scope = Scope::from_key(&item.sk)
        .ok_or_else(|| invalid_data(operation, format!("pause item `{}`", item.sk)))?;
    Ok(Pause {
        scope,
        cause: item.cause,
        by: item.by,
        reason: item.reason,
        at: item.at,
        failures: item.failures,
    })
}

fn breaker_key(account: &str) -> String {
    format!("breaker#{account}")
}

fn shadow_key(account: &str) -> String {
    format!("shadow#{account}")
}

fn promotion_key(account: &str) -> String {
    format!("promotion#{account}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn conditional_failed<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// The control table (env `CONTROL_TABLE`).
#[derive(Debug, Clone)]
pub struct ControlTable {
    client: Client,
    table: String,
}

impl ControlTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Every pause in force: one strongly consistent `Query`.
    pub async fn pauses(&self) -> Result<Pauses, AwsError> {
        self.partition(PAUSE)
            .await?
            .into_iter()
            .map(|item| pause_from("Query", item))
            .collect::<Result<_, _>>()
            .map(Pauses)
    }

    /// Puts `pause` in force unless one of its scope already is (the first one stays, with its
    /// author and reason). True when this call paused.
    pub async fn pause(&self, pause: &Pause) -> Result<bool, AwsError> {
        let item: Item = serde_dynamo::to_item(PauseItem {
            pk: PAUSE.into(),
            sk: pause.scope.key(),
            cause: pause.cause,
            by: pause.by.clone(),
            reason: pause.reason.clone(),
            at: pause.at,
            failures: pause.failures.clone(),
        })
        .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    /// Lifts the pause of `scope`; the pause lifted, if there was one.
    pub async fn resume(&self, scope: &Scope) -> Result<Option<Pause>, AwsError> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(PAUSE))
            .key("sk", s(scope.key()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify("DeleteItem", e))?;
        answer
            .attributes
            .map(|item| pause_from("DeleteItem", Item::from(item)))
            .transpose()
    }

    /// Counts one failed live saga of `account` (once per saga, however often it is delivered);
    /// the failures counted since the last success or resume.
    pub async fn count_failure(
        &self,
        account: &str,
        failure: &Failure,
    ) -> Result<Vec<Failure>, AwsError> {
        let one = serde_dynamo::to_attribute_value(vec![failure.clone()])
            .map_err(|e| invalid_data("UpdateItem", e.to_string()))?;
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(breaker_key(account)))
            .key("sk", s("count"))
            .update_expression(
                "SET failures = list_append(if_not_exists(failures, :none), :one) ADD saga_ids :id",
            )
            .condition_expression("attribute_not_exists(saga_ids) OR NOT contains(saga_ids, :saga)")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":one", one)
            .expression_attribute_values(":id", AttributeValue::Ss(vec![failure.saga_id.clone()]))
            .expression_attribute_values(":saga", s(&failure.saga_id))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match answer {
            Ok(answer) => answer.attributes.map(Item::from),
            Err(e) if conditional_failed(&e) => self.breaker_item(account).await?,
            Err(e) => return Err(classify("UpdateItem", e)),
        };
        let Some(item) = item else {
            return Ok(Vec::new());
        };
        let item: BreakerItem = serde_dynamo::from_item(item)
            .map_err(|e| invalid_data("UpdateItem", format!("breaker item: {e}")))?;
        Ok(item.failures)
    }

    async fn breaker_item(&self, account: &str) -> Result<Option<Item>, AwsError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(breaker_key(account)))
            .key("sk", s("count"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(answer.item.map(Item::from))
    }

    /// The failures counted for `account` (a completed saga or a resume clears them).
    pub async fn failures(&self, account: &str) -> Result<Vec<Failure>, AwsError> {
        let Some(item) = self.breaker_item(account).await? else {
            return Ok(Vec::new());
        };
        let item: BreakerItem = serde_dynamo::from_item(item)
            .map_err(|e| invalid_data("GetItem", format!("breaker item: {e}")))?;
        Ok(item.failures)
    }

    /// A completed live saga (or an operator's resume): the count starts again from zero.
    pub async fn clear_failures(&self, account: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(breaker_key(account)))
            .key("sk", s("count"))
            .send()
            .await
            .map_err(|e| classify("DeleteItem", e))?;
        Ok(())
    }

    /// One more shadow run of `activity` in `account` at `at` (the first one starts its period).
    pub async fn shadow_run(
        &self,
        account: &str,
        activity: Activity,
        at: DateTime<Utc>,
    ) -> Result<(), AwsError> {
        let at: AttributeValue = serde_dynamo::to_attribute_value(at)
            .map_err(|e| invalid_data("UpdateItem", e.to_string()))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(shadow_key(account)))
            .key("sk", s(activity.as_str()))
            .update_expression(
                "SET since = if_not_exists(since, :at), #last = :at, account_id = :account, \
                 activity = :activity ADD runs :one",
            )
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":account", s(account))
            .expression_attribute_values(":activity", s(activity.as_str()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(())
    }

    /// Every activity `account` ran in shadow.
    pub async fn shadows(&self, account: &str) -> Result<Vec<ShadowRecord>, AwsError> {
        self.partition(&shadow_key(account))
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ShadowItem>(item)
                    .map(|i| i.record)
                    .map_err(|e| invalid_data("Query", format!("shadow item: {e}")))
            })
            .collect()
    }

    /// Someone printed `account`'s shadow report at `at`.
    pub async fn reviewed(&self, account: &str, at: DateTime<Utc>) -> Result<(), AwsError> {
        let at: AttributeValue = serde_dynamo::to_attribute_value(at)
            .map_err(|e| invalid_data("UpdateItem", e.to_string()))?;
        for shadow in self.shadows(account).await? {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(shadow_key(account)))
                .key("sk", s(shadow.activity.as_str()))
                .update_expression("SET reviewed_at = :at")
                .expression_attribute_values(":at", at.clone())
                .send()
                .await
                .map_err(|e| classify("UpdateItem", e))?;
        }
        Ok(())
    }

    /// Records an operator's promotion (replacing an earlier one of the same activity).
    pub async fn promote(&self, promotion: &Promotion) -> Result<(), AwsError> {
        super::put_as(
            &self.client,
            &self.table,
            &PromotionItem {
                pk: promotion_key(&promotion.account_id),
                sk: promotion.activity.as_str().into(),
                promotion: promotion.clone(),
            },
        )
        .await
    }

    /// Whether `account` was promoted for `activity`.
    pub async fn promotion(
        &self,
        account: &str,
        activity: Activity,
    ) -> Result<Option<Promotion>, AwsError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(promotion_key(account)))
            .key("sk", s(activity.as_str()))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        answer
            .item
            .map(|item| {
                serde_dynamo::from_item::<_, PromotionItem>(Item::from(item))
                    .map(|i| i.promotion)
                    .map_err(|e| invalid_data("GetItem", format!("promotion item: {e}")))
            })
            .transpose()
    }

    /// Every promotion of `account`.
    pub async fn promotions(&self, account: &str) -> Result<Vec<Promotion>, AwsError> {
        self.partition(&promotion_key(account))
            .await?
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, PromotionItem>(item)
                    .map(|i| i.promotion)
                    .map_err(|e| invalid_data("Query", format!("promotion item: {e}")))
            })
            .collect()
    }

    async fn partition(&self, pk: &str) -> Result<Vec<Item>, AwsError> {
        let items: Vec<_> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("Query", e))?;
        Ok(items.into_iter().map(Item::from).collect())
    }
}
