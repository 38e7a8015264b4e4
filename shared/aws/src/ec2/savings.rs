//! EC2 for the savings refresh: what the lines' instances are doing, and what the switches keep
//! (the stopped sources' volumes, the switch images' snapshots). Read only; every list call is a
//! filter, so an id that no longer exists is simply absent from the answer.

use aws_sdk_ec2::types::Filter;
use spot_domain::AwsError;
use spot_domain::governance::waste::{Snapshot, Volume};
use spot_domain::savings::Seen;
use spot_domain::tags::SWITCH_TAG;

use super::{Ec2, PAGE};
use crate::error::classify;

/// An instance as the refresh sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub instance_id: String,
    pub seen: Seen,
    pub instance_type: String,
    pub az_name: String,
}

/// Filter values per call: EC2 takes up to 200.
const VALUES: usize = 200;

impl Ec2 {
    /// The state of each of `ids` that EC2 still knows (terminated ones as [`Seen::Gone`]).
    pub async fn seen(&self, ids: &[String]) -> Result<Vec<Running>, AwsError> {
        let mut seen = Vec::new();
        for chunk in ids.chunks(VALUES) {
            let found = self
                .instances_where(vec![values("instance-id", chunk)])
                .await?;
            seen.extend(found.iter().filter_map(|i| {
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str());
                Some(Running {
                    instance_id: i.instance_id()?.to_owned(),
                    seen: match state {
                        Some("running") => Seen::Running,
                        Some("terminated" | "shutting-down") | None => Seen::Gone,
                        Some(_) => Seen::Idle,
                    },
                    instance_type: i.instance_type()?.as_str().to_owned(),
                    az_name: i.placement()?.availability_zone()?.to_owned(),
                })
            }));
        }
        Ok(seen)
    }

    /// The volumes attached to any of `instance_ids` (a stopped source's, kept by its switch).
    pub async fn volumes_of(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<(String, Volume)>, AwsError> {
        let mut kept = Vec::new();
        for chunk in instance_ids.chunks(VALUES) {
            let volumes: Vec<_> = self
                .client
                .describe_volumes()
                .filters(values("attachment.instance-id", chunk))
                .max_results(PAGE)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeVolumes", e))?;
            for v in &volumes {
                let Some(volume) = super::governance::volume(v) else {
                    continue;
                };
                for attachment in v.attachments() {
                    if let Some(instance) = attachment.instance_id() {
                        kept.push((instance.to_owned(), volume.clone()));
                    }
                }
            }
        }
        Ok(kept)
    }

    /// The snapshots of the switches `switch_ids` (their images', tagged with the switch id), by
    /// switch id.
    pub async fn switch_snapshots(
        &self,
        switch_ids: &[String],
    ) -> Result<Vec<(String, Snapshot)>, AwsError> {
        let mut kept = Vec::new();
        for chunk in switch_ids.chunks(VALUES) {
            let snapshots: Vec<_> = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .filters(values(&format!("tag:{SWITCH_TAG}"), chunk))
                .max_results(PAGE)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeSnapshots", e))?;
            for s in &snapshots {
                let Some(snapshot) = super::governance::snapshot(s) else {
                    continue;
                };
                if let Some(switch) = snapshot.tags.get(SWITCH_TAG) {
                    kept.push((switch.clone(), snapshot.clone()));
                }
            }
        }
        Ok(kept)
    }
}

fn values(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}
