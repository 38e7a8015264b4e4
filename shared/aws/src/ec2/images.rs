//! The switch's image of its source: made once per switch (found by name on a retry), watched
//! until available, removed by the rollback with its snapshots.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, TagSpecification};
use spot_domain::AwsError;
use spot_domain::tags::{MANAGED_BY, SWITCH_TAG};

use super::{Ec2, not_found, tag};
use crate::error::{classify, invalid_data};

/// The saga's images are named after the switch, so a retried step finds its own.
fn image_name(switch_id: &str) -> String {
    format!("spot-optimizer-switch-{switch_id}")
}

impl Ec2 {
    pub async fn find_image(&self, switch_id: &str) -> Result<Option<String>, AwsError> {
        let existing = self
            .client
            .describe_images()
            .owners("self")
            .filters(
                Filter::builder()
                    .name("name")
                    .values(image_name(switch_id))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        Ok(existing
            .images()
            .iter()
            .find_map(|i| i.image_id())
            .map(str::to_owned))
    }

    pub async fn image(
        &self,
        switch_id: &str,
        instance_id: &str,
        no_reboot: bool,
    ) -> Result<String, AwsError> {
        if let Some(id) = self.find_image(switch_id).await? {
            return Ok(id);
        }
        let name = image_name(switch_id);
        let marks = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .tags(tag(SWITCH_TAG, switch_id))
                .tags(tag(MANAGED_BY.0, MANAGED_BY.1))
                .build()
        };
        let created = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(&name)
            .description(format!(
                "spot-optimizer: image of {instance_id} for its Spot clone"
            ))
            .no_reboot(no_reboot)
            .tag_specifications(marks(ResourceType::Image))
            .tag_specifications(marks(ResourceType::Snapshot))
            .send()
            .await
            .map_err(|e| classify("CreateImage", e))?;
        created
            .image_id()
            .map(str::to_owned)
            .ok_or_else(|| invalid_data("CreateImage", "no image id"))
    }

    pub async fn image_state(
        &self,
        image_id: &str,
    ) -> Result<Option<(String, Vec<String>)>, AwsError> {
        let answer = match self
            .client
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) if not_found(e.code()) || e.code() == Some("InvalidAMIID.Unavailable") => {
                return Ok(None);
            }
            Err(e) => return Err(classify("DescribeImages", e)),
        };
        Ok(answer.images().first().map(|i| {
            (
                i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                i.block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
                    .collect(),
            )
        }))
    }

    /// Deregisters the image (when there is one left) and deletes the snapshots; "already gone"
    /// is done.
    pub async fn remove_image(
        &self,
        image_id: Option<&str>,
        snapshot_ids: &[String],
    ) -> Result<(), AwsError> {
        if let Some(image_id) = image_id {
            match self
                .client
                .deregister_image()
                .image_id(image_id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if not_found(e.code()) => {}
                Err(e) => return Err(classify("DeregisterImage", e)),
            }
        }
        for snapshot in snapshot_ids {
            match self
                .client
                .delete_snapshot()
                .snapshot_id(snapshot)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if not_found(e.code()) => {}
                Err(e) => return Err(classify("DeleteSnapshot", e)),
            }
        }
        Ok(())
    }

    /// The image of `switch_id` (carrying its mark) and its snapshots, if it exists.
    pub async fn marked_image(
        &self,
        switch_id: &str,
    ) -> Result<Option<(String, Vec<String>)>, AwsError> {
        let answer = self
            .client
            .describe_images()
            .owners("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{SWITCH_TAG}"))
                    .values(switch_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        Ok(answer.images().iter().find_map(|i| {
            Some((
                i.image_id()?.to_owned(),
                i.block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
                    .collect(),
            ))
        }))
    }

    /// Snapshots carrying `switch_id`'s mark (an image's, left when it was deregistered).
    pub async fn marked_snapshots(&self, switch_id: &str) -> Result<Vec<String>, AwsError> {
        let snapshots: Vec<_> = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{SWITCH_TAG}"))
                    .values(switch_id)
                    .build(),
            )
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSnapshots", e))?;
        Ok(snapshots
            .iter()
            .filter_map(|s| s.snapshot_id().map(str::to_owned))
            .collect())
    }
}
