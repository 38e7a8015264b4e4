//! Auto Scaling: what launch configurations use (the waste scanner), and a group as the ASG swap
//! sees it: sizes, processes, members, lifecycle hooks, attach and detach.

use aws_sdk_autoscaling::Client;
use spot_domain::AwsError;
use spot_domain::governance::waste::Usage;
use spot_domain::hibernation::plan::Sizes;
use spot_domain::hibernation::targets::ScheduledGroup;
use spot_domain::saga::swap::{Group, LaunchSource, Member, MixedPolicy};
use spot_domain::tags::SCHEDULE_TAG;

use crate::error::{classify, invalid_data};

/// The most instance ids one `AttachInstances` or `DetachInstances` takes.
pub const MAX_IDS_PER_CALL: usize = 20;

const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

/// What a launch configuration launches, as RunInstances takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchConfiguration {
    pub image_id: Option<String>,
    pub key_name: Option<String>,
    pub security_groups: Vec<String>,
    pub user_data: Option<String>,
    pub ebs_optimized: Option<bool>,
    pub iam_instance_profile: Option<String>,
}

/// Auto Scaling in one account and region.
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

    /// The group as Auto Scaling describes it (sizes, processes, target groups, members'
    /// lifecycle and health), in one call; `None` if absent. Members' market and exemption and
    /// the launch hooks are left for the caller to fill in.
    pub async fn group(&self, name: &str) -> Result<Option<Group>, AwsError> {
        let answer = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| classify("DescribeAutoScalingGroups", e))?;
        Ok(answer
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .map(group_from))
    }

    /// Every group tagged `spot-optimizer:schedule` (one paginated pass): sizes, tags and
    /// members' instance types.
    pub async fn scheduled(&self) -> Result<Vec<ScheduledGroup>, AwsError> {
        let groups: Vec<_> = self
            .client
            .describe_auto_scaling_groups()
            .filters(
                aws_sdk_autoscaling::types::Filter::builder()
                    .name("tag-key")
                    .values(SCHEDULE_TAG)
                    .build(),
            )
            .max_records(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeAutoScalingGroups", e))?;
        Ok(groups
            .iter()
            .map(group_from)
            // The filter is the service's; the tag is checked here too.
            .filter(|g| g.tags.contains_key(SCHEDULE_TAG))
            .map(|g| ScheduledGroup {
                size: Sizes {
                    min: g.min_size,
                    max: g.max_size,
                    desired: g.desired,
                },
                member_types: g.members.iter().map(|m| m.instance_type.clone()).collect(),
                tags: g.tags,
                name: g.name,
            })
            .collect())
    }

    /// Sets a group's min, max and desired in one call.
    pub async fn set_sizes(&self, name: &str, to: Sizes) -> Result<(), AwsError> {
        let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .min_size(n(to.min))
            .max_size(n(to.max))
            .desired_capacity(n(to.desired))
            .send()
            .await
            .map_err(|e| classify("UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    pub async fn suspend(&self, name: &str, process: &str) -> Result<(), AwsError> {
        self.client
            .suspend_processes()
            .auto_scaling_group_name(name)
            .scaling_processes(process)
            .send()
            .await
            .map_err(|e| classify("SuspendProcesses", e))?;
        Ok(())
    }

    pub async fn resume(&self, name: &str, process: &str) -> Result<(), AwsError> {
        self.client
            .resume_processes()
            .auto_scaling_group_name(name)
            .scaling_processes(process)
            .send()
            .await
            .map_err(|e| classify("ResumeProcesses", e))?;
        Ok(())
    }

    pub async fn set_max_size(&self, name: &str, max: u32) -> Result<(), AwsError> {
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .max_size(i32::try_from(max).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify("UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    /// Attaches `ids`, at most [`MAX_IDS_PER_CALL`] per call (Auto Scaling's limit).
    pub async fn attach(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        for chunk in ids.chunks(MAX_IDS_PER_CALL) {
            self.client
                .attach_instances()
                .auto_scaling_group_name(name)
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("AttachInstances", e))?;
        }
        Ok(())
    }

    /// Detaches `ids` with decrement, at most [`MAX_IDS_PER_CALL`] per call.
    pub async fn detach(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        for chunk in ids.chunks(MAX_IDS_PER_CALL) {
            self.client
                .detach_instances()
                .auto_scaling_group_name(name)
                .set_instance_ids(Some(chunk.to_vec()))
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .map_err(|e| classify("DetachInstances", e))?;
        }
        Ok(())
    }

    /// Sets tags on the group (not propagated to instances).
    pub async fn tag_group(&self, name: &str, tags: &[(&str, &str)]) -> Result<(), AwsError> {
        let tags = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .key(*k)
                    .value(*v)
                    .propagate_at_launch(false)
                    .build()
            })
            .collect();
        self.client
            .create_or_update_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("CreateOrUpdateTags", e))?;
        Ok(())
    }

    /// Removes tags from the group; a missing tag is done.
    pub async fn untag_group(&self, name: &str, keys: &[&str]) -> Result<(), AwsError> {
        let tags = keys
            .iter()
            .map(|k| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .key(*k)
                    .build()
            })
            .collect();
        self.client
            .delete_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("DeleteTags", e))?;
        Ok(())
    }

    /// Names of the group's lifecycle hooks on instance launch.
    pub async fn launch_hooks(&self, name: &str) -> Result<Vec<String>, AwsError> {
        let hooks = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(name)
            .send()
            .await
            .map_err(|e| classify("DescribeLifecycleHooks", e))?;
        Ok(hooks
            .lifecycle_hooks()
            .iter()
            .filter(|h| h.lifecycle_transition() == Some(LAUNCHING))
            .filter_map(|h| h.lifecycle_hook_name().map(str::to_owned))
            .collect())
    }

    /// The launch configuration `name`, as RunInstances would take it.
    pub async fn launch_configuration(&self, name: &str) -> Result<LaunchConfiguration, AwsError> {
        let answer = self
            .client
            .describe_launch_configurations()
            .launch_configuration_names(name)
            .send()
            .await
            .map_err(|e| classify("DescribeLaunchConfigurations", e))?;
        let c = answer.launch_configurations().first().ok_or_else(|| {
            invalid_data(
                "DescribeLaunchConfigurations",
                format!("no launch configuration {name}"),
            )
        })?;
        let set = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(LaunchConfiguration {
            image_id: c.image_id().map(str::to_owned),
            key_name: set(c.key_name()),
            security_groups: c.security_groups().to_vec(),
            user_data: set(c.user_data()),
            ebs_optimized: c.ebs_optimized(),
            iam_instance_profile: set(c.iam_instance_profile()),
        })
    }
}

