//! Which instance types can run a workload, and how the pools it could go to rank: price weighted
//! by the interruption band, every pool through the gatekeeper first, every pool left out with its
//! reason. Both sagas plan with these.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::instance::{Drivers, SourceInstance};
use crate::market::catalog::Catalog;
use crate::market::{Exclusion, ExclusionReason};
use crate::pool::PoolKey;

/// An instance type as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTypeInfo {
    pub instance_type: String,
    pub architectures: Vec<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub spot: bool,
    pub current_generation: bool,
    pub bare_metal: bool,
    /// ENA: `required` by Nitro types.
    #[serde(default)]
    pub ena: Support,
    /// EBS volumes as NVMe devices: `required` by Nitro types.
    #[serde(default)]
    pub nvme: Support,
    /// `legacy-bios`, `uefi`; empty when EC2 did not say.
    #[serde(default)]
    pub boot_modes: Vec<String>,
    /// `hvm`, `paravirtual`; empty when EC2 did not say.
    #[serde(default)]
    pub virtualization_types: Vec<String>,
}

/// Whether an instance type needs, offers or lacks a feature, as EC2 says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Required,
    /// Offered, or not said.
    #[default]
    Supported,
    Unsupported,
}

/// Why a candidate type could not run the source's OS, if it could not.
pub fn incompatibility(drivers: Option<&Drivers>, t: &InstanceTypeInfo) -> Option<String> {
    let d = drivers?;
    if t.ena == Support::Required && !d.ena {
        Some("requires ENA, which the source's OS has not shown (it runs without it)".into())
    } else if t.nvme == Support::Required && !d.nvme {
        Some("exposes EBS as NVMe; the source runs on a type without NVMe".into())
    } else if !t.boot_modes.is_empty() && !t.boot_modes.contains(&d.boot_mode) {
        Some(format!(
            "boots {} only; the source boots {}",
            t.boot_modes.join("/"),
            d.boot_mode
        ))
    } else if !t.virtualization_types.is_empty()
        && !t.virtualization_types.contains(&d.virtualization)
    {
        Some(format!(
            "runs {} images only; the source's is {}",
            t.virtualization_types.join("/"),
            d.virtualization
        ))
    } else {
        None
    }
}

/// How far a candidate may exceed the source: a clone twice the size is a different workload bill.
pub const MAX_OVERSIZE: u64 = 2;

/// What a plan asks EC2 for: a plan then reads tens of types, not the region's hundreds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeQuery {
    /// Exactly the types the owner named, whatever their architecture (so a misfit is
    /// explained, and a name EC2 does not know is reported as unknown).
    Named(Vec<String>),
    /// What [`compatible_types`] could keep: the architecture, Spot-capable, current generation,
    /// not bare metal and, when the window is short enough for one filter, vCPUs within [v, 2v]
    /// of a source (empty: any).
    Candidates {
        architecture: String,
        vcpus: Vec<u32>,
    },
}

/// Values EC2 accepts in one filter, with room to spare.
const MAX_FILTER_VALUES: usize = 100;

