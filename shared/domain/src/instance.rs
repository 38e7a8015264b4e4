//! What an instance is, as the rules see it, and how one is launched: the adapters fill these in
//! from EC2's answers; the sagas decide on them.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::account::Access;
use crate::error::AwsError;
use crate::tags::Tags;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub device_name: String,
    pub volume_id: String,
    pub size_gb: u32,
    pub volume_type: String,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticIp {
    pub allocation_id: String,
    pub public_ip: String,
}

/// Everything the clone inherits from the source, read by the plan step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub state: String,
    /// `spot` for a Spot instance.
    pub lifecycle: Option<String>,
    pub architecture: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub az_name: String,
    pub az_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub iam_instance_profile_arn: Option<String>,
    pub key_name: Option<String>,
    pub ebs_optimized: bool,
    /// `ebs` or `instance-store`.
    pub root_device_type: String,
    pub block_devices: Vec<BlockDevice>,
    pub elastic_ip: Option<ElasticIp>,
    pub tags: Tags,
    /// The source's instance metadata service settings; the clone gets the same (an IMDSv2-only
    /// source must never get an IMDSv1 clone). `None` when EC2 did not say.
    #[serde(default)]
    pub metadata: Option<MetadataPosture>,
    /// Detailed (1-minute) CloudWatch monitoring.
    #[serde(default)]
    pub detailed_monitoring: bool,
    /// Termination protection (`DisableApiTermination`): a Spot instance cannot carry it.
    #[serde(default)]
    pub termination_protection: bool,
    /// Stop protection (`DisableApiStop`): a Spot instance cannot carry it.
    #[serde(default)]
    pub stop_protection: bool,
    /// What its OS has shown it runs with; `None` when EC2 did not describe its type.
    #[serde(default)]
    pub drivers: Option<Drivers>,
    /// Its billing platform, as EC2's `PlatformDetails` names it (`Linux/UNIX`, `Windows`,
    /// `Red Hat Enterprise Linux`…); `None` when EC2 did not say.
    #[serde(default)]
    pub platform: Option<String>,
    /// The image it was launched from: a failover's replacement of a switched workload boots
    /// from it (the switch's own image, kept after the switch).
    #[serde(default)]
    pub image_id: Option<String>,
}

/// The platform the optimizer prices: the on-demand catalog and the Spot prices it reads are
/// Linux/UNIX ones.
pub const PRICED_PLATFORM: &str = "Linux/UNIX";

impl SourceInstance {
    /// Why it cannot be priced, if it cannot: another platform pays another price (Windows, RHEL
    /// and SUSE carry a licence in both prices), so its saving would be wrong.
    pub fn unpriced_platform(&self) -> Option<String> {
        match self.platform.as_deref() {
            Some(p) if p != PRICED_PLATFORM => Some(format!(
                "runs {p}: only {PRICED_PLATFORM} is priced, on demand and on Spot"
            )),
            _ => None,
        }
    }
}

/// What an instance's OS has shown it can run with, judged by where it runs now (AWS keeps no
/// driver list for an image): a type that needs ENA, NVMe or a boot mode the OS lacks leaves the
/// instance stuck at boot or unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drivers {
    /// It runs with ENA: on a type that requires it, or with `enaSupport` set.
    pub ena: bool,
    /// Its EBS volumes appear as NVMe devices: it runs on a type that requires NVMe (Nitro).
    pub nvme: bool,
    /// `legacy-bios` or `uefi`.
    pub boot_mode: String,
    /// `hvm`, or `paravirtual` for the oldest images, which only old Xen types run.
    #[serde(default = "hvm")]
    pub virtualization: String,
}

fn hvm() -> String {
    "hvm".into()
}

