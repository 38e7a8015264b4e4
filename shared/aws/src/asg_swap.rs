//! Auto Scaling and ELBv2 adapter for the ASG swap: the group as the swap sees it, its processes
//! and MaxSize, launching a replacement from the group's own launch template or configuration,
//! attach/detach, and the instances' states in the group's target groups.

use aws_sdk_autoscaling::Client as AutoScalingClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    IamInstanceProfileSpecification, InstanceType, LaunchTemplateSpecification,
};
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use spot_domain::AwsError;
use spot_domain::asg::{Group, LaunchSource, Member, MixedPolicy, SWAP_TAG};
use spot_domain::ports::{GroupFleet, GroupLaunchSpec, Launched, SwitchClone};
use spot_domain::switch::SOURCE_TAG;
use spot_domain::waste::EXEMPT_TAG;

use crate::ec2::{not_found, tags};
use crate::ec2_switch::{run_spot, tagged_instance};
use crate::error::{classify, invalid_data};

const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

#[derive(Debug, Clone)]
pub struct AwsGroupFleet {
    autoscaling: AutoScalingClient,
    ec2: Ec2Client,
    elb: ElbClient,
}

impl AwsGroupFleet {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            autoscaling: AutoScalingClient::new(config),
            ec2: Ec2Client::new(config),
            elb: ElbClient::new(config),
        }
    }

    /// Spot or not, and exempt or not, of the group's members (one paginated call).
    async fn markets(&self, ids: Vec<String>) -> Result<Vec<(String, bool, bool)>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reservations: Vec<_> = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_owned(),
                    i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    tags(i.tags()).contains_key(EXEMPT_TAG),
                ))
            })
            .collect())
    }

    async fn launch_hooks(&self, name: &str) -> Result<Vec<String>, AwsError> {
        let hooks = self
            .autoscaling
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

    /// The RunInstances request a launch configuration amounts to.
    async fn run_from_configuration(
        &self,
        name: &str,
    ) -> Result<aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder, AwsError>
    {
        let answer = self
            .autoscaling
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
        let mut request = self
            .ec2
            .run_instances()
            .set_image_id(c.image_id().map(str::to_owned))
            .set_key_name(c.key_name().filter(|k| !k.is_empty()).map(str::to_owned))
            .set_security_group_ids(Some(c.security_groups().to_vec()).filter(|g| !g.is_empty()))
            .set_user_data(c.user_data().filter(|u| !u.is_empty()).map(str::to_owned))
            .set_ebs_optimized(c.ebs_optimized());
        if let Some(profile) = c.iam_instance_profile().filter(|p| !p.is_empty()) {
            let spec = if profile.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(profile)
            } else {
                IamInstanceProfileSpecification::builder().name(profile)
            };
            request = request.iam_instance_profile(spec.build());
        }
        Ok(request)
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

impl GroupFleet for AwsGroupFleet {
    async fn group(&self, name: &str) -> Result<Option<Group>, AwsError> {
        let answer = self
            .autoscaling
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

    async fn inspect(&self, name: &str) -> Result<Option<Group>, AwsError> {
        let Some(mut group) = self.group(name).await? else {
            return Ok(None);
        };
        let ids: Vec<String> = group
            .members
            .iter()
            .map(|m| m.instance_id.clone())
            .collect();
        let (hooks, markets) = futures::try_join!(self.launch_hooks(name), self.markets(ids))?;
        group.launch_hooks = hooks;
        for m in &mut group.members {
            if let Some((_, spot, exempt)) = markets.iter().find(|(id, _, _)| *id == m.instance_id)
            {
                m.spot = *spot;
                m.exempt = *exempt;
            }
        }
        Ok(Some(group))
    }

    async fn suspend(&self, name: &str, process: &str) -> Result<(), AwsError> {
        self.autoscaling
            .suspend_processes()
            .auto_scaling_group_name(name)
            .scaling_processes(process)
            .send()
            .await
            .map_err(|e| classify("SuspendProcesses", e))?;
        Ok(())
    }

    async fn resume(&self, name: &str, process: &str) -> Result<(), AwsError> {
        self.autoscaling
            .resume_processes()
            .auto_scaling_group_name(name)
            .scaling_processes(process)
            .send()
            .await
            .map_err(|e| classify("ResumeProcesses", e))?;
        Ok(())
    }

    async fn set_max_size(&self, name: &str, max: u32) -> Result<(), AwsError> {
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .max_size(i32::try_from(max).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify("UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    async fn launch(&self, spec: &GroupLaunchSpec) -> Result<Launched, AwsError> {
        let request = match &spec.source {
            LaunchSource::Template { id, name, version } => {
                self.ec2.run_instances().launch_template(
                    LaunchTemplateSpecification::builder()
                        .set_launch_template_id(id.clone())
                        .set_launch_template_name(id.is_none().then(|| name.clone()).flatten())
                        .set_version(version.clone())
                        .build(),
                )
            }
            LaunchSource::Configuration { name } => self.run_from_configuration(name).await?,
        }
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .subnet_id(&spec.subnet_id);
        run_spot(request, &spec.tags, &spec.client_token).await
    }

    async fn replacement_of(
        &self,
        swap_id: &str,
        old: &str,
    ) -> Result<Option<SwitchClone>, AwsError> {
        tagged_instance(&self.ec2, &[(SWAP_TAG, swap_id), (SOURCE_TAG, old)]).await
    }

    async fn attach(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        self.autoscaling
            .attach_instances()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| classify("AttachInstances", e))?;
        Ok(())
    }

    async fn detach(&self, name: &str, ids: &[String]) -> Result<(), AwsError> {
        self.autoscaling
            .detach_instances()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(ids.to_vec()))
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| classify("DetachInstances", e))?;
        Ok(())
    }

    async fn target_states(
        &self,
        target_groups: &[String],
        instance: &str,
    ) -> Result<Vec<(String, String)>, AwsError> {
        let mut states = Vec::new();
        for tg in target_groups {
            let answer = self
                .elb
                .describe_target_health()
                .target_group_arn(tg)
                .targets(TargetDescription::builder().id(instance).build())
                .send()
                .await
                .map_err(|e| classify("DescribeTargetHealth", e))?;
            let state = answer
                .target_health_descriptions()
                .iter()
                .find(|d| d.target().and_then(|t| t.id()) == Some(instance))
                .and_then(|d| d.target_health())
                .and_then(|h| h.state())
                .map_or_else(|| "unused".to_owned(), |s| s.as_str().to_owned());
            states.push((tg.clone(), state));
        }
        Ok(states)
    }

    async fn deregister(&self, target_groups: &[String], instance: &str) -> Result<(), AwsError> {
        for tg in target_groups {
            let target = TargetDescription::builder().id(instance).build();
            match self
                .elb
                .deregister_targets()
                .target_group_arn(tg)
                .targets(target)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidTarget") || not_found(e.code()) => {}
                Err(e) => return Err(classify("DeregisterTargets", e)),
            }
        }
        Ok(())
    }
}
