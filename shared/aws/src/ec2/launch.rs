//! Spot launches: the switch's clone from its image, a group's replacement from the group's own
//! launch template or configuration; one attempt per pool, capacity refusals told apart; and a
//! retried step's launch found again by its tags.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceMetadataProtocolState, InstanceMetadataTagsState,
    InstanceNetworkInterfaceSpecification, InstanceType, LaunchTemplateSpecification, MarketType,
    ResourceType, RunInstancesMonitoringEnabled, SpotInstanceType, SpotMarketOptions,
    TagSpecification,
};
use spot_domain::AwsError;
use spot_domain::instance::{GroupLaunchSpec, LaunchSpec, Launched, LaunchedInstance};
use spot_domain::saga::swap::LaunchSource;
use spot_domain::tags::{
    CREATED_VIA, FAILOVER_TAG, SOURCE_TAG, SWAP_TAG, SWITCH_TAG, VIA_FAILOVER, VIA_SWITCH,
};

use super::{Ec2, tag};
use crate::autoscaling::LaunchConfiguration;
use crate::error::{classify, invalid_data};

impl Ec2 {
    /// The network interfaces of a template's `version` (`$Default` when none is named), as a
    /// request's interfaces.
    async fn template_interfaces(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<InstanceNetworkInterfaceSpecification>, AwsError> {
        let answer = self
            .client
            .describe_launch_template_versions()
            .set_launch_template_id(id.map(str::to_owned))
            .set_launch_template_name(name.map(str::to_owned))
            .versions(version.unwrap_or("$Default"))
            .send()
            .await
            .map_err(|e| classify("DescribeLaunchTemplateVersions", e))?;
        let Some(data) = answer
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
        else {
            return Ok(Vec::new());
        };
        Ok(data
            .network_interfaces()
            .iter()
            .map(|n| {
                InstanceNetworkInterfaceSpecification::builder()
                    .set_device_index(n.device_index())
                    .set_network_card_index(n.network_card_index())
                    .set_subnet_id(n.subnet_id().map(str::to_owned))
                    .set_groups((!n.groups().is_empty()).then(|| n.groups().to_vec()))
                    .set_associate_public_ip_address(n.associate_public_ip_address())
                    .set_delete_on_termination(n.delete_on_termination())
                    .set_description(n.description().map(str::to_owned))
                    .set_interface_type(n.interface_type().map(str::to_owned))
                    .set_ipv6_address_count(n.ipv6_address_count())
                    .set_secondary_private_ip_address_count(n.secondary_private_ip_address_count())
                    .build()
            })
            .collect())
    }
}

/// `interfaces` with the primary one (device index 0, or the first) in `subnet_id`.
fn on_subnet(
    mut interfaces: Vec<InstanceNetworkInterfaceSpecification>,
    subnet_id: &str,
) -> Vec<InstanceNetworkInterfaceSpecification> {
    let primary = interfaces
        .iter()
        .position(|n| n.device_index() == Some(0))
        .unwrap_or(0);
    if let Some(n) = interfaces.get_mut(primary) {
        n.subnet_id = Some(subnet_id.to_owned());
        n.device_index.get_or_insert(0);
    }
    interfaces
}

/// Error codes EC2 gives a request this instance type or AZ cannot serve: the type is not
/// offered in the AZ (`Unsupported`), the image does not suit the type (ENA, NVMe, boot mode,
/// architecture: `InvalidParameterCombination`, `InvalidParameterValue`), or the type cannot run
/// as asked (`UnsupportedOperation`). Another pool may serve it; one that fails in every pool
/// fails the step with every reason.
pub const POOL_REFUSALS: &[&str] = &[
    "Unsupported",
    "UnsupportedOperation",
    "InvalidParameterCombination",
    "InvalidParameterValue",
];

/// Error codes meaning "this pool has no Spot capacity for you now": try another pool.
pub const NO_CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
];

type RunInstances = aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;

/// One instance, on Spot (one-time, terminated on interruption) or, unless `spot`, on-demand,
/// with `tags` on it and its volumes, under `client_token`. One attempt: EC2 answers a capacity
/// shortage with HTTP 500, which the SDK would retry in the same pool (seconds of backoff), and
/// the next pool is the better retry; throttling fails the step as `Transient` and the state
/// machine retries it (the instance is found by its tags, if it was launched).
async fn run_one(
    request: RunInstances,
    tags: &[(String, String)],
    client_token: &str,
    spot: bool,
) -> Result<Launched, AwsError> {
    let mut marks = TagSpecification::builder().resource_type(ResourceType::Instance);
    let mut volume_marks = TagSpecification::builder().resource_type(ResourceType::Volume);
    for (k, v) in tags {
        marks = marks.tags(tag(k, v));
        volume_marks = volume_marks.tags(tag(k, v));
    }
    let mut request = request
        .min_count(1)
        .max_count(1)
        .client_token(client_token)
        .tag_specifications(marks.build())
        .tag_specifications(volume_marks.build());
    if spot {
        request = request.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        );
    }
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
        Err(e) if e.code().is_some_and(|c| POOL_REFUSALS.contains(&c)) => {
            Ok(Launched::Refused(format!(
                "{}: {}",
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default()
            )))
        }
        Err(e) => Err(classify("RunInstances", e)),
    }
}