/// An instance's metadata service settings, as EC2 names their values (`HttpTokens` `required`
/// means IMDSv2 only). User data is deliberately not part of what a plan carries: it often holds
/// secrets, and Step Functions keeps every state in its history, so the launch step reads it from
/// the source itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataPosture {
    pub http_tokens: Option<String>,
    pub http_endpoint: Option<String>,
    pub hop_limit: Option<i32>,
    pub instance_metadata_tags: Option<String>,
    pub http_protocol_ipv6: Option<String>,
}

/// Where an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instance_type: String,
    pub az_name: String,
    pub az_id: String,
    pub state: String,
    /// `spot` for Spot instances, none for on-demand.
    pub lifecycle: Option<String>,
    /// Its tags: whether the optimizer manages it ([`crate::saga::failover::workload`]).
    pub tags: Tags,
}

/// Finds where an instance runs, in the account and region the caller names.
pub trait InstanceDirectory: Send + Sync {
    /// `Ok(None)` when the instance does not exist (any more).
    fn placement(
        &self,
        access: &Access,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Placement>, AwsError>> + Send;
}

/// An instance a saga launched, found again by its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchedInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub az_name: String,
}

/// How to launch an atomic switch's clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub iam_instance_profile_arn: Option<String>,
    pub key_name: Option<String>,
    pub ebs_optimized: bool,
    /// Read from the source by the launch step itself (never carried in the saga's state).
    pub user_data: Option<String>,
    pub metadata: Option<MetadataPosture>,
    pub detailed_monitoring: bool,
    pub tags: Vec<(String, String)>,
    /// Idempotency token (at most 64 characters).
    pub client_token: String,
}

impl LaunchSpec {
    /// `image_id` on `instance_type` in `subnet_id`, with `source`'s posture (security groups,
    /// instance profile, key pair, EBS optimisation, metadata, monitoring) and its `user_data`.
    pub fn with_posture_of(
        source: &SourceInstance,
        image_id: &str,
        instance_type: &str,
        subnet_id: &str,
        user_data: Option<String>,
        tags: Vec<(String, String)>,
        client_token: String,
    ) -> Self {
        Self {
            image_id: image_id.to_owned(),
            instance_type: instance_type.to_owned(),
            subnet_id: subnet_id.to_owned(),
            security_group_ids: source.security_group_ids.clone(),
            iam_instance_profile_arn: source.iam_instance_profile_arn.clone(),
            key_name: source.key_name.clone(),
            ebs_optimized: source.ebs_optimized,
            user_data,
            metadata: source.metadata.clone(),
            detailed_monitoring: source.detailed_monitoring,
            tags,
            client_token,
        }
    }
}

/// How to launch a group's replacement: the group's own launch template or configuration, with
/// the chosen type, subnet and Spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLaunchSpec {
    pub source: crate::saga::swap::LaunchSource,
    pub instance_type: String,
    pub subnet_id: String,
    pub tags: Vec<(String, String)>,
    /// Idempotency token (at most 64 characters).
    pub client_token: String,
}

/// What a Spot launch attempt in one pool gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    Instance(String),
    /// The pool has no Spot capacity now (`InsufficientInstanceCapacity` and the like).
    NoCapacity(String),
    /// EC2 refused this instance type or AZ for the request (`Unsupported`,
    /// `InvalidParameterCombination`…, e.g. an image without ENA on a type that needs it): the
    /// next pool may take it.
    Refused(String),
}

/// 2/2 status checks, as EC2 reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    pub state: String,
    pub system: String,
    pub instance: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_linux_unix_is_priced_and_an_unknown_platform_is_taken_as_linux() {
        let mut source = crate::testing::source_instance();
        assert_eq!(source.unpriced_platform(), None);
        for platform in [
            "Windows",
            "Red Hat Enterprise Linux",
            "SUSE Linux",
            "Ubuntu Pro",
        ] {
            source.platform = Some(platform.into());
            let why = source.unpriced_platform().unwrap();
            assert!(why.contains(platform), "{why}");
        }
        source.platform = None;
        assert_eq!(source.unpriced_platform(), None);
    }
}
