//! The atomic switch: which standalone on-demand instances may move to Spot, which pool to move
//! them to, how risky the move is, and the data the saga's steps pass to each other.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::Environment;
use crate::catalog::Catalog;
use crate::pool::PoolKey;
use crate::waste::{EXEMPT_TAG, Tags};

/// Tags the saga adds to the instance it launches.
pub const MANAGED_BY: (&str, &str) = ("ManagedBy", "SpotOptimizer");
pub const CREATED_VIA: (&str, &str) = ("CreatedVia", "AtomicSwitch");
pub const SOURCE_TAG: &str = "SourceInstance";
/// Carries the switch id on everything the saga creates, so a retried step finds its own work.
pub const SWITCH_TAG: &str = "spot-optimizer:switch";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchMode {
    /// Plan and record the counterfactual saving; change nothing.
    Shadow,
    Live,
}

impl FromStr for SwitchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shadow" => Ok(Self::Shadow),
            "live" => Ok(Self::Live),
            _ => Err(format!("mode `{s}` is neither shadow nor live")),
        }
    }
}

/// An explicit choice of target pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetChoice {
    #[serde(default)]
    pub instance_types: Vec<String>,
    #[serde(default)]
    pub az_ids: Vec<String>,
}

/// The saga's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRequest {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub mode: SwitchMode,
    #[serde(default)]
    pub target: Option<TargetChoice>,
}

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
    /// Base64, as EC2 returns and takes it.
    pub user_data: Option<String>,
    pub elastic_ip: Option<ElasticIp>,
    pub tags: Tags,
}

/// Why an instance is not a switch candidate; empty means eligible.
pub fn ineligibility(source: &SourceInstance) -> Vec<String> {
    let mut reasons = Vec::new();
    if source.lifecycle.as_deref() == Some("spot") {
        reasons.push("already a Spot instance".to_owned());
    }
    if source.state != "running" {
        reasons.push(format!("state is {}, not running", source.state));
    }
    if source.tags.contains_key("aws:autoscaling:groupName") {
        reasons.push("member of an Auto Scaling group (the ASG swap handles it)".to_owned());
    }
    if let Some(k) = [
        "eks:cluster-name",
        "karpenter.sh/nodepool",
        "karpenter.sh/provisioner-name",
    ]
    .iter()
    .find(|k| source.tags.contains_key(**k))
    .or_else(|| {
        source
            .tags
            .keys()
            .any(|k| k.starts_with("kubernetes.io/cluster/"))
            .then_some(&"kubernetes.io/cluster/*")
    }) {
        reasons.push(format!(
            "Kubernetes node (tag {k}): its cluster autoscaler owns it"
        ));
    }
    if source.root_device_type != "ebs" {
        reasons.push("instance-store root: cannot be imaged".to_owned());
    }
    if source.tags.contains_key(EXEMPT_TAG) {
        reasons.push(format!("tagged {EXEMPT_TAG}"));
    }
    if source.tags.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && source.tags.contains_key(SOURCE_TAG)
    {
        reasons.push("already a clone made by a switch".to_owned());
    }
    reasons
}

/// The user tags a replacement inherits from the instance it replaces: not `aws:` ones (EC2
/// refuses them), not the optimizer's markers, at most 46 so the optimizer's own four still fit
/// EC2's 50.
pub fn inherited_tags(tags: &Tags) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = tags
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("aws:")
                && !k.starts_with("spot-optimizer:")
                && *k != MANAGED_BY.0
                && *k != CREATED_VIA.0
                && *k != SOURCE_TAG
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    kept.truncate(46);
    kept
}

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
}

/// Something the plan left out, and why: an instance type, an AZ or a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub what: String,
    pub reason: String,
}

fn exclude(what: impl Into<String>, reason: impl Into<String>) -> Exclusion {
    Exclusion {
        what: what.into(),
        reason: reason.into(),
    }
}

