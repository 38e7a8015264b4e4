//! Auto Scaling adapter: what launch configurations use.

use aws_sdk_autoscaling::Client;
use spot_domain::AwsError;
use spot_domain::waste::Usage;

use crate::error::classify;

#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: Client,
}

impl AutoScaling {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Images and snapshots used by launch configurations (one paginated list).
    pub async fn launch_configuration_usage(&self, usage: &mut Usage) -> Result<(), AwsError> {
        let configurations: Vec<_> = self
            .client
            .describe_launch_configurations()
            .max_records(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeLaunchConfigurations", e))?;
        for c in &configurations {
            let by = || {
                format!(
                    "launch configuration {}",
                    c.launch_configuration_name().unwrap_or_default()
                )
            };
            if let Some(image) = c.image_id() {
                usage.use_image(image, by);
            }
            for mapping in c.block_device_mappings() {
                if let Some(snapshot) = mapping.ebs().and_then(|e| e.snapshot_id()) {
                    usage.use_snapshot(snapshot, by);
                }
            }
        }
        Ok(())
    }
}
