//! Every tag the optimizer reads or writes, in one place: what a resource's owner sees, and what
//! the IAM policies condition destructive actions on.

use std::collections::BTreeMap;

pub type Tags = BTreeMap<String, String>;

/// Resources with this tag (any value) are never flagged, moved or touched.
pub const EXEMPT_TAG: &str = "spot-optimizer:exempt";
/// The tag that tells a resource's owner it was flagged as waste, and when it will be deleted.
pub const WASTE_TAG: &str = "spot-optimizer:waste";
/// Marks the snapshot taken of a volume before deleting it; such snapshots are never waste.
pub const BACKUP_TAG: &str = "spot-optimizer:backup-of";
/// Tells an instance's owner it runs without an authorising tag, and when it will be enforced.
pub const UNAUTHORIZED_TAG: &str = "spot-optimizer:unauthorized";
/// An instance or Auto Scaling group follows the hibernation schedule this tag names.
pub const SCHEDULE_TAG: &str = "spot-optimizer:schedule";
/// A group opts in to the ASG swap with this tag set to `true` (or by `ASG_ALLOWLIST`).
pub const ENABLED_TAG: &str = "spot-optimizer:enabled";
/// Carries the switch id on everything the atomic switch creates or stops, so a retried step finds
/// its own work and IAM lets it act only there.
pub const SWITCH_TAG: &str = "spot-optimizer:switch";
/// On a source the atomic switch stopped: when (RFC 3339). Its retention (`SOURCE_RETENTION_DAYS`)
/// runs from here; after it the waste scanner takes the source through its lifecycle.
pub const SWITCHED_AT_TAG: &str = "spot-optimizer:switched-at";
/// Carries the swap id on the replacements the ASG swap launches, the members it detaches, and
/// the group while the swap has changed it.
pub const SWAP_TAG: &str = "spot-optimizer:swap";
/// On a group the swap changed: what it changed (original MaxSize, raised MaxSize, whether it
/// suspended `AZRebalance`), so the rollback puts back exactly that, from the group itself.
pub const RESTORE_TAG: &str = "spot-optimizer:swap-restore";

/// Carries the failover id on the replacement an emergency failover launches, so a retried step
/// finds it and IAM lets only that saga act on it.
pub const FAILOVER_TAG: &str = "spot-optimizer:failover";
/// On an instance a failover launched for a switched workload: the workload's original on-demand
/// instance, stopped by the switch, which the failover may start as its last fallback.
pub const ORIGIN_TAG: &str = "spot-optimizer:origin";
/// On the EBS volumes of an interrupted instance whose data a failover kept
/// (`DeleteOnTermination=false`): the instance they were attached to, and when they were kept.
pub const PRESERVED_TAG: &str = "spot-optimizer:preserved-from";
pub const PRESERVED_AT_TAG: &str = "spot-optimizer:preserved-at";
/// On the on-demand instance a failover gave a workload interrupted too often (hysteresis): until
/// when (RFC 3339) the router leaves it on-demand.
pub const ON_DEMAND_UNTIL_TAG: &str = "spot-optimizer:on-demand-until";

/// A standalone workload opts in to standby-replica mode with this tag set to [`REPLICA_STANDBY`]:
/// one warm Spot standby in another pool at all times, promoted in seconds at the warning. The
/// opt-in belongs to the workload, so every instance launched for it carries it on.
pub const REPLICA_TAG: &str = "spot-optimizer:replica";
pub const REPLICA_STANDBY: &str = "standby";
/// On an instance of a replica workload: `standby` while it stands by, `primary` once promoted.
pub const ROLE_TAG: &str = "spot-optimizer:role";
pub const ROLE_STANDBY: &str = "standby";
pub const ROLE_PRIMARY: &str = "primary";

/// Which saga execution launched an instance: provenance for people and tests, kept for the
/// instance's life and never a condition of any IAM policy (the saga's own mark,
/// [`SWITCH_TAG`] or [`SWAP_TAG`], is the permission, and a finished swap removes it).
pub const SAGA_TAG: &str = "spot-optimizer:saga";

/// On every instance a saga launches.
pub const MANAGED_BY: (&str, &str) = ("ManagedBy", "SpotOptimizer");
/// Which saga launched an instance.
pub const CREATED_VIA: &str = "CreatedVia";
pub const VIA_SWITCH: &str = "AtomicSwitch";
pub const VIA_SWAP: &str = "AsgSwap";
pub const VIA_FAILOVER: &str = "EmergencyFailover";
/// The instance a launched instance replaces.
pub const SOURCE_TAG: &str = "SourceInstance";

/// Auto Scaling's own membership tag.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Tags that mean a Kubernetes cluster's autoscaler owns the instance.
const CLUSTER_TAGS: [&str; 3] = [
    "eks:cluster-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name",
];
const CLUSTER_PREFIX: &str = "kubernetes.io/cluster/";