/// How far a candidate may exceed the source: a clone twice the size is a different workload bill.
pub const MAX_OVERSIZE: u64 = 2;

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
        let reason = if !t.architectures.contains(&source.architecture) {
            Some(format!(
                "architecture {} ≠ {}",
                t.architectures.join("/"),
                source.architecture
            ))
        } else if t.vcpus < source.vcpus {
            Some(format!("{} vCPU < {}", t.vcpus, source.vcpus))
        } else if t.memory_mib < source.memory_mib {
            Some(format!("{} MiB < {} MiB", t.memory_mib, source.memory_mib))
        } else if u64::from(t.vcpus) > MAX_OVERSIZE * u64::from(source.vcpus)
            || t.memory_mib > MAX_OVERSIZE * source.memory_mib
        {
            Some("more than twice the source's size".to_owned())
        } else if !t.spot {
            Some("not offered on Spot".to_owned())
        } else if t.bare_metal {
            Some("bare metal".to_owned())
        } else if !t.current_generation && !wanted.contains(name) {
            Some("previous generation".to_owned())
        } else {
            None
        };
        match reason {
            // Only explicit wishes are worth explaining; the catalog holds hundreds of misfits.
            Some(reason) if !wanted.is_empty() => excluded.push(exclude(name, reason)),
            Some(_) => {}
            None => ok.push(t.clone()),
        }
    }
    for w in wanted {
        if !types.iter().any(|t| &t.instance_type == w) {
            excluded.push(exclude(w, "unknown instance type in this region"));
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
            excluded.push(exclude(
                az,
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
                excluded.push(exclude(
                    pool.to_string(),
                    "quarantined (recent interruption or rebalance signal)",
                ));
                continue;
            }
            if market.unavailable.contains(&pool) {
                excluded.push(exclude(pool.to_string(), "no capacity at the last attempt"));
                continue;
            }
            let Some(price) = market
                .prices
                .iter()
                .filter(|p| p.instance_type == t.instance_type && p.az_name == subnet.az_name)
                .max_by_key(|p| p.at)
            else {
                excluded.push(exclude(pool.to_string(), "no Spot price"));
                continue;
            };
            let saving = market.on_demand_price - price.usd_per_hour;
            if saving <= 0.0 {
                excluded.push(exclude(
                    pool.to_string(),
                    format!("Spot ${:.4}/h is not below on-demand", price.usd_per_hour),
                ));
                continue;
            }
            // Unknown to the advisor: treated as the riskiest band.
            let (index, label) = band
                .as_ref()
                .map_or((4, "unknown".to_owned()), |b| (b.index, b.label.clone()));
            candidates.push(Candidate {
                score: price.usd_per_hour * (1.0 + BAND_PENALTY[usize::from(index.min(4))]),
                pool,
                instance_type: t.instance_type.clone(),
                az_name: subnet.az_name.clone(),
                subnet_id: subnet.subnet_id.clone(),
                spot_price: price.usd_per_hour,
                interruption_band: index,
                interruption_label: label,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        })
    }
}

impl FromStr for Risk {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LOW" => Ok(Self::Low),
            "MEDIUM" => Ok(Self::Medium),
            "HIGH" => Ok(Self::High),
            "CRITICAL" => Ok(Self::Critical),
            _ => Err(format!("risk `{s}` is not LOW, MEDIUM, HIGH or CRITICAL")),
        }
    }
}

/// The risk of switching `source` to `best`, one level per concern, with the concerns.
pub fn risk(
    environment: Environment,
    source: &SourceInstance,
    best: &Candidate,
) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    if environment == Environment::Prod {
        reasons.push("PROD account".to_owned());
    }
    if source.vcpus >= 16 || source.memory_mib >= 64 * 1024 {
        reasons.push(format!(
            "large instance ({} vCPU, {} GiB)",
            source.vcpus,
            source.memory_mib / 1024
        ));
    }
    if source.vcpus >= 64 {
        reasons.push("very large instance".to_owned());
    }
    if let Some(ip) = &source.elastic_ip {
        reasons.push(format!("Elastic IP {} moves to the clone", ip.public_ip));
    }
    if best.interruption_band >= LOW_CONFIDENCE_BAND {
        reasons.push(format!(
            "low-confidence pool ({} interruptions)",
            best.interruption_label
        ));
    }
    let level = match reasons.len() {
        0 => Risk::Low,
        1 => Risk::Medium,
        2 => Risk::High,
        _ => Risk::Critical,
    };
    (level, reasons)
}