impl TypeQuery {
    pub fn new(architecture: &str, source_vcpus: &[u32], wanted: &[String]) -> Self {
        if !wanted.is_empty() {
            return Self::Named(wanted.to_vec());
        }
        let vcpus: BTreeSet<u32> = source_vcpus
            .iter()
            .flat_map(|&v| v..=v.saturating_mul(MAX_OVERSIZE as u32))
            .collect();
        Self::Candidates {
            architecture: architecture.to_owned(),
            vcpus: if vcpus.len() <= MAX_FILTER_VALUES {
                vcpus.into_iter().collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// Instance types that can run the source: same architecture, at least its vCPUs and memory (at
/// most twice), Spot-capable, current generation, not bare metal. `wanted` narrows the set.
pub fn compatible_types(
    source: &SourceInstance,
    types: &[InstanceTypeInfo],
    wanted: &[String],
) -> (Vec<InstanceTypeInfo>, Vec<Exclusion>) {
    let mut ok = Vec::new();
    let mut excluded = Vec::new();
    for t in types {
        let name = &t.instance_type;
        if !wanted.is_empty() && !wanted.contains(name) {
            continue;
        }
        use ExclusionReason as R;
        let reason = if !t.architectures.contains(&source.architecture) {
            Some((
                R::Architecture,
                format!(
                    "architecture {} ≠ {}",
                    t.architectures.join("/"),
                    source.architecture
                ),
            ))
        } else if t.vcpus < source.vcpus {
            Some((R::TooSmall, format!("{} vCPU < {}", t.vcpus, source.vcpus)))
        } else if t.memory_mib < source.memory_mib {
            Some((
                R::TooSmall,
                format!("{} MiB < {} MiB", t.memory_mib, source.memory_mib),
            ))
        } else if u64::from(t.vcpus) > MAX_OVERSIZE * u64::from(source.vcpus)
            || t.memory_mib > MAX_OVERSIZE * source.memory_mib
        {
            Some((R::TooLarge, "more than twice the source's size".to_owned()))
        } else if !t.spot {
            Some((R::NotOnSpot, "not offered on Spot".to_owned()))
        } else if t.bare_metal {
            Some((R::BareMetal, "bare metal".to_owned()))
        } else if let Some(why) = incompatibility(source.drivers.as_ref(), t) {
            Some((R::Incompatible, why))
        } else if !t.current_generation && !wanted.contains(name) {
            Some((R::PreviousGeneration, "previous generation".to_owned()))
        } else {
            None
        };
        match reason {
            // Only explicit wishes are worth explaining; the catalog holds hundreds of misfits.
            Some((reason, detail)) if !wanted.is_empty() => {
                excluded.push(Exclusion::new(name, reason, detail));
            }
            Some(_) => {}
            None => ok.push(t.clone()),
        }
    }
    for w in wanted {
        if !types.iter().any(|t| &t.instance_type == w) {
            excluded.push(Exclusion::new(
                w,
                ExclusionReason::UnknownType,
                "unknown instance type in this region",
            ));
        }
    }
    (ok, excluded)
}

/// A subnet the clone could be launched in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    pub subnet_id: String,
    pub az_name: String,
    pub az_id: String,
    pub vpc_id: String,
    pub available_ips: u32,
}

/// The current Spot price of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotPrice {
    pub instance_type: String,
    pub az_name: String,
    pub usd_per_hour: f64,
    pub at: DateTime<Utc>,
}

/// A pool the clone can go to, with what it would save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub pool: PoolKey,
    pub instance_type: String,
    pub az_name: String,
    pub subnet_id: String,
    pub spot_price: f64,
    pub interruption_band: u8,
    pub interruption_label: String,
    /// Saving against the source's on-demand price, USD per hour.
    pub saving_per_hour: f64,
    /// Lower is better: the Spot price weighted by the interruption band.
    pub score: f64,
}

/// Weight of each interruption band (index 0-4) on the ranking score.
const BAND_PENALTY: [f64; 5] = [0.0, 0.05, 0.10, 0.20, 0.40];

/// Candidates with a band at or above this are "low confidence" (>15 % interruptions).
pub const LOW_CONFIDENCE_BAND: u8 = 3;

/// What the ranking works from.
pub struct Market<'a> {
    pub region: &'a str,
    pub subnets: &'a [SubnetInfo],
    pub prices: &'a [SpotPrice],
    pub quarantined: &'a BTreeSet<PoolKey>,
    /// Pools that just refused capacity, and other pools to skip.
    pub unavailable: &'a BTreeSet<PoolKey>,
    pub catalog: &'a Catalog,
    pub on_demand_price: f64,
}

