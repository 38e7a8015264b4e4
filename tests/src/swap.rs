//! Auto Scaling groups in the bed for the ASG swap: a fixture that creates one (launch template or
//! configuration, subnets in two AZs, opt-in tag, optionally a target group), and a sampler that
//! reads the group's in-service count again and again while an execution runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy, Tag,
};
use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData};
use tokio::task::JoinHandle;

use crate::bed::Bed;
use crate::fixtures::IMAGE;

/// A group to create.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub desired: i32,
    pub max: i32,
    pub opted_in: bool,
    pub target_group: bool,
    pub launch_configuration: bool,
    /// A MixedInstancesPolicy running this share of Spot above its base.
    pub spot_share: Option<i32>,
    pub launch_hook: bool,
    /// The launch template declares its network interface (with a public address).
    pub network_interfaces: bool,
    /// The target group's deregistration delay, in seconds (ELB's default 300 otherwise).
    pub deregistration_delay: Option<u32>,
}

impl GroupSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            desired: 3,
            max: 4,
            opted_in: true,
            target_group: false,
            launch_configuration: false,
            spot_share: None,
            launch_hook: false,
            network_interfaces: false,
            deregistration_delay: None,
        }
    }

    /// With a target group whose targets drain `seconds` after deregistration.
    pub fn draining_for(mut self, seconds: u32) -> Self {
        self.target_group = true;
        self.deregistration_delay = Some(seconds);
        self
    }

    pub fn with_network_interfaces(mut self) -> Self {
        self.network_interfaces = true;
        self
    }

    pub fn size(mut self, desired: i32, max: i32) -> Self {
        self.desired = desired;
        self.max = max;
        self
    }

    pub fn not_opted_in(mut self) -> Self {
        self.opted_in = false;
        self
    }

    pub fn with_target_group(mut self) -> Self {
        self.target_group = true;
        self
    }

    pub fn with_launch_configuration(mut self) -> Self {
        self.launch_configuration = true;
        self
    }

    pub fn with_spot_share(mut self, percent: i32) -> Self {
        self.spot_share = Some(percent);
        self
    }

    pub fn with_launch_hook(mut self) -> Self {
        self.launch_hook = true;
        self
    }

    /// Creates it (and its launch template or configuration, and target group); returns the
    /// target group's ARN if any.
    pub async fn create(&self, bed: &Bed) -> Result<Option<String>> {
        self.create_in(&bed.home).await
    }

    /// As [`GroupSpec::create`], in the account `config` acts in.
    pub async fn create_in(&self, config: &aws_config::SdkConfig) -> Result<Option<String>> {
        let ec2 = aws_sdk_ec2::Client::new(config);
        let autoscaling = aws_sdk_autoscaling::Client::new(config);
        let subnets = ec2
            .describe_subnets()
            .filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            )
            .send()
            .await?;
        let in_az = |az: &str| {
            subnets
                .subnets()
                .iter()
                .find(|s| s.availability_zone() == Some(az))
                .and_then(|s| s.subnet_id())
                .map(str::to_owned)
                .with_context(|| format!("no default subnet in {az}"))
        };
        let zones = format!("{},{}", in_az("us-east-1b")?, in_az("us-east-1c")?);
        let vpc = subnets.subnets()[0].vpc_id().unwrap_or_default().to_owned();

        let target_group = if self.target_group {
            let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
            let created = elb
                .create_target_group()
                .name(format!("tg-{}", &self.name[..self.name.len().min(28)]))
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
                .port(80)
                .vpc_id(&vpc)
                .send()
                .await?;
            let arn = created
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .map(str::to_owned);
            if let (Some(arn), Some(seconds)) = (&arn, self.deregistration_delay) {
                elb.modify_target_group_attributes()
                    .target_group_arn(arn)
                    .attributes(
                        aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                            .key("deregistration_delay.timeout_seconds")
                            .value(seconds.to_string())
                            .build(),
                    )
                    .send()
                    .await?;
            }
            arn
        } else {
            None
        };

        let mut request = autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&self.name)
            .min_size(1)
            .max_size(self.max)
            .desired_capacity(self.desired)
            .vpc_zone_identifier(zones)
            .set_target_group_arns(target_group.clone().map(|t| vec![t]));
        if self.opted_in {
            request = request.tags(
                Tag::builder()
                    .key("spot-optimizer:enabled")
                    .value("true")
                    .propagate_at_launch(false)
                    .build(),
            );
        }
        if self.launch_configuration {
            let name = format!("lc-{}", self.name);
            autoscaling
                .create_launch_configuration()
                .launch_configuration_name(&name)
                .image_id(IMAGE)
                .instance_type("m5.large")
                .send()
                .await?;
            request = request.launch_configuration_name(name);
        } else {
            let name = format!("lt-{}", self.name);
            ec2.create_launch_template()
                .launch_template_name(&name)
                .launch_template_data(
                    RequestLaunchTemplateData::builder()
                        .image_id(IMAGE)
                        .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
                        .set_network_interfaces(self.network_interfaces.then(|| {
                            vec![
                                aws_sdk_ec2::types::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                                    .device_index(0)
                                    .associate_public_ip_address(true)
                                    .delete_on_termination(true)
                                    .build(),
                            ]
                        }))
                        .build(),
                )
                .send()
                .await?;
            let spec = LaunchTemplateSpecification::builder()
                .launch_template_name(&name)
                .version("$Default")
                .build();
            request = match self.spot_share {
                None => request.launch_template(spec),
                Some(spot) => request.mixed_instances_policy(
                    MixedInstancesPolicy::builder()
                        .launch_template(
                            LaunchTemplate::builder()
                                .launch_template_specification(spec)
                                .overrides(
                                    LaunchTemplateOverrides::builder()
                                        .instance_type("m5.large")
                                        .build(),
                                )
                                .overrides(
                                    LaunchTemplateOverrides::builder()
                                        .instance_type("m6i.large")
                                        .build(),
                                )
                                .build(),
                        )
                        .instances_distribution(
                            InstancesDistribution::builder()
                                .on_demand_base_capacity(1)
                                .on_demand_percentage_above_base_capacity(100 - spot)
                                .build(),
                        )
                        .build(),
                ),
            };
        }
        request.send().await.context("CreateAutoScalingGroup")?;
        if self.launch_hook {
            autoscaling
                .put_lifecycle_hook()
                .auto_scaling_group_name(&self.name)
                .lifecycle_hook_name("warm-up")
                .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
                .send()
                .await
                .context("PutLifecycleHook")?;
        }
        Ok(target_group)
    }
}

