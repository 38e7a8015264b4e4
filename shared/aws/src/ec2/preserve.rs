//! Keeping an interrupted instance's data: its EBS volumes survive its termination
//! (`DeleteOnTermination=false`) and carry who they came from and when, so `spotctl` lists them
//! and the waste scanner leaves them alone for their retention period.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDeviceSpecification, InstanceBlockDeviceMappingSpecification,
};
use chrono::{DateTime, SecondsFormat, Utc};
use spot_domain::AwsError;
use spot_domain::tags::{PRESERVED_AT_TAG, PRESERVED_TAG};

use super::{Ec2, not_found, tag};
use crate::error::classify;

/// What keeping the volumes came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Every volume outlives the instance and is tagged.
    Volumes(Vec<String>),
    /// The instance is gone: what it deleted on termination is gone too.
    InstanceGone,
}

impl Ec2 {
    /// Sets `DeleteOnTermination=false` on each of `volumes` (device, volume id) of `instance_id`
    /// in one call, then tags the volumes. Idempotent.
    pub async fn keep_volumes(
        &self,
        instance_id: &str,
        volumes: &[(String, String)],
        at: DateTime<Utc>,
    ) -> Result<Kept, AwsError> {
        if volumes.is_empty() {
            return Ok(Kept::Volumes(Vec::new()));
        }
        let mappings = volumes
            .iter()
            .map(|(device, _)| {
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(device)
                    .ebs(
                        EbsInstanceBlockDeviceSpecification::builder()
                            .delete_on_termination(false)
                            .build(),
                    )
                    .build()
            })
            .collect();
        match self
            .client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_block_device_mappings(Some(mappings))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(e.code()) => return Ok(Kept::InstanceGone),
            Err(e) => return Err(classify("ModifyInstanceAttribute", e)),
        }
        let ids: Vec<String> = volumes.iter().map(|(_, v)| v.clone()).collect();
        self.client
            .create_tags()
            .set_resources(Some(ids.clone()))
            .tags(tag(PRESERVED_TAG, instance_id))
            .tags(tag(
                PRESERVED_AT_TAG,
                &at.to_rfc3339_opts(SecondsFormat::Secs, true),
            ))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(Kept::Volumes(ids))
    }
}
