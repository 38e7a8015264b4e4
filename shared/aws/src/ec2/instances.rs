//! Instances as the sagas see them: the source and its placement, state, 2/2 status checks,
//! start/stop/terminate, tags, the running list, and group members' market.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceAttributeName, InstanceType, MonitoringState, Tag};
use spot_domain::instance::{
    BlockDevice, Drivers, ElasticIp, InstanceHealth, MetadataPosture, SourceInstance,
};
use spot_domain::market::Support;
use spot_domain::saga::route::Routable;
use spot_domain::tags::{EXEMPT_TAG, Tags};
use spot_domain::{AwsError, AwsErrorKind};

use super::{Ec2, market, not_found, tag, tags};
use crate::error::{classify, invalid_data};

/// Where and what an instance is (type, size, AZ, network, identity, tags), from its description
/// and those of instance types and subnets, with its metadata and monitoring settings; no volumes,
/// protections, user data or address.
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
        image_id: i.image_id().map(str::to_owned),
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
        elastic_ip: None,
        tags: tags(i.tags()),
        metadata: i.metadata_options().map(|m| MetadataPosture {
            http_tokens: m.http_tokens().map(|v| v.as_str().to_owned()),
            http_endpoint: m.http_endpoint().map(|v| v.as_str().to_owned()),
            hop_limit: m.http_put_response_hop_limit(),
            instance_metadata_tags: m.instance_metadata_tags().map(|v| v.as_str().to_owned()),
            http_protocol_ipv6: m.http_protocol_ipv6().map(|v| v.as_str().to_owned()),
        }),
        detailed_monitoring: i
            .monitoring()
            .and_then(|m| m.state())
            .is_some_and(|s| matches!(s, MonitoringState::Enabled | MonitoringState::Pending)),
        termination_protection: false,
        stop_protection: false,
        drivers: info.map(|t| drivers(i, t)),
        platform: i
            .platform_details()
            .map(str::to_owned)
            .or_else(|| i.platform().map(|_| "Windows".to_owned())),
    })
}

