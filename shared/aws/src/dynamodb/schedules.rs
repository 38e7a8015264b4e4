//! Hibernation schedules (`SCHEDULES_TABLE`): one item per schedule, partition key `name`, stored
//! as `spot_domain::hibernation::Schedule` (its week as the 168-character matrix). A schedule is
//! checked before it is written and again when it is read: a stored one this version cannot use is
//! an `InvalidData` error, never a guess.

use aws_sdk_dynamodb::Client;
use serde_dynamo::Item;
use spot_domain::AwsError;
use spot_domain::hibernation::Schedule;

use super::scan_all;
use crate::error::invalid_data;

#[derive(Debug, Clone)]
pub struct SchedulesTable {
    client: Client,
    table: String,
}

impl SchedulesTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes (or replaces) a schedule, once it is checked.
    pub async fn put(&self, schedule: &Schedule) -> Result<(), AwsError> {
        schedule
            .check()
            .map_err(|e| invalid_data("PutItem", e.to_string()))?;
        super::put_as(&self.client, &self.table, schedule).await
    }

    pub async fn get(&self, name: &str) -> Result<Option<Schedule>, AwsError> {
        let found: Option<Schedule> =
            super::get_as(&self.client, &self.table, "name", name).await?;
        found.map(|s| checked("GetItem", s)).transpose()
    }

    /// Every schedule, by name.
    pub async fn all(&self) -> Result<Vec<Schedule>, AwsError> {
        let mut all = scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| schedule_from("Scan", item))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Every schedule by name, each usable or refused with why: one bad item leaves only its
    /// own targets alone.
    pub async fn by_name(&self) -> Result<spot_domain::hibernation::plan::Schedules, AwsError> {
        Ok(scan_all(&self.client, &self.table)
            .await?
            .into_iter()
            .map(|item| {
                let name = match item.get("name") {
                    Some(serde_dynamo::AttributeValue::S(name)) => name.clone(),
                    _ => String::new(),
                };
                let schedule = schedule_from("Scan", item).map_err(|e| e.message);
                (name, schedule)
            })
            .collect())
    }
}

fn schedule_from(operation: &str, item: Item) -> Result<Schedule, AwsError> {
    let schedule: Schedule = serde_dynamo::from_item(item)
        .map_err(|e| invalid_data(operation, format!("schedules item: {e}")))?;
    checked(operation, schedule)
}

/// A stored schedule this version can use, or `InvalidData` saying why not.
fn checked(operation: &str, schedule: Schedule) -> Result<Schedule, AwsError> {
    schedule
        .check()
        .map_err(|e| invalid_data(operation, format!("schedule {}: {e}", schedule.name)))?;
    Ok(schedule)
}