/// The tag that says a cluster owns the instance, if one does.
pub fn cluster_tag(tags: &Tags) -> Option<&str> {
    CLUSTER_TAGS
        .into_iter()
        .find(|k| tags.contains_key(*k))
        .or_else(|| {
            tags.keys()
                .find(|k| k.starts_with(CLUSTER_PREFIX))
                .map(String::as_str)
        })
}

/// Whether the optimizer launched this instance.
pub fn is_managed(tags: &Tags) -> bool {
    tags.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}

/// Whether the workload opted in to standby-replica mode ([`REPLICA_TAG`]).
pub fn replica_mode(tags: &Tags) -> bool {
    tags.get(REPLICA_TAG).map(String::as_str) == Some(REPLICA_STANDBY)
}

/// Whether this instance is a replica workload's warm standby ([`ROLE_TAG`]) the optimizer
/// launched.
pub fn is_standby(tags: &Tags) -> bool {
    is_managed(tags) && tags.get(ROLE_TAG).map(String::as_str) == Some(ROLE_STANDBY)
}

/// The user tags a replacement inherits from the instance it replaces: not `aws:` ones (EC2
/// refuses them), not the optimizer's markers (except the workload's own replica opt-in), at most
/// 45 so the optimizer's own five still fit EC2's 50.
pub fn inherited(tags: &Tags) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = tags
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("aws:")
                && (!k.starts_with("spot-optimizer:") || *k == REPLICA_TAG)
                && *k != MANAGED_BY.0
                && *k != CREATED_VIA
                && *k != SOURCE_TAG
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The opt-in first, so no truncation drops it.
    kept.sort_by_key(|(k, _)| k != REPLICA_TAG);
    kept.truncate(45);
    kept
}

/// The optimizer's marks on an instance it launches for `saga_tag` = `saga_id`, replacing
/// `source`, after the inherited ones.
pub fn launched(
    inherited: Vec<(String, String)>,
    via: &str,
    source: &str,
    saga_tag: &str,
    saga_id: &str,
) -> Vec<(String, String)> {
    let mut tags = inherited;
    tags.extend([
        (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
        (CREATED_VIA.into(), via.into()),
        (SOURCE_TAG.into(), source.into()),
        (saga_tag.into(), saga_id.into()),
        (SAGA_TAG.into(), saga_id.into()),
    ]);
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_keeps_user_tags_and_carries_ours() {
        let mut tags = Tags::new();
        tags.insert("Name".into(), "db".into());
        tags.insert("aws:cloudformation:stack-name".into(), "s".into());
        tags.insert("ManagedBy".into(), "Terraform".into());
        tags.insert(WASTE_TAG.into(), "x".into());
        let kept = launched(inherited(&tags), VIA_SWITCH, "i-0src", SWITCH_TAG, "sw-1");
        assert!(kept.contains(&("Name".into(), "db".into())));
        assert!(!kept.iter().any(|(k, _)| k.starts_with("aws:")));
        assert!(
            !kept
                .iter()
                .any(|(k, v)| k == "ManagedBy" && v == "Terraform")
        );
        assert!(kept.contains(&(SWITCH_TAG.into(), "sw-1".into())));
        assert!(kept.contains(&(SOURCE_TAG.into(), "i-0src".into())));
        assert!(is_managed(&kept.into_iter().collect()));

        // The replica opt-in is the workload's: it goes on; a role is the instance's own.
        tags.insert(REPLICA_TAG.into(), REPLICA_STANDBY.into());
        tags.insert(ROLE_TAG.into(), ROLE_STANDBY.into());
        let kept: Tags = inherited(&tags).into_iter().collect();
        assert!(replica_mode(&kept));
        assert!(!kept.contains_key(ROLE_TAG));
        assert!(
            !is_standby(&tags),
            "a role tag on an instance nobody launched"
        );

        let many: Tags = (0..60).map(|i| (format!("k{i:02}"), "v".into())).collect();
        assert_eq!(
            launched(inherited(&many), VIA_SWAP, "i-1", SWAP_TAG, "s").len(),
            50
        );
    }

    #[test]
    fn cluster_nodes_are_recognised_by_any_of_their_tags() {
        let tagged = |k: &str| Tags::from([(k.to_owned(), "x".to_owned())]);
        assert_eq!(
            cluster_tag(&tagged("karpenter.sh/nodepool")),
            Some("karpenter.sh/nodepool")
        );
        assert_eq!(
            cluster_tag(&tagged("kubernetes.io/cluster/prod")),
            Some("kubernetes.io/cluster/prod")
        );
        assert_eq!(
            cluster_tag(&tagged("eks:cluster-name")),
            Some("eks:cluster-name")
        );
        assert_eq!(cluster_tag(&tagged("Name")), None);
    }
}