fn group_from(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Group {
    let template =
        |spec: &aws_sdk_autoscaling::types::LaunchTemplateSpecification| LaunchSource::Template {
            id: spec.launch_template_id().map(str::to_owned),
            name: spec.launch_template_name().map(str::to_owned),
            version: spec.version().map(str::to_owned),
        };
    let mixed = g.mixed_instances_policy();
    let launch = g
        .launch_template()
        .map(template)
        .or_else(|| {
            mixed
                .and_then(|m| m.launch_template())
                .and_then(|t| t.launch_template_specification())
                .map(template)
        })
        .or_else(|| {
            g.launch_configuration_name()
                .map(|name| LaunchSource::Configuration {
                    name: name.to_owned(),
                })
        });
    Group {
        name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
        min_size: g
            .min_size()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        max_size: g
            .max_size()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        desired: g
            .desired_capacity()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        launch,
        mixed: mixed.map(|m| {
            let distribution = m.instances_distribution();
            MixedPolicy {
                on_demand_base: distribution
                    .and_then(|d| d.on_demand_base_capacity())
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                on_demand_above_base_pct: distribution
                    .and_then(|d| d.on_demand_percentage_above_base_capacity())
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(100),
                override_types: m
                    .launch_template()
                    .map(|t| {
                        t.overrides()
                            .iter()
                            .filter_map(|o| o.instance_type().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        }),
        subnet_ids: g
            .vpc_zone_identifier()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        target_groups: g.target_group_arns().to_vec(),
        classic_load_balancers: g.load_balancer_names().to_vec(),
        suspended: g
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect(),
        launch_hooks: Vec::new(),
        tags: g
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect(),
        members: g
            .instances()
            .iter()
            .map(|i| Member {
                instance_id: i.instance_id().unwrap_or_default().to_owned(),
                instance_type: i.instance_type().unwrap_or_default().to_owned(),
                az_name: i.availability_zone().unwrap_or_default().to_owned(),
                lifecycle_state: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                health_status: i.health_status().unwrap_or_default().to_owned(),
                protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
                spot: false,
                exempt: false,
            })
            .collect(),
    }
}