/// What `i`'s OS has shown it runs with, from its type and its own attributes.
fn drivers(i: &aws_sdk_ec2::types::Instance, t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Drivers {
    let modes = market::boot_modes(t);
    let boot_mode = i
        .current_instance_boot_mode()
        .map(|m| m.as_str().to_owned())
        .or_else(|| i.boot_mode().map(|m| m.as_str().to_owned()))
        // A type that boots one way runs an image that boots that way.
        .or_else(|| (modes.len() == 1).then(|| modes[0].clone()))
        // EC2's default for an image that does not say: legacy BIOS on x86, UEFI on Arm.
        .unwrap_or_else(|| match i.architecture().map(|a| a.as_str()) {
            Some("arm64") => "uefi".into(),
            _ => "legacy-bios".into(),
        });
    let virtualizations = market::virtualization_types(t);
    // What the instance says, when its type can run that at all; else what its type runs.
    let virtualization = i
        .virtualization_type()
        .map(|v| v.as_str().to_owned())
        .filter(|v| virtualizations.contains(v))
        .or_else(|| virtualizations.first().cloned())
        .unwrap_or_else(|| "hvm".into());
    Drivers {
        ena: market::ena(t) == Support::Required || i.ena_support() == Some(true),
        nvme: market::nvme(t) == Support::Required,
        boot_mode,
        virtualization,
    }
}

impl Ec2 {
    /// One small read (at most 5 instances): whether these credentials reach the account's EC2.
    pub async fn reachable(&self) -> Result<usize, AwsError> {
        let answer = self
            .client
            .describe_instances()
            .max_results(5)
            .send()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(answer
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum())
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

    pub async fn source(&self, instance_id: &str) -> Result<Option<SourceInstance>, AwsError> {
        let Some(i) = self.describe(instance_id).await? else {
            return Ok(None);
        };
        let instance_type = i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        let subnet_id = i.subnet_id().unwrap_or_default().to_owned();
        let (type_info, subnet, volumes, termination, stop, address) = futures::try_join!(
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
            self.attribute(instance_id, InstanceAttributeName::DisableApiTermination),
            self.attribute(instance_id, InstanceAttributeName::DisableApiStop),
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
        source.termination_protection = termination
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false);
        source.stop_protection = stop
            .disable_api_stop()
            .and_then(|v| v.value())
            .unwrap_or(false);
        source.elastic_ip = address.addresses().first().and_then(|a| {
            Some(ElasticIp {
                allocation_id: a.allocation_id()?.to_owned(),
                public_ip: a.public_ip().unwrap_or_default().to_owned(),
            })
        });
        Ok(Some(source))
    }

    /// The instance's user data (base64, as EC2 returns and takes it), read where it is needed
    /// rather than carried through a saga's state and history.
    pub async fn user_data(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        Ok(self
            .attribute(instance_id, InstanceAttributeName::UserData)
            .await?
            .user_data()
            .and_then(|u| u.value())
            .filter(|v| !v.is_empty())
            .map(str::to_owned))
    }

    async fn attribute(
        &self,
        instance_id: &str,
        attribute: InstanceAttributeName,
    ) -> Result<
        aws_sdk_ec2::operation::describe_instance_attribute::DescribeInstanceAttributeOutput,
        AwsError,
    > {
        self.client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(attribute)
            .send()
            .await
            .map_err(|e| classify("DescribeInstanceAttribute", e))
    }

    pub async fn placements(&self, ids: &[String]) -> Result<Vec<SourceInstance>, AwsError> {
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

    pub async fn state(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        Ok(self.describe(instance_id).await?.and_then(|i| {
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
        }))
    }

    pub async fn health(&self, instance_id: &str) -> Result<Option<InstanceHealth>, AwsError> {
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

    /// Stops `instance_id`, which IAM lets the step stop only once it carries the step's mark
    /// (see [`once_marked`]). Returns the state it was in before this call (`running`: this call
    /// stopped it; `stopping`/`stopped`: an earlier one did).
    pub async fn stop(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let answer = once_marked(|| async {
            self.client
                .stop_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .map_err(|e| classify("StopInstances", e))
        })
        .await?;
        Ok(answer
            .stopping_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .and_then(|i| i.previous_state())
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned()))
    }

    pub async fn start(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("StartInstances", e))?;
        Ok(())
    }

    /// Terminates `instance_id`, confirmed: EC2 is eventually consistent, so a NotFound may mean
    /// "launched a moment ago, not visible yet" as well as "gone". It counts as done only when a
    /// describe shows the instance terminated or shutting down; an instance nobody can see yet is
    /// a `Transient` error, and the state machine's retry terminates it once visible (a terminated
    /// instance stays visible for about an hour, far longer than a saga's retries).
    pub async fn terminate(&self, instance_id: &str) -> Result<(), AwsError> {
        let found = once_marked(|| async {
            match self
                .client
                .terminate_instances()
                .instance_ids(instance_id)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if not_found(e.code()) => Ok(false),
                Err(e) => Err(classify("TerminateInstances", e)),
            }
        })
        .await?;
        if found {
            return Ok(());
        }
        let state = self
            .describe(instance_id)
            .await?
            .and_then(|i| i.state()?.name().map(|n| n.as_str().to_owned()));
        let retry = |why: String| {
            Err(AwsError::new(
                AwsErrorKind::Transient,
                "TerminateInstances",
                Some("InvalidInstanceID.NotFound".into()),
                why,
            ))
        };
        match state.as_deref() {
            Some("terminated" | "shutting-down") => Ok(()),
            Some(other) => retry(format!(
                "{instance_id} was not found to terminate but is {other}; retry"
            )),
            None => retry(format!(
                "{instance_id} is not visible yet (EC2 is eventually consistent); retry before \
                 calling it gone"
            )),
        }
    }

    pub async fn tag(&self, resource_id: &str, key: &str, value: &str) -> Result<(), AwsError> {
        self.client
            .create_tags()
            .resources(resource_id)
            .tags(tag(key, value))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    }

    /// Several tags on `resource_id` in one call.
    pub async fn tag_all(&self, resource_id: &str, tags: &[(&str, &str)]) -> Result<(), AwsError> {
        self.client
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    }

    pub async fn tags(&self, resource_id: &str) -> Result<Tags, AwsError> {
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

    pub async fn untag(&self, resource_id: &str, key: &str) -> Result<(), AwsError> {
        self.untag_all(resource_id, &[key]).await
    }

    /// Removes the tags `keys` from `resource_id` in one call (an absent one is no error).
    pub async fn untag_all(&self, resource_id: &str, keys: &[&str]) -> Result<(), AwsError> {
        match self
            .client
            .delete_tags()
            .resources(resource_id)
            .set_tags(Some(
                keys.iter()
                    .map(|k| Tag::builder().key(*k).build())
                    .collect(),
            ))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(classify("DeleteTags", e)),
        }
    }

    pub async fn running(&self) -> Result<Vec<Routable>, AwsError> {
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
                Some(Routable {
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

    /// Spot or not, and exempt or not, of the group's members (one paginated call).
    pub async fn markets(&self, ids: Vec<String>) -> Result<Vec<(String, bool, bool)>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reservations: Vec<_> = self
            .client
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

    /// Every instance not terminated that carries `key=value`: id, tags and state.
    pub async fn marked(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, Tags, String)>, AwsError> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
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
                    tags(i.tags()),
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                ))
            })
            .collect())
    }
}

/// The waits before retrying an action that IAM permits only on a mark (tag) the saga wrote a
/// moment before: tags reach IAM's condition evaluation eventually, so an
/// `UnauthorizedOperation` right after marking is retried briefly (3.5 s in all) before it counts
/// as a refusal.
const MARK_PROPAGATION: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
];

/// `call`, retried while EC2 refuses it as `UnauthorizedOperation` (see [`MARK_PROPAGATION`]).
async fn once_marked<T, F, Fut>(mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    for wait in MARK_PROPAGATION {
        match call().await {
            Err(e) if e.code.as_deref() == Some("UnauthorizedOperation") => {
                tracing::info!(operation = %e.operation, "refused right after marking; retrying");
                tokio::time::sleep(wait).await;
            }
            answer => return answer,
        }
    }
    call().await
}