/// One line for an operator (the approval request): from → to, saving.
pub fn summary(source: &SourceInstance, best: Option<&Candidate>) -> String {
    match best {
        Some(best) => format!(
            "{} {} → Spot {} in {} at ${:.4}/h ({} interruptions), saves ${:.4}/h",
            source.instance_id,
            source.instance_type,
            best.instance_type,
            best.pool.az_id(),
            best.spot_price,
            best.interruption_label,
            best.saving_per_hour
        ),
        None => format!(
            "{} {}: no candidate",
            source.instance_id, source.instance_type
        ),
    }
}

/// The plan step's output: what the following steps need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub switch_id: String,
    pub source: SourceInstance,
    pub on_demand_price: f64,
    /// Ranked, best first.
    pub candidates: Vec<Candidate>,
    pub exclusions: Vec<Exclusion>,
    pub risk: Risk,
    pub risk_reasons: Vec<String>,
    pub needs_approval: bool,
    /// Best candidate's saving, USD per hour (the counterfactual in shadow mode).
    pub saving_per_hour: f64,
    /// One line for an operator (the approval request): from → to, saving.
    pub summary: String,
    /// The saga's pacing, resolved (the state machine's Wait states read it).
    pub settings: crate::saga::Settings,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use chrono::TimeZone;

    pub fn source() -> SourceInstance {
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
        }
    }

    #[test]
    fn spot_asg_kubernetes_instance_store_and_exempt_instances_are_not_eligible() {
        assert!(ineligibility(&source()).is_empty());
        type Change = fn(&mut SourceInstance);
        let cases: [(&str, Change); 6] = [
            ("Spot", |s| s.lifecycle = Some("spot".into())),
            ("Auto Scaling", |s| {
                s.tags
                    .insert("aws:autoscaling:groupName".into(), "web".into());
            }),
            ("Kubernetes", |s| {
                s.tags
                    .insert("karpenter.sh/nodepool".into(), "default".into());
            }),
            ("Kubernetes", |s| {
                s.tags
                    .insert("kubernetes.io/cluster/prod".into(), "owned".into());
            }),
            ("instance-store", |s| {
                s.root_device_type = "instance-store".into()
            }),
            ("exempt", |s| {
                s.tags.insert(EXEMPT_TAG.into(), "".into());
            }),
        ];
        for (what, change) in cases {
            let mut s = source();
            change(&mut s);
            let reasons = ineligibility(&s);
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains(what) || r.contains(&what.to_lowercase())),
                "{what}: {reasons:?}"
            );
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
                .any(|e| e.what == "m6g.large" && e.reason.contains("architecture"))
        );
        assert!(
            excluded
                .iter()
                .any(|e| e.what == "z9.huge" && e.reason.contains("unknown"))
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
        let reason = |what: &str| {
            excluded
                .iter()
                .find(|e| e.what == what)
                .map(|e| e.reason.clone())
                .unwrap_or_default()
        };
        assert!(
            reason("us-east-1#use1-az6#c5.xlarge").contains("quarantined"),
            "the cheapest stable pool is skipped"
        );
        assert!(reason("us-east-1#use1-az1#c5.xlarge").contains("not below on-demand"));
        assert!(reason("us-east-1#use1-az2#m5.large").contains("no Spot price"));
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

    #[test]
    fn risk_grows_with_each_concern() {
        let best = Candidate {
            pool: PoolKey::new("us-east-1", "use1-az6", "c5.xlarge").unwrap(),
            instance_type: "c5.xlarge".into(),
            az_name: "us-east-1a".into(),
            subnet_id: "subnet-a".into(),
            spot_price: 0.04,
            interruption_band: 0,
            interruption_label: "<5%".into(),
            saving_per_hour: 0.05,
            score: 0.04,
        };
        assert_eq!(risk(Environment::Lab, &source(), &best).0, Risk::Low);
        assert_eq!(risk(Environment::Prod, &source(), &best).0, Risk::Medium);
        let mut big = source();
        big.vcpus = 64;
        big.elastic_ip = Some(ElasticIp {
            allocation_id: "eipalloc-1".into(),
            public_ip: "1.2.3.4".into(),
        });
        let shaky = Candidate {
            interruption_band: 4,
            interruption_label: ">20%".into(),
            ..best
        };
        let (level, reasons) = risk(Environment::Prod, &big, &shaky);
        assert_eq!(level, Risk::Critical);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!("high".parse::<Risk>().unwrap() > Risk::Medium);
    }
}