/// Every instance, not terminated, that carries every one of `tags`: how a retried step finds
/// what an earlier attempt launched, and a rollback what its saga left.
async fn tagged_instances(
    client: &Client,
    tags: &[(&str, &str)],
) -> Result<Vec<LaunchedInstance>, AwsError> {
    let filters = tags
        .iter()
        .map(|(k, v)| {
            Filter::builder()
                .name(format!("tag:{k}"))
                .values(*v)
                .build()
        })
        .collect();
    live_instances(client, filters).await
}

/// Every instance, not terminated, launched with one of `tokens` (RunInstances' ClientToken): a
/// retried step finds its launch this way too, because EC2's tag filters can lag behind a launch
/// and the retry may try another pool (another token).
async fn launched_with(
    client: &Client,
    tokens: &[String],
) -> Result<Vec<LaunchedInstance>, AwsError> {
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let by_token = Filter::builder()
        .name("client-token")
        .set_values(Some(tokens.to_vec()))
        .build();
    live_instances(client, vec![by_token]).await
}

async fn live_instances(
    client: &Client,
    filters: Vec<Filter>,
) -> Result<Vec<LaunchedInstance>, AwsError> {
    let mut request = client.describe_instances().filters(
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    );
    for filter in filters {
        request = request.filters(filter);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| classify("DescribeInstances", e))?;
    Ok(answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            Some(LaunchedInstance {
                instance_id: i.instance_id()?.to_owned(),
                instance_type: i.instance_type()?.as_str().to_owned(),
                az_name: i.placement()?.availability_zone()?.to_owned(),
            })
        })
        .collect())
}

impl Ec2 {
    /// The clone a previous attempt of `switch_id` launched, if any (not terminated): by its
    /// marks, else by the client `tokens` its launches used.
    pub async fn clone_of(
        &self,
        switch_id: &str,
        tokens: &[String],
    ) -> Result<Option<LaunchedInstance>, AwsError> {
        if let Some(clone) = self.clones_of(switch_id).await?.into_iter().next() {
            return Ok(Some(clone));
        }
        Ok(launched_with(&self.client, tokens)
            .await?
            .into_iter()
            .next())
    }

    /// Every clone `switch_id` launched that is not terminated (found by its marks).
    pub async fn clones_of(&self, switch_id: &str) -> Result<Vec<LaunchedInstance>, AwsError> {
        tagged_instances(
            &self.client,
            &[(SWITCH_TAG, switch_id), (CREATED_VIA, VIA_SWITCH)],
        )
        .await
    }

    /// The replacement a previous attempt of `swap_id` launched for `old`, if any (not
    /// terminated): by its marks, else by the client `tokens` its launches used.
    pub async fn replacement_of(
        &self,
        swap_id: &str,
        old: &str,
        tokens: &[String],
    ) -> Result<Option<LaunchedInstance>, AwsError> {
        let tagged =
            tagged_instances(&self.client, &[(SWAP_TAG, swap_id), (SOURCE_TAG, old)]).await?;
        if let Some(found) = tagged.into_iter().next() {
            return Ok(Some(found));
        }
        Ok(launched_with(&self.client, tokens)
            .await?
            .into_iter()
            .next())
    }

    pub async fn launch_clone(&self, spec: &LaunchSpec) -> Result<Launched, AwsError> {
        self.launch_instance(spec, true).await
    }

    /// One instance as `spec` says, Spot (one-time, terminated on interruption) or on-demand.
    pub async fn launch_instance(
        &self,
        spec: &LaunchSpec,
        spot: bool,
    ) -> Result<Launched, AwsError> {
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
            .set_user_data(spec.user_data.clone())
            .monitoring(
                RunInstancesMonitoringEnabled::builder()
                    .enabled(spec.detailed_monitoring)
                    .build(),
            );
        if let Some(m) = &spec.metadata {
            request = request.metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .set_http_tokens(m.http_tokens.as_deref().map(HttpTokensState::from))
                    .set_http_endpoint(
                        m.http_endpoint
                            .as_deref()
                            .map(InstanceMetadataEndpointState::from),
                    )
                    .set_http_put_response_hop_limit(m.hop_limit)
                    .set_instance_metadata_tags(
                        m.instance_metadata_tags
                            .as_deref()
                            .map(InstanceMetadataTagsState::from),
                    )
                    .set_http_protocol_ipv6(
                        m.http_protocol_ipv6
                            .as_deref()
                            .map(InstanceMetadataProtocolState::from),
                    )
                    .build(),
            );
        }
        if let Some(arn) = &spec.iam_instance_profile_arn {
            request = request
                .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        run_one(request, &spec.tags, &spec.client_token, spot).await
    }