/// Ranks every (compatible type, AZ with a subnet in the source's VPC) pool. Quarantined pools,
/// pools without a Spot price or not cheaper than on-demand are excluded with their reason.
pub fn rank(
    source: &SourceInstance,
    types: &[InstanceTypeInfo],
    wanted_azs: &[String],
    market: &Market<'_>,
) -> (Vec<Candidate>, Vec<Exclusion>) {
    let mut excluded = Vec::new();
    // One subnet per AZ: the source's own where possible, else the roomiest.
    let mut subnets: Vec<&SubnetInfo> = Vec::new();
    for s in market.subnets.iter().filter(|s| s.vpc_id == source.vpc_id) {
        if !wanted_azs.is_empty() && !wanted_azs.contains(&s.az_id) {
            continue;
        }
        match subnets.iter_mut().find(|chosen| chosen.az_id == s.az_id) {
            Some(chosen)
                if chosen.subnet_id != source.subnet_id
                    && (s.subnet_id == source.subnet_id
                        || s.available_ips > chosen.available_ips) =>
            {
                *chosen = s;
            }
            Some(_) => {}
            None => subnets.push(s),
        }
    }
    for az in wanted_azs {
        if !subnets.iter().any(|s| &s.az_id == az) {
            excluded.push(Exclusion::new(
                az,
                ExclusionReason::NoSubnet,
                format!("no subnet of {} in this AZ", source.vpc_id),
            ));
        }
    }
    let mut candidates = Vec::new();
    for t in types {
        let band = market.catalog.band(market.region, &t.instance_type);
        for subnet in &subnets {
            let Ok(pool) = PoolKey::new(market.region, &subnet.az_id, &t.instance_type) else {
                continue;
            };
            if market.quarantined.contains(&pool) {
                excluded.push(Exclusion::new(
                    pool.to_string(),
                    ExclusionReason::Quarantined,
                    "quarantined (recent interruption or rebalance signal)",
                ));
                continue;
            }
            if market.unavailable.contains(&pool) {
                excluded.push(Exclusion::new(
                    pool.to_string(),
                    ExclusionReason::CapacityHold,
                    "no capacity at the last attempt",
                ));
                continue;
            }
            let Some(price) = market
                .prices
                .iter()
                .filter(|p| p.instance_type == t.instance_type && p.az_name == subnet.az_name)
                .max_by_key(|p| p.at)
            else {
                excluded.push(Exclusion::new(
                    pool.to_string(),
                    ExclusionReason::NoSpotPrice,
                    "no Spot price",
                ));
                continue;
            };
            let saving = market.on_demand_price - price.usd_per_hour;
            if saving <= 0.0 {
                excluded.push(Exclusion::new(
                    pool.to_string(),
                    ExclusionReason::NotCheaper,
                    format!("Spot ${:.4}/h is not below on-demand", price.usd_per_hour),
                ));
                continue;
            }
            // Unknown to the advisor: treated as the riskiest band.
            let (index, label) = band.as_ref().map_or((4, "unknown"), |b| (b.index, b.label));
            candidates.push(Candidate {
                score: price.usd_per_hour * (1.0 + BAND_PENALTY[usize::from(index.min(4))]),
                pool,
                instance_type: t.instance_type.clone(),
                az_name: subnet.az_name.clone(),
                subnet_id: subnet.subnet_id.clone(),
                spot_price: price.usd_per_hour,
                interruption_band: index,
                interruption_label: label.to_owned(),
                saving_per_hour: saving,
            });
        }
    }
    candidates.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(a.interruption_band.cmp(&b.interruption_band))
            .then(a.pool.cmp(&b.pool))
    });
    (candidates, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn source() -> SourceInstance {
        crate::testing::source_instance()
    }

    fn t(name: &str, arch: &str, vcpus: u32, gib: u64) -> InstanceTypeInfo {
        InstanceTypeInfo {
            instance_type: name.into(),
            architectures: vec![arch.into()],
            vcpus,
            memory_mib: gib * 1024,
            spot: true,
            current_generation: true,
            bare_metal: false,
            ena: Support::Required,
            nvme: Support::Required,
            boot_modes: vec!["legacy-bios".into(), "uefi".into()],
            virtualization_types: vec!["hvm".into()],
        }
    }

    #[test]
    fn a_type_needing_what_the_sources_os_has_not_shown_is_excluded_with_why() {
        let xen = Drivers {
            ena: false,
            nvme: false,
            boot_mode: "legacy-bios".into(),
            virtualization: "hvm".into(),
        };
        let nitro = t("m5.large", "x86_64", 2, 8);
        let mut old = t("m4.large", "x86_64", 2, 8);
        old.ena = Support::Unsupported;
        old.nvme = Support::Unsupported;
        old.boot_modes = vec!["legacy-bios".into()];
        assert!(incompatibility(Some(&xen), &nitro).unwrap().contains("ENA"));
        let ena_only = Drivers {
            ena: true,
            ..xen.clone()
        };
        assert!(
            incompatibility(Some(&ena_only), &nitro)
                .unwrap()
                .contains("NVMe")
        );
        assert_eq!(incompatibility(Some(&xen), &old), None);
        let uefi = Drivers {
            ena: true,
            nvme: true,
            boot_mode: "uefi".into(),
            virtualization: "hvm".into(),
        };
        assert!(
            incompatibility(Some(&uefi), &old)
                .unwrap()
                .contains("boots legacy-bios only")
        );
        assert_eq!(incompatibility(Some(&uefi), &nitro), None);
        let paravirtual = Drivers {
            virtualization: "paravirtual".into(),
            ..xen.clone()
        };
        assert!(
            incompatibility(Some(&paravirtual), &old)
                .unwrap()
                .contains("hvm images only")
        );
        assert_eq!(
            incompatibility(None, &nitro),
            None,
            "unknown drivers: no judgement"
        );

        let mut source = source();
        source.drivers = Some(xen);
        let wanted = vec!["m5.large".to_owned(), "m4.large".to_owned()];
        let (ok, excluded) = compatible_types(&source, &[nitro, old], &wanted);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].instance_type, "m4.large");
        assert_eq!(excluded[0].reason, ExclusionReason::Incompatible);
    }

    #[test]
    fn a_plan_asks_for_the_named_types_or_the_vcpu_window_of_its_sources() {
        let window = |q: TypeQuery| match q {
            TypeQuery::Candidates { vcpus, .. } => vcpus,
            TypeQuery::Named(names) => panic!("named {names:?}"),
        };
        assert_eq!(
            window(TypeQuery::new("x86_64", &[2, 3], &[])),
            [2, 3, 4, 5, 6]
        );
        assert_eq!(
            TypeQuery::new("arm64", &[2], &["m6g.large".into()]),
            TypeQuery::Named(vec!["m6g.large".into()])
        );
        assert!(window(TypeQuery::new("x86_64", &[192], &[])).is_empty());
        // Every type the window keeps is one compatible_types keeps on vCPUs.
        let two = window(TypeQuery::new("x86_64", &[2], &[]));
        for vcpus in 1..=8 {
            let kept = !compatible_types(&source(), &[t("x", "x86_64", vcpus, 8)], &[])
                .0
                .is_empty();
            assert_eq!(kept, two.contains(&vcpus), "{vcpus} vCPU");
        }
    }

    #[test]
    fn compatible_types_match_architecture_and_size_within_twice() {
        let types = [
            t("m5.large", "x86_64", 2, 8),
            t("m6i.large", "x86_64", 2, 8),
            t("m6g.large", "arm64", 2, 8),
            t("c5.large", "x86_64", 2, 4),
            t("m5.xlarge", "x86_64", 4, 16),
            t("m5.2xlarge", "x86_64", 8, 32),
        ];
        let (ok, _) = compatible_types(&source(), &types, &[]);
        let names: Vec<&str> = ok.iter().map(|t| t.instance_type.as_str()).collect();
        assert_eq!(names, ["m5.large", "m6i.large", "m5.xlarge"]);

        let (ok, excluded) = compatible_types(
            &source(),
            &types,
            &["m6g.large".into(), "m6i.large".into(), "z9.huge".into()],
        );
        assert_eq!(ok.len(), 1);
        assert!(
            excluded
                .iter()
                .any(|e| e.what == "m6g.large" && e.reason == ExclusionReason::Architecture)
        );
        assert!(
            excluded
                .iter()
                .any(|e| e.what == "z9.huge" && e.reason == ExclusionReason::UnknownType)
        );
    }

    fn subnet(id: &str, az: &str, az_id: &str, ips: u32) -> SubnetInfo {
        SubnetInfo {
            subnet_id: id.into(),
            az_name: az.into(),
            az_id: az_id.into(),
            vpc_id: "vpc-1".into(),
            available_ips: ips,
        }
    }

    fn price(t: &str, az: &str, usd: f64) -> SpotPrice {
        SpotPrice {
            instance_type: t.into(),
            az_name: az.into(),
            usd_per_hour: usd,
            at: Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn ranking_prefers_cheap_stable_pools_and_explains_every_exclusion() {
        let catalog = Catalog::shipped();
        let types = [
            t("c5.xlarge", "x86_64", 4, 8),
            t("m5.large", "x86_64", 2, 8),
        ];
        let subnets = [
            subnet("subnet-a", "us-east-1a", "use1-az6", 100),
            subnet("subnet-b", "us-east-1b", "use1-az1", 100),
            subnet("subnet-c", "us-east-1c", "use1-az2", 100),
            SubnetInfo {
                vpc_id: "vpc-other".into(),
                ..subnet("subnet-x", "us-east-1d", "use1-az4", 100)
            },
        ];
        // m5.large is band 3 (15-20 %), c5.xlarge band 0 in the shipped feed.
        let prices = [
            price("m5.large", "us-east-1a", 0.040),
            price("m5.large", "us-east-1b", 0.041),
            price("c5.xlarge", "us-east-1a", 0.045),
            price("c5.xlarge", "us-east-1b", 0.200),
        ];
        let quarantined =
            BTreeSet::from([PoolKey::new("us-east-1", "use1-az6", "c5.xlarge").unwrap()]);
        let market = Market {
            region: "us-east-1",
            subnets: &subnets,
            prices: &prices,
            quarantined: &quarantined,
            unavailable: &BTreeSet::new(),
            catalog,
            on_demand_price: 0.096,
        };
        let (ranked, excluded) = rank(&source(), &types, &[], &market);
        let pools: Vec<String> = ranked.iter().map(|c| c.pool.to_string()).collect();
        assert_eq!(
            pools,
            ["us-east-1#use1-az6#m5.large", "us-east-1#use1-az1#m5.large"]
        );
        assert!((ranked[0].saving_per_hour - 0.056).abs() < 1e-9);
        assert_eq!(ranked[0].interruption_band, 3);
        let reason = |what: &str| excluded.iter().find(|e| e.what == what).map(|e| e.reason);
        assert_eq!(
            reason("us-east-1#use1-az6#c5.xlarge"),
            Some(ExclusionReason::Quarantined),
            "the cheapest stable pool is skipped"
        );
        assert_eq!(
            reason("us-east-1#use1-az1#c5.xlarge"),
            Some(ExclusionReason::NotCheaper)
        );
        assert_eq!(
            reason("us-east-1#use1-az2#m5.large"),
            Some(ExclusionReason::NoSpotPrice)
        );
        assert!(!pools.iter().any(|p| p.contains("use1-az4")), "other VPC");
    }

    #[test]
    fn the_interruption_band_outweighs_a_small_price_difference() {
        let catalog = Catalog::shipped();
        let types = [
            t("c5.xlarge", "x86_64", 4, 8),
            t("m5.large", "x86_64", 2, 8),
        ];
        let subnets = [subnet("subnet-a", "us-east-1a", "use1-az6", 100)];
        // m5.large (band 3, ×1.2) at 0.040 scores 0.048; c5.xlarge (band 0) at 0.045 scores 0.045.
        let prices = [
            price("m5.large", "us-east-1a", 0.040),
            price("c5.xlarge", "us-east-1a", 0.045),
        ];
        let market = Market {
            region: "us-east-1",
            subnets: &subnets,
            prices: &prices,
            quarantined: &BTreeSet::new(),
            unavailable: &BTreeSet::new(),
            catalog,
            on_demand_price: 0.096,
        };
        let (ranked, _) = rank(&source(), &types, &[], &market);
        assert_eq!(ranked[0].instance_type, "c5.xlarge");
    }
}
