//! The accounts registry (`ACCOUNTS_TABLE`): the member accounts, their environment, role and
//! regions.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use spot_domain::{Account, AccountRegistry, AwsError};

use super::scan_all;
use crate::error::{classify, invalid_data};

/// One item of the accounts registry; partition key `account_id`.
#[derive(Debug, Serialize, Deserialize)]
struct AccountItem {
    account_id: String,
    environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(with = "serde_dynamo::string_set", default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    regions: Vec<String>,
}

/// The accounts registry (env `ACCOUNTS_TABLE`).
#[derive(Debug, Clone)]
pub struct AccountsTable {
    client: Client,
    table: String,
}

impl AccountsTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Registers (or replaces) an account.
    pub async fn put(&self, account: &Account) -> Result<(), AwsError> {
        let item: Item = serde_dynamo::to_item(AccountItem {
            account_id: account.account_id.clone(),
            environment: account.environment.to_string(),
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
            regions: account.regions.clone(),
        })
        .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.into()))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }
}

impl AccountRegistry for AccountsTable {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, AwsError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("account_id", AttributeValue::S(account_id.to_owned()))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(item) = answer.item else {
            return Ok(None);
        };
        account_from("GetItem", item.into()).map(Some)
    }

    async fn all(&self) -> Result<Vec<Account>, AwsError> {
        scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| account_from("Scan", item))
            .collect()
    }
}

fn account_from(operation: &str, item: Item) -> Result<Account, AwsError> {
    let item: AccountItem = serde_dynamo::from_item(item)
        .map_err(|e| invalid_data(operation, format!("accounts item: {e}")))?;
    let environment = item
        .environment
        .parse()
        .map_err(|e| invalid_data(operation, format!("accounts item {}: {e}", item.account_id)))?;
    Ok(Account {
        account_id: item.account_id,
        environment,
        role_arn: item.role_arn,
        external_id: item.external_id,
        regions: item.regions,
    })
}
