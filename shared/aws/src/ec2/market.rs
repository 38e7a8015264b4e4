//! The market a plan reads: instance types, the VPC's subnets, and Spot prices now.

use aws_sdk_ec2::types::{Filter, InstanceType};
use chrono::{DateTime, Utc};
use spot_domain::AwsError;
use spot_domain::market::{InstanceTypeInfo, SpotPrice, SubnetInfo, Support, TypeQuery};

use super::Ec2;
use crate::error::classify;

impl Ec2 {
    /// The instance types `query` asks for, converted page by page (the SDK's full description
    /// of a type is twenty times what a plan keeps).
    pub async fn instance_types(
        &self,
        query: &TypeQuery,
    ) -> Result<Vec<InstanceTypeInfo>, AwsError> {
        let filter = |name: &str, values: Vec<String>| {
            Filter::builder()
                .name(name)
                .set_values(Some(values))
                .build()
        };
        let mut request = self.client.describe_instance_types().max_results(100);
        request = match query {
            // A filter, not `InstanceTypes`: a name EC2 does not know is left out, not an error.
            TypeQuery::Named(names) => request.filters(filter("instance-type", names.clone())),
            TypeQuery::Candidates {
                architecture,
                vcpus,
            } => {
                let mut request = request
                    .filters(filter(
                        "processor-info.supported-architecture",
                        vec![architecture.clone()],
                    ))
                    .filters(filter("supported-usage-class", vec!["spot".into()]))
                    .filters(filter("current-generation", vec!["true".into()]))
                    .filters(filter("bare-metal", vec!["false".into()]));
                if !vcpus.is_empty() {
                    let values = vcpus.iter().map(u32::to_string).collect();
                    request = request.filters(filter("vcpu-info.default-vcpus", values));
                }
                request
            }
        };
        let mut pages = request.into_paginator().items().send();
        let mut types = Vec::new();
        while let Some(t) = pages.next().await {
            let t = t.map_err(|e| classify("DescribeInstanceTypes", e))?;
            types.extend(type_info(&t));
        }
        Ok(types)
    }

    pub async fn subnets(&self, vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
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

    /// The Spot price in force now in each pool of `instance_types` (Linux).
    pub async fn spot_prices(&self, instance_types: &[String]) -> Result<Vec<SpotPrice>, AwsError> {
        self.spot_prices_since(instance_types, Utc::now()).await
    }

    /// Every Spot price change of `instance_types` (Linux) since `since`, and the price in force
    /// at `since` (EC2 answers the last change before the start time too).
    pub async fn spot_prices_since(
        &self,
        instance_types: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<SpotPrice>, AwsError> {
        let start = aws_sdk_ec2::primitives::DateTime::from_secs(since.timestamp());
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
                .start_time(start)
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
}

fn type_info(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Option<InstanceTypeInfo> {
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
        ena: ena(t),
        nvme: nvme(t),
        boot_modes: boot_modes(t),
        virtualization_types: virtualization_types(t),
    })
}

/// EC2's `required` / `supported` / `unsupported`.
fn support(value: Option<&str>) -> Support {
    match value {
        Some("required") => Support::Required,
        Some("unsupported") => Support::Unsupported,
        _ => Support::Supported,
    }
}

/// Whether the type needs, offers or lacks ENA.
pub(crate) fn ena(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Support {
    support(
        t.network_info()
            .and_then(|n| n.ena_support())
            .map(|e| e.as_str()),
    )
}

/// Whether the type exposes EBS volumes as NVMe devices.
pub(crate) fn nvme(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Support {
    support(
        t.ebs_info()
            .and_then(|e| e.nvme_support())
            .map(|e| e.as_str()),
    )
}

pub(crate) fn boot_modes(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Vec<String> {
    t.supported_boot_modes()
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect()
}

pub(crate) fn virtualization_types(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Vec<String> {
    t.supported_virtualization_types()
        .iter()
        .map(|v| v.as_str().to_owned())
        .collect()
}
