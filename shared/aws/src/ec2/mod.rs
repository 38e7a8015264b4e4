//! EC2, one module per capability: where an instance runs ([`directory`], for the interruption
//! handler), the scheduled functions' inventory and actions ([`governance`]), and what the sagas do
//! with instances, images, addresses, launches and the market ([`instances`], [`images`],
//! [`addresses`], [`launch`], [`market`]). One [`Ec2`] per account and region.

mod addresses;
pub mod directory;
mod governance;
mod images;
mod instances;
mod launch;
mod market;
mod preserve;
mod savings;
pub mod schedule;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Tag;
use chrono::{DateTime, Utc};
use spot_domain::tags::Tags;

pub use directory::Ec2Directory;
pub use launch::NO_CAPACITY;
pub use preserve::Kept;
pub use savings::Running;

/// Page size of list calls (the API maximum where one exists).
const PAGE: i32 = 1000;

/// EC2 in one account and region.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
}

impl Ec2 {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every instance `filters` select, all pages (an id that no longer exists is simply absent).
    pub(crate) async fn instances_where(
        &self,
        filters: Vec<aws_sdk_ec2::types::Filter>,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, spot_domain::AwsError> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| crate::error::classify("DescribeInstances", e))?;
        Ok(reservations
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
            .collect())
    }
}

/// A filter `name` with `values`.
pub(crate) fn filter(name: &str, values: &[&str]) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

pub(crate) fn tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn time(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

pub(crate) fn not_found(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.ends_with(".NotFound") || c == "InvalidAllocationID.NotFound")
}
