//! EC2 adapter, continued: what the atomic-switch saga does in one account and region.

use std::sync::Arc;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceType, MarketType, ResourceType, SpotInstanceType,
    SpotMarketOptions, Tag, TagSpecification,
};
use chrono::{DateTime, Utc};
use spot_domain::ports::{
    InstanceHealth, LaunchSpec, Launched, SwitchClone, SwitchFleet, SwitchFleets,
};
use spot_domain::switch::{
    BlockDevice, CREATED_VIA, ElasticIp, InstanceTypeInfo, MANAGED_BY, SWITCH_TAG, SourceInstance,
    SpotPrice, SubnetInfo,
};
use spot_domain::waste::Tags;
use spot_domain::{Access, AwsError};

use crate::clients::AwsContext;
use crate::ec2::{not_found, tags};
use crate::error::{classify, invalid_data};

/// Error codes meaning "this pool has no Spot capacity for you now": try another pool.
pub(crate) const NO_CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
];

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The saga's images are named after the switch, so a retried step finds its own.
fn image_name(switch_id: &str) -> String {
    format!("spot-optimizer-switch-{switch_id}")
}

type RunInstances = aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;

/// Sends `request` as one tagged, one-time Spot instance. One attempt: EC2 answers a capacity
/// shortage with HTTP 500, which the SDK would retry in the same pool (seconds of backoff), and
/// the next pool is the better retry; throttling fails the step as `Transient` and the state
/// machine retries it (the instance is found by its tags, if it was launched).
pub(crate) async fn run_spot(
    request: RunInstances,
    tags: &[(String, String)],
    client_token: &str,
) -> Result<Launched, AwsError> {
    let mut marks = TagSpecification::builder().resource_type(ResourceType::Instance);
    let mut volume_marks = TagSpecification::builder().resource_type(ResourceType::Volume);
    for (k, v) in tags {
        marks = marks.tags(tag(k, v));
        volume_marks = volume_marks.tags(tag(k, v));
    }
    let request = request
        .min_count(1)
        .max_count(1)
        .client_token(client_token)
        .instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(marks.build())
        .tag_specifications(volume_marks.build());
    let once = aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1));
    match request.customize().config_override(once).send().await {
        Ok(answer) => answer
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(|id| Launched::Instance(id.to_owned()))
            .ok_or_else(|| invalid_data("RunInstances", "no instance in the answer")),
        Err(e) if e.code().is_some_and(|c| NO_CAPACITY.contains(&c)) => {
            Ok(Launched::NoCapacity(format!(
                "{}: {}",
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default()
            )))
        }
        Err(e) => Err(classify("RunInstances", e)),
    }
}

/// The first instance, not terminated, that carries every one of `tags`: how a retried step
/// finds what an earlier attempt launched.
pub(crate) async fn tagged_instance(
    client: &Client,
    tags: &[(&str, &str)],
) -> Result<Option<SwitchClone>, AwsError> {
    let mut request = client.describe_instances().filters(
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    );
    for (k, v) in tags {
        request = request.filters(
            Filter::builder()
                .name(format!("tag:{k}"))
                .values(*v)
                .build(),
        );
    }
    let answer = request
        .send()
        .await
        .map_err(|e| classify("DescribeInstances", e))?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| {
            Some(SwitchClone {
                instance_id: i.instance_id()?.to_owned(),
                instance_type: i.instance_type()?.as_str().to_owned(),
                az_name: i.placement()?.availability_zone()?.to_owned(),
            })
        }))
}

/// Where and what an instance is (type, size, AZ, network, identity, tags), from its description
/// and those of instance types and subnets; no volumes, user data or address.
fn placement_of(
    i: &aws_sdk_ec2::types::Instance,
    types: &[aws_sdk_ec2::types::InstanceTypeInfo],
    subnets: &[aws_sdk_ec2::types::Subnet],
) -> Result<SourceInstance, AwsError> {
    let instance_id = i.instance_id().unwrap_or_default();
    let missing =
        |what: &str| invalid_data("DescribeInstances", format!("{instance_id} has no {what}"));
    let instance_type = i.instance_type().ok_or_else(|| missing("type"))?;
    let subnet_id = i
        .subnet_id()
        .ok_or_else(|| missing("subnet (EC2-Classic is not supported)"))?;
    let info = types
        .iter()
        .find(|t| t.instance_type() == Some(instance_type));
    let subnet = subnets.iter().find(|s| s.subnet_id() == Some(subnet_id));
    let placement = i.placement();
    Ok(SourceInstance {
        instance_id: instance_id.to_owned(),
        instance_type: instance_type.as_str().to_owned(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
        lifecycle: i.instance_lifecycle().map(|l| l.as_str().to_owned()),
        architecture: i
            .architecture()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| "x86_64".into()),
        vcpus: info
            .and_then(|t| t.v_cpu_info())
            .and_then(|v| v.default_v_cpus())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        memory_mib: info
            .and_then(|t| t.memory_info())
            .and_then(|m| m.size_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
        az_name: placement
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        az_id: placement
            .and_then(|p| p.availability_zone_id())
            .or_else(|| subnet.and_then(|s| s.availability_zone_id()))
            .unwrap_or_default()
            .to_owned(),
        vpc_id: i.vpc_id().unwrap_or_default().to_owned(),
        subnet_id: subnet_id.to_owned(),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        iam_instance_profile_arn: i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_owned),
        key_name: i.key_name().map(str::to_owned),
        ebs_optimized: i.ebs_optimized().unwrap_or(false),
        root_device_type: i
            .root_device_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        block_devices: Vec::new(),
        user_data: None,
        elastic_ip: None,
        tags: tags(i.tags()),
    })
}

