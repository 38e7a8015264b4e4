//! The Spot market as the sagas see it: the shipped catalog (interruption bands, on-demand prices),
//! which instance types can run a workload, how pools rank, and why a pool or type was left out.

pub mod catalog;
pub mod ranking;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorName;

pub use catalog::Catalog;
pub use ranking::{
    Candidate, InstanceTypeInfo, LOW_CONFIDENCE_BAND, Market, SpotPrice, SubnetInfo, Support,
    TypeQuery, compatible_types, rank,
};

/// Why something was left out of a plan: an instance type, an AZ, a pool or a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    // ---- instance types
    Architecture,
    TooSmall,
    TooLarge,
    NotOnSpot,
    BareMetal,
    PreviousGeneration,
    UnknownType,
    /// Needs what the source's OS has not shown it has (ENA, NVMe, a boot mode).
    Incompatible,
    // ---- AZs and pools
    NoSubnet,
    /// A recent interruption or rebalance signal (the gatekeeper).
    Quarantined,
    /// A recent launch found no capacity there (a short hold).
    CapacityHold,
    NoSpotPrice,
    NotCheaper,
    /// The launch was refused for lack of capacity.
    NoCapacity,
    /// The launch was refused for this type or AZ (not for capacity).
    LaunchRefused,
    // ---- members of a group, and sources
    AlreadySpot,
    /// A platform other than Linux/UNIX, which the optimizer does not price.
    UnpricedPlatform,
    NotInService,
    Exempt,
    ProtectedFromScaleIn,
    NoLongerExists,
    LeftGroup,
    NoOnDemandPrice,
    /// Every pool the member could go to was left out (the pools' own reasons say why).
    NoPool,
    /// A planned member the swap did not replace (it left the group, or no pool had capacity).
    NotReplaced,
    /// A member beyond what one execution replaces (`MAX_MEMBERS`): the next run takes it.
    Deferred,
}

/// Something the plan left out, why, and the detail an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub what: String,
    pub reason: ExclusionReason,
    pub detail: String,
}

impl Exclusion {
    pub fn new(
        what: impl Into<String>,
        reason: ExclusionReason,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            what: what.into(),
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// The first `n` exclusions, for a message.
pub fn explain(exclusions: &[Exclusion], n: usize) -> String {
    exclusions
        .iter()
        .take(n)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The name a plan fails with when no pool is left: `PoolQuarantined` when a quarantine left out at
/// least one pool (an operator can see and release it), else `NotEligible`. Both sagas' plans ask
/// this, with every exclusion they made.
pub fn no_pool_error<'a>(exclusions: impl IntoIterator<Item = &'a Exclusion>) -> ErrorName {
    if exclusions
        .into_iter()
        .any(|e| e.reason == ExclusionReason::Quarantined)
    {
        ErrorName::PoolQuarantined
    } else {
        ErrorName::NotEligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pool_is_pool_quarantined_only_when_a_quarantine_left_one_out() {
        let quarantined = Exclusion::new("p1", ExclusionReason::Quarantined, "quarantined");
        let no_price = Exclusion::new("p2", ExclusionReason::NoSpotPrice, "no Spot price");
        // A detail that merely mentions quarantine is not a quarantine.
        let wording = Exclusion::new("p3", ExclusionReason::NotCheaper, "not quarantined, dear");
        assert_eq!(
            no_pool_error([&no_price, &quarantined]),
            ErrorName::PoolQuarantined
        );
        assert_eq!(no_pool_error([&no_price, &wording]), ErrorName::NotEligible);
        assert_eq!(no_pool_error([]), ErrorName::NotEligible);
        assert_eq!(quarantined.to_string(), "p1: quarantined");
        assert_eq!(
            serde_json::to_value(&quarantined).unwrap()["reason"],
            "quarantined"
        );
    }
}