/// The group as a test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub desired: i32,
    pub max: i32,
    /// In-service, healthy members.
    pub in_service: usize,
    pub members: Vec<String>,
    pub suspended: Vec<String>,
    /// The optimizer's tags on the group (a swap's mark while it has changed the group).
    pub marks: Vec<String>,
}

pub async fn snapshot(autoscaling: &aws_sdk_autoscaling::Client, name: &str) -> Result<Snapshot> {
    let answer = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await?;
    let g = answer
        .auto_scaling_groups()
        .first()
        .with_context(|| format!("no group {name}"))?;
    Ok(Snapshot {
        desired: g.desired_capacity().unwrap_or_default(),
        max: g.max_size().unwrap_or_default(),
        in_service: g
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state().map(|s| s.as_str()) == Some("InService")
                    && i.health_status() == Some("Healthy")
            })
            .count(),
        members: g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect(),
        suspended: g
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect(),
        marks: g
            .tags()
            .iter()
            .filter_map(|t| t.key())
            .filter(|k| k.starts_with("spot-optimizer:swap"))
            .map(str::to_owned)
            .collect(),
    })
}

/// One reading of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: chrono::DateTime<chrono::Utc>,
    pub in_service: usize,
    pub desired: i32,
    pub max: i32,
}

/// Reads the group's in-service count every few milliseconds until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(autoscaling: aws_sdk_autoscaling::Client, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(s) = snapshot(&autoscaling, &name).await {
                    samples.push(Sample {
                        at: chrono::Utc::now(),
                        in_service: s.in_service,
                        desired: s.desired,
                        max: s.max,
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        });
        Self { stop, task }
    }

    /// Every reading, in order.
    pub async fn stop(self) -> Result<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Instance ids and states a swap launched (tag `spot-optimizer:saga` with `CreatedVia=AsgSwap`).
pub async fn replacements(
    ec2: &aws_sdk_ec2::Client,
    swap_id: &str,
) -> Result<Vec<(String, String, bool)>> {
    let answer = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:spot-optimizer:saga")
                .values(swap_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag:CreatedVia")
                .values("AsgSwap")
                .build(),
        )
        .send()
        .await?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_owned(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
            )
        })
        .collect())
}

/// The last reading taken before `at`: the group as a step left it.
pub fn as_of(samples: &[Sample], at: chrono::DateTime<chrono::Utc>) -> Option<Sample> {
    samples.iter().rev().find(|s| s.at <= at).copied()
}