#[derive(Debug, Clone)]
pub struct AwsSwitchFleet {
    client: Client,
}

impl AwsSwitchFleet {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    async fn describe(
        &self,
        instance_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::Instance>, AwsError> {
        match self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(answer) => Ok(answer
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(instance_id))
                .cloned()),
            Err(e) if not_found(e.code()) => Ok(None),
            Err(e) => Err(classify("DescribeInstances", e)),
        }
    }
}

impl SwitchFleet for AwsSwitchFleet {
    async fn source(&self, instance_id: &str) -> Result<Option<SourceInstance>, AwsError> {
        let Some(i) = self.describe(instance_id).await? else {
            return Ok(None);
        };
        let instance_type = i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        let subnet_id = i.subnet_id().unwrap_or_default().to_owned();
        let (type_info, subnet, volumes, user_data, address) = futures::try_join!(
            async {
                self.client
                    .describe_instance_types()
                    .instance_types(InstanceType::from(instance_type.as_str()))
                    .send()
                    .await
                    .map_err(|e| classify("DescribeInstanceTypes", e))
            },
            async {
                self.client
                    .describe_subnets()
                    .subnet_ids(&subnet_id)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeSubnets", e))
            },
            async {
                let ids: Vec<String> = i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
                    .collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let answer = self
                    .client
                    .describe_volumes()
                    .set_volume_ids(Some(ids))
                    .send()
                    .await
                    .map_err(|e| classify("DescribeVolumes", e))?;
                Ok(answer.volumes().to_vec())
            },
            async {
                self.client
                    .describe_instance_attribute()
                    .instance_id(instance_id)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeInstanceAttribute", e))
            },
            async {
                self.client
                    .describe_addresses()
                    .filters(
                        Filter::builder()
                            .name("instance-id")
                            .values(instance_id)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| classify("DescribeAddresses", e))
            },
        )?;
        let mut source = placement_of(&i, type_info.instance_types(), subnet.subnets())?;
        source.block_devices = i
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                let volume_id = ebs.volume_id()?.to_owned();
                let volume = volumes
                    .iter()
                    .find(|v| v.volume_id() == Some(volume_id.as_str()));
                Some(BlockDevice {
                    device_name: m.device_name().unwrap_or_default().to_owned(),
                    size_gb: volume
                        .and_then(|v| v.size())
                        .and_then(|s| u32::try_from(s).ok())
                        .unwrap_or_default(),
                    volume_type: volume
                        .and_then(|v| v.volume_type())
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                    volume_id,
                })
            })
            .collect();
        source.user_data = user_data
            .user_data()
            .and_then(|u| u.value())
            .map(str::to_owned);
        source.elastic_ip = address.addresses().first().and_then(|a| {
            Some(ElasticIp {
                allocation_id: a.allocation_id()?.to_owned(),
                public_ip: a.public_ip().unwrap_or_default().to_owned(),
            })
        });
        Ok(Some(source))
    }

    async fn placements(&self, ids: &[String]) -> Result<Vec<SourceInstance>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A filter, not InstanceIds: an id that no longer exists is simply absent from the answer.
        let mut reservations = Vec::new();
        for chunk in ids.chunks(200) {
            let page: Vec<_> = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("instance-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeInstances", e))?;
            reservations.extend(page);
        }
        let instances: Vec<_> = reservations.iter().flat_map(|r| r.instances()).collect();
        let distinct = |values: Vec<Option<String>>| -> Vec<String> {
            values
                .into_iter()
                .flatten()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let types = distinct(
            instances
                .iter()
                .map(|i| i.instance_type().map(|t| t.as_str().to_owned()))
                .collect(),
        );
        let subnets = distinct(
            instances
                .iter()
                .map(|i| i.subnet_id().map(str::to_owned))
                .collect(),
        );
        let (type_info, subnet_info) = futures::try_join!(
            async {
                self.client
                    .describe_instance_types()
                    .set_instance_types(Some(
                        types
                            .iter()
                            .map(|t| InstanceType::from(t.as_str()))
                            .collect(),
                    ))
                    .send()
                    .await
                    .map_err(|e| classify("DescribeInstanceTypes", e))
            },
            async {
                self.client
                    .describe_subnets()
                    .set_subnet_ids(Some(subnets.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("DescribeSubnets", e))
            },
        )?;
        instances
            .iter()
            .map(|i| placement_of(i, type_info.instance_types(), subnet_info.subnets()))
            .collect()
    }

    async fn instance_types(&self, architecture: &str) -> Result<Vec<InstanceTypeInfo>, AwsError> {
        let types: Vec<_> = self
            .client
            .describe_instance_types()
            .filters(
                Filter::builder()
                    .name("processor-info.supported-architecture")
                    .values(architecture)
                    .build(),
            )
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeInstanceTypes", e))?;
        Ok(types
            .iter()
            .filter_map(|t| {
                Some(InstanceTypeInfo {
                    instance_type: t.instance_type()?.as_str().to_owned(),
                    architectures: t
                        .processor_info()
                        .map(|p| {
                            p.supported_architectures()
                                .iter()
                                .map(|a| a.as_str().to_owned())
                                .collect()
                        })
                        .unwrap_or_default(),
                    vcpus: t
                        .v_cpu_info()
                        .and_then(|v| v.default_v_cpus())
                        .and_then(|v| u32::try_from(v).ok())?,
                    memory_mib: t
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .and_then(|m| u64::try_from(m).ok())?,
                    spot: t
                        .supported_usage_classes()
                        .iter()
                        .any(|u| u.as_str() == "spot"),
                    current_generation: t.current_generation().unwrap_or(false),
                    bare_metal: t.bare_metal().unwrap_or(false),
                })
            })
            .collect())
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
        let subnets: Vec<_> = self
            .client
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .max_results(1000)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSubnets", e))?;
        Ok(subnets
            .iter()
            .filter_map(|s| {
                Some(SubnetInfo {
                    subnet_id: s.subnet_id()?.to_owned(),
                    az_name: s.availability_zone()?.to_owned(),
                    az_id: s.availability_zone_id()?.to_owned(),
                    vpc_id: s.vpc_id()?.to_owned(),
                    available_ips: s
                        .available_ip_address_count()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                })
            })
            .collect())
    }

    async fn spot_prices(&self, instance_types: &[String]) -> Result<Vec<SpotPrice>, AwsError> {
        let now = aws_sdk_ec2::primitives::DateTime::from_secs(Utc::now().timestamp());
        let mut prices = Vec::new();
        for chunk in instance_types.chunks(100) {
            let history: Vec<_> = self
                .client
                .describe_spot_price_history()
                .set_instance_types(Some(
                    chunk
                        .iter()
                        .map(|t| InstanceType::from(t.as_str()))
                        .collect(),
                ))
                .product_descriptions("Linux/UNIX")
                .product_descriptions("Linux/UNIX (Amazon VPC)")
                // With the start time now, EC2 answers the price in force now in each pool.
                .start_time(now)
                .max_results(1000)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeSpotPriceHistory", e))?;
            prices.extend(history.iter().filter_map(|p| {
                Some(SpotPrice {
                    instance_type: p.instance_type()?.as_str().to_owned(),
                    az_name: p.availability_zone()?.to_owned(),
                    usd_per_hour: p.spot_price()?.parse().ok()?,
                    at: p
                        .timestamp()
                        .and_then(|t| DateTime::from_timestamp(t.secs(), 0))
                        .unwrap_or_default(),
                })
            }));
        }
        Ok(prices)
    }

    async fn find_image(&self, switch_id: &str) -> Result<Option<String>, AwsError> {
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

    async fn image(
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

    async fn image_state(&self, image_id: &str) -> Result<Option<(String, Vec<String>)>, AwsError> {
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

    async fn clone_of(&self, switch_id: &str) -> Result<Option<SwitchClone>, AwsError> {
        tagged_instance(
            &self.client,
            &[(SWITCH_TAG, switch_id), (CREATED_VIA.0, CREATED_VIA.1)],
        )
        .await
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, AwsError> {
        let mut request = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(
                (!spec.security_group_ids.is_empty()).then(|| spec.security_group_ids.clone()),
            )
            .set_key_name(spec.key_name.clone())
            .ebs_optimized(spec.ebs_optimized)
            .set_user_data(spec.user_data.clone());
        if let Some(arn) = &spec.iam_instance_profile_arn {
            request = request
                .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        run_spot(request, &spec.tags, &spec.client_token).await
    }

    async fn health(&self, instance_id: &str) -> Result<Option<InstanceHealth>, AwsError> {
        let answer = match self
            .client
            .describe_instance_status()
            .instance_ids(instance_id)
            .include_all_instances(true)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) if not_found(e.code()) => return Ok(None),
            Err(e) => return Err(classify("DescribeInstanceStatus", e)),
        };
        Ok(answer
            .instance_statuses()
            .iter()
            .find(|s| s.instance_id() == Some(instance_id))
            .map(|s| InstanceHealth {
                state: s
                    .instance_state()
                    .and_then(|st| st.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                system: s
                    .system_status()
                    .and_then(|x| x.status())
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                instance: s
                    .instance_status()
                    .and_then(|x| x.status())
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
            }))
    }

    async fn state(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        Ok(self.describe(instance_id).await?.and_then(|i| {
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
        }))
    }

    async fn stop(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("StopInstances", e))?;
        Ok(())
    }

    async fn start(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("StartInstances", e))?;
        Ok(())
    }

    async fn terminate(&self, instance_id: &str) -> Result<(), AwsError> {
        match self
            .client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(classify("TerminateInstances", e)),
        }
    }

    async fn tag(&self, resource_id: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.client
            .create_tags()
            .resources(resource_id)
            .tags(tag(key, value))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    }

    async fn tags(&self, resource_id: &str) -> Result<Tags, AwsError> {
        let answer = self
            .client
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("resource-id")
                    .values(resource_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeTags", e))?;
        Ok(answer
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect())
    }

    async fn untag(&self, resource_id: &str, key: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_tags()
            .resources(resource_id)
            .tags(Tag::builder().key(key).build())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(classify("DeleteTags", e)),
        }
    }

    async fn move_address(&self, allocation_id: &str, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| classify("AssociateAddress", e))?;
        Ok(())
    }

    async fn address_holder(&self, allocation_id: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(answer
            .addresses()
            .first()
            .and_then(|a| a.instance_id())
            .map(str::to_owned))
    }

    async fn running(&self) -> Result<Vec<spot_domain::route::Routable>, AwsError> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .max_results(1000)
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
                Some(spot_domain::route::Routable {
                    instance_id: i.instance_id()?.to_owned(),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    spot: i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    tags: tags(i.tags()),
                })
            })
            .collect())
    }

    async fn remove_image(&self, image_id: &str, snapshot_ids: &[String]) -> Result<(), AwsError> {
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
}