    /// The replacement failover `failover_id` launched, if any (not terminated): by its mark, else
    /// by the client `tokens` its launches used.
    pub async fn failover_launch(
        &self,
        failover_id: &str,
        tokens: &[String],
    ) -> Result<Option<LaunchedInstance>, AwsError> {
        // Both asked at once: a failover's first launch waits on this.
        let marks = [(FAILOVER_TAG, failover_id), (CREATED_VIA, VIA_FAILOVER)];
        let (tagged, by_token) = tokio::try_join!(
            tagged_instances(&self.client, &marks),
            launched_with(&self.client, tokens)
        )?;
        Ok(tagged.into_iter().chain(by_token).next())
    }

    /// Every instance, not terminated, launched with one of `tokens`.
    pub async fn launched_with(
        &self,
        tokens: &[String],
    ) -> Result<Vec<LaunchedInstance>, AwsError> {
        launched_with(&self.client, tokens).await
    }

    /// A group's replacement, from its launch template, or from `configuration` for a group that
    /// launches from a launch configuration; on Spot unless `spot` is false.
    pub async fn launch_replacement(
        &self,
        spec: &GroupLaunchSpec,
        configuration: Option<&LaunchConfiguration>,
        spot: bool,
    ) -> Result<Launched, AwsError> {
        let request = match (&spec.source, configuration) {
            (LaunchSource::Template { id, name, version }, _) => {
                let name = id.is_none().then(|| name.clone()).flatten();
                let request = self.client.run_instances().launch_template(
                    LaunchTemplateSpecification::builder()
                        .set_launch_template_id(id.clone())
                        .set_launch_template_name(name.clone())
                        .set_version(version.clone())
                        .build(),
                );
                // A template that declares network interfaces cannot be combined with a
                // top-level SubnetId (InvalidParameterCombination): the pool's subnet goes on the
                // primary interface, and the request's interfaces replace the template's.
                let interfaces = self
                    .template_interfaces(id.as_deref(), name.as_deref(), version.as_deref())
                    .await?;
                if !interfaces.is_empty() {
                    let request = request
                        .set_network_interfaces(Some(on_subnet(interfaces, &spec.subnet_id)))
                        .instance_type(InstanceType::from(spec.instance_type.as_str()));
                    return run_one(request, &spec.tags, &spec.client_token, spot).await;
                }
                request
            }
            (LaunchSource::Configuration { .. }, Some(c)) => {
                let mut request = self
                    .client
                    .run_instances()
                    .set_image_id(c.image_id.clone())
                    .set_key_name(c.key_name.clone())
                    .set_security_group_ids(
                        (!c.security_groups.is_empty()).then(|| c.security_groups.clone()),
                    )
                    .set_user_data(c.user_data.clone())
                    .set_ebs_optimized(c.ebs_optimized);
                if let Some(profile) = &c.iam_instance_profile {
                    let spec = if profile.starts_with("arn:") {
                        IamInstanceProfileSpecification::builder().arn(profile)
                    } else {
                        IamInstanceProfileSpecification::builder().name(profile)
                    };
                    request = request.iam_instance_profile(spec.build());
                }
                request
            }
            (LaunchSource::Configuration { name }, None) => {
                return Err(invalid_data(
                    "RunInstances",
                    format!("launch configuration {name} was not read"),
                ));
            }
        }
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .subnet_id(&spec.subnet_id);
        run_one(request, &spec.tags, &spec.client_token, spot).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pools_subnet_goes_on_the_primary_interface_only() {
        let interface = |index: i32, subnet: Option<&str>| {
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(index)
                .set_subnet_id(subnet.map(str::to_owned))
                .build()
        };
        let placed = on_subnet(
            vec![interface(1, Some("subnet-second")), interface(0, None)],
            "subnet-pool",
        );
        assert_eq!(placed[0].subnet_id(), Some("subnet-second"));
        assert_eq!(placed[1].subnet_id(), Some("subnet-pool"));
        let unnumbered = on_subnet(
            vec![InstanceNetworkInterfaceSpecification::builder().build()],
            "subnet-pool",
        );
        assert_eq!(unnumbered[0].device_index(), Some(0));
        assert_eq!(unnumbered[0].subnet_id(), Some("subnet-pool"));
    }
}