/// Builds switch fleets from the function's context (own credentials or the member role).
#[derive(Debug, Clone)]
pub struct AwsSwitchFleets {
    ctx: Arc<AwsContext>,
}

impl AwsSwitchFleets {
    pub fn new(ctx: Arc<AwsContext>) -> Self {
        Self { ctx }
    }
}

impl SwitchFleets for AwsSwitchFleets {
    type Fleet = AwsSwitchFleet;

    async fn switch_fleet(&self, access: &Access, region: &str) -> AwsSwitchFleet {
        AwsSwitchFleet::new(Client::new(&self.ctx.config_for(access, region).await))
    }
}

impl spot_domain::ports::GroupFleets for AwsSwitchFleets {
    type Fleet = crate::asg_swap::AwsGroupFleet;

    async fn group_fleet(&self, access: &Access, region: &str) -> crate::asg_swap::AwsGroupFleet {
        crate::asg_swap::AwsGroupFleet::new(&self.ctx.config_for(access, region).await)
    }
}

/// What a saga step needs to act in any registered account: the registry (cached for five
/// minutes), the fleets, and the home account.
pub type AwsReach = spot_domain::saga::Reach<
    spot_domain::CachedRegistry<crate::AccountsTable, spot_domain::SystemClock>,
    AwsSwitchFleets,
>;

/// Builds [`AwsReach`] from `ACCOUNTS_TABLE` and `HOME_ACCOUNT_ID` (else STS).
pub async fn reach<F: Fn(&str) -> Option<String>>(
    ctx: Arc<AwsContext>,
    env: &spot_domain::settings::Env<F>,
) -> Result<AwsReach, Box<dyn std::error::Error + Send + Sync>> {
    let home_account = ctx.home_account(env.optional("HOME_ACCOUNT_ID")).await?;
    let accounts = crate::AccountsTable::new(
        aws_sdk_dynamodb::Client::new(ctx.base()),
        env.required("ACCOUNTS_TABLE")?,
    );
    Ok(spot_domain::saga::Reach {
        registry: spot_domain::CachedRegistry::new(
            accounts,
            spot_domain::SystemClock,
            chrono::TimeDelta::seconds(300),
        ),
        fleets: AwsSwitchFleets::new(ctx),
        home_account,
    })
}
