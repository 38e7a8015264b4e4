//! Waste: resources that cost money and serve nothing, what they cost, and their lifecycle
//! DETECTED → FLAGGED → SCHEDULED_DELETE → DELETED (or RESOLVED when they stop being waste).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::governance::mode::Mode;
use crate::governance::pricing::Prices;
pub use crate::tags::{BACKUP_TAG, EXEMPT_TAG, Tags, WASTE_TAG};
use crate::tags::{PRESERVED_AT_TAG, PRESERVED_TAG, SWITCHED_AT_TAG};

/// Default of `SOURCE_RETENTION_DAYS`.
pub const DEFAULT_SOURCE_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WasteKind {
    ElasticIp,
    EbsVolume,
    EbsSnapshot,
    Ami,
    /// A source instance an atomic switch stopped and kept, past its retention (the window for
    /// `spotctl switch revert`); deleting it terminates it, its volumes snapshotted first.
    SwitchSource,
}

impl WasteKind {
    pub const ALL: [Self; 5] = [
        Self::ElasticIp,
        Self::EbsVolume,
        Self::EbsSnapshot,
        Self::Ami,
        Self::SwitchSource,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ElasticIp => "elastic_ip",
            Self::EbsVolume => "ebs_volume",
            Self::EbsSnapshot => "ebs_snapshot",
            Self::Ami => "ami",
            Self::SwitchSource => "switch_source",
        }
    }
}

impl fmt::Display for WasteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- what an account/region holds (read by the EC2 and Auto Scaling adapters) -------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub allocation_id: String,
    pub public_ip: String,
    pub association_id: Option<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub volume_id: String,
    /// `available` means attached to nothing.
    pub state: String,
    pub volume_type: String,
    pub size_gb: u32,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub created: DateTime<Utc>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_size_gb: u32,
    pub started: DateTime<Utc>,
    pub state: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub image_id: String,
    pub created: Option<DateTime<Utc>>,
    /// Snapshots of its block device mappings.
    pub snapshot_ids: Vec<String>,
    pub public: bool,
    pub tags: Tags,
}

/// A stopped instance carrying [`SWITCH_TAG`] that the switch did not launch: a switch's source.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedSource {
    pub instance_id: String,
    pub switch_id: String,
    /// When the switch stopped it ([`SWITCHED_AT_TAG`]).
    pub switched_at: Option<DateTime<Utc>>,
    /// Its EBS volumes.
    pub volume_ids: Vec<String>,
    pub tags: Tags,
}

/// What keeps images and snapshots in use, with who uses them (for the reason shown).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Image id → a user: an instance (any state), a launch template version, a launch configuration.
    pub images: BTreeMap<String, String>,
    /// Snapshot id → a user: a launch template version's block device mapping.
    pub snapshots: BTreeMap<String, String>,
}

impl Usage {
    pub fn use_image(&mut self, image_id: &str, by: impl FnOnce() -> String) {
        self.images.entry(image_id.to_owned()).or_insert_with(by);
    }

    pub fn use_snapshot(&mut self, snapshot_id: &str, by: impl FnOnce() -> String) {
        self.snapshots
            .entry(snapshot_id.to_owned())
            .or_insert_with(by);
    }
}

/// Everything the scanner reads in one account and region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub addresses: Vec<Address>,
    pub volumes: Vec<Volume>,
    pub snapshots: Vec<Snapshot>,
    /// The account's own images, including disabled and deprecated ones.
    pub images: Vec<Image>,
    pub usage: Usage,
    /// Sources switches stopped and kept.
    pub stopped_sources: Vec<StoppedSource>,
}

// ---- which resources are waste --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasteRules {
    pub volume_min_age: TimeDelta,
    /// How long the volumes an emergency failover kept (tagged `spot-optimizer:preserved-at`)
    /// are left alone after they were kept, whatever their age.
    pub preserved_retention: TimeDelta,
    pub snapshot_min_age: TimeDelta,
    pub ami_min_age: TimeDelta,
    /// How long a resource stays a candidate before it is flagged (tagged).
    pub flag_after: TimeDelta,
    /// How long a resource scheduled for deletion waits (live mode).
    pub delete_grace: TimeDelta,
    /// Snapshot a volume before deleting it (and a switch source's volumes before terminating it).
    pub snapshot_before_delete: bool,
    /// How long a switch's stopped source is kept (the revert window) before it may be waste.
    pub source_retention: TimeDelta,
}

impl Default for WasteRules {
    fn default() -> Self {
        Self {
            volume_min_age: TimeDelta::days(7),
            preserved_retention: TimeDelta::days(
                crate::saga::failover::DEFAULT_PRESERVED_RETENTION_DAYS,
            ),
            snapshot_min_age: TimeDelta::days(30),
            ami_min_age: TimeDelta::days(30),
            flag_after: TimeDelta::days(7),
            delete_grace: TimeDelta::days(7),
            snapshot_before_delete: true,
            source_retention: TimeDelta::days(DEFAULT_SOURCE_RETENTION_DAYS),
        }
    }
}

/// What the usage lookup must cover: reading every instance, launch template and launch
/// configuration is the dearest part of a scan, and only old-enough images and snapshots need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageNeeded {
    /// Own images old enough to be waste, whose instances must be looked up.
    pub images: Vec<String>,
    /// Whether any image or snapshot needs the launch templates and configurations.
    pub templates: bool,
}

/// The usage lookups `inventory` (without usage yet) needs at `now`.
pub fn usage_needed(inventory: &Inventory, rules: &WasteRules, now: DateTime<Utc>) -> UsageNeeded {
    let images: Vec<String> = inventory
        .images
        .iter()
        .filter(|i| !exempt(&i.tags) && !i.public)
        .filter(|i| i.created.is_some_and(|c| now - c >= rules.ami_min_age))
        .map(|i| i.image_id.clone())
        .collect();
    let of_images: std::collections::BTreeSet<&str> = inventory
        .images
        .iter()
        .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
        .collect();
    let snapshots = inventory.snapshots.iter().any(|s| {
        !exempt(&s.tags)
            && !s.tags.contains_key(BACKUP_TAG)
            && !of_images.contains(s.snapshot_id.as_str())
            && now - s.started >= rules.snapshot_min_age
    });
    UsageNeeded {
        templates: snapshots || !images.is_empty(),
        images,
    }
}

/// One resource as seen in this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub kind: WasteKind,
    pub resource_id: String,
    pub size_gb: Option<u32>,
    pub monthly_cost_usd: f64,
    /// Why it is (or is not) waste, for records, tags and operators.
    pub reason: String,
    pub candidate: bool,
    /// For AMIs: the snapshots deleting the image deletes too.
    pub snapshot_ids: Vec<String>,
}

/// When the retention of a volume a failover kept ends; `None` for any other volume. A kept
/// volume whose time cannot be read counts from its creation, never as already expired.
pub fn kept_until(v: &Volume, retention: TimeDelta) -> Option<DateTime<Utc>> {
    if !v.tags.contains_key(PRESERVED_TAG) && !v.tags.contains_key(PRESERVED_AT_TAG) {
        return None;
    }
    let kept_at = v
        .tags
        .get(PRESERVED_AT_TAG)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(v.created, |t| t.with_timezone(&Utc).max(v.created));
    Some(kept_at + retention)
}

fn exempt(tags: &Tags) -> bool {
    tags.contains_key(EXEMPT_TAG)
}

fn days(age: TimeDelta) -> i64 {
    age.num_days()
}

/// Judges every resource of the inventory at `now`.
pub fn observe(
    inventory: &Inventory,
    rules: &WasteRules,
    prices: &Prices,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let mut seen = Vec::new();
    let verdict = |candidate: bool, reason: String| (candidate, reason);

    for a in &inventory.addresses {
        let (candidate, reason) = if exempt(&a.tags) {
            verdict(false, "exempt".into())
        } else if let Some(association) = &a.association_id {
            verdict(false, format!("associated ({association})"))
        } else {
            verdict(
                true,
                format!("Elastic IP {} is associated with nothing", a.public_ip),
            )
        };
        seen.push(Observation {
            kind: WasteKind::ElasticIp,
            resource_id: a.allocation_id.clone(),
            size_gb: None,
            monthly_cost_usd: prices.elastic_ip_month(),
            reason,
            candidate,
            snapshot_ids: Vec::new(),
        });
    }

    for v in &inventory.volumes {
        let age = now - v.created;
        let (candidate, reason) = if exempt(&v.tags) {
            verdict(false, "exempt".into())
        } else if v.state != "available" {
            verdict(false, format!("{} (attached or changing)", v.state))
        } else if let Some(until) = kept_until(v, rules.preserved_retention) {
            if now < until {
                verdict(
                    false,
                    format!(
                        "kept by a failover (from {}) until {}",
                        v.tags.get(PRESERVED_TAG).map_or("?", String::as_str),
                        until.date_naive()
                    ),
                )
            } else {
                verdict(
                    true,
                    format!(
                        "unattached {} volume a failover kept, past its {}-day retention",
                        v.volume_type,
                        rules.preserved_retention.num_days()
                    ),
                )
            }
        } else if age < rules.volume_min_age {
            verdict(
                false,
                format!("unattached but created {} days ago", days(age)),
            )
        } else {
            verdict(
                true,
                format!(
                    "unattached {} volume created {} days ago",
                    v.volume_type,
                    days(age)
                ),
            )
        };
        seen.push(Observation {
            kind: WasteKind::EbsVolume,
            resource_id: v.volume_id.clone(),
            size_gb: Some(v.size_gb),
            monthly_cost_usd: prices.volume_month(&v.volume_type, v.size_gb, v.iops, v.throughput),
            reason,
            candidate,
            snapshot_ids: Vec::new(),
        });
    }

    // Every own image counts, including disabled and deprecated ones: deleting the snapshot of a
    // disabled AMI would make it impossible to re-enable.
    let snapshots_of_images: BTreeMap<&str, &str> = inventory
        .images
        .iter()
        .flat_map(|i| {
            i.snapshot_ids
                .iter()
                .map(|s| (s.as_str(), i.image_id.as_str()))
        })
        .collect();
    let snapshot_sizes: BTreeMap<&str, u32> = inventory
        .snapshots
        .iter()
        .map(|s| (s.snapshot_id.as_str(), s.volume_size_gb))
        .collect();

    for s in &inventory.snapshots {
        let age = now - s.started;
        let (candidate, reason) = if exempt(&s.tags) {
            verdict(false, "exempt".into())
        } else if let Some(volume) = s.tags.get(BACKUP_TAG) {
            verdict(false, format!("backup of deleted volume {volume}"))
        } else if let Some(image) = snapshots_of_images.get(s.snapshot_id.as_str()) {
            verdict(false, format!("used by {image}"))
        } else if let Some(user) = inventory.usage.snapshots.get(&s.snapshot_id) {
            verdict(false, format!("used by {user}"))
        } else if s.state != "completed" {
            verdict(false, format!("{} snapshot", s.state))
        } else if age < rules.snapshot_min_age {
            verdict(false, format!("unused but {} days old", days(age)))
        } else {
            verdict(
                true,
                format!(
                    "snapshot {} days old, used by no AMI or launch template",
                    days(age)
                ),
            )
        };
        seen.push(Observation {
            kind: WasteKind::EbsSnapshot,
            resource_id: s.snapshot_id.clone(),
            size_gb: Some(s.volume_size_gb),
            monthly_cost_usd: prices.snapshot_month(s.volume_size_gb),
            reason,
            candidate,
            snapshot_ids: Vec::new(),
        });
    }

    let volumes: BTreeMap<&str, &Volume> = inventory
        .volumes
        .iter()
        .map(|v| (v.volume_id.as_str(), v))
        .collect();
    for source in &inventory.stopped_sources {
        let own: Vec<&Volume> = source
            .volume_ids
            .iter()
            .filter_map(|id| volumes.get(id.as_str()).copied())
            .collect();
        let switch = &source.switch_id;
        let (candidate, reason) = if exempt(&source.tags) {
            verdict(false, "exempt".into())
        } else {
            match source.switched_at {
                None => verdict(
                    false,
                    format!(
                        "stopped by switch {switch}, when unknown (no {SWITCHED_AT_TAG} tag): kept"
                    ),
                ),
                Some(at) if now < at + rules.source_retention => verdict(
                    false,
                    format!(
                        "stopped by switch {switch}, kept until {} (spotctl switch revert {switch})",
                        (at + rules.source_retention).date_naive()
                    ),
                ),
                Some(at) => verdict(
                    true,
                    format!(
                        "stopped by switch {switch} on {}, past its {}-day retention",
                        at.date_naive(),
                        rules.source_retention.num_days()
                    ),
                ),
            }
        };
        seen.push(Observation {
            kind: WasteKind::SwitchSource,
            resource_id: source.instance_id.clone(),
            size_gb: Some(own.iter().map(|v| v.size_gb).sum()),
            monthly_cost_usd: own
                .iter()
                .map(|v| prices.volume_month(&v.volume_type, v.size_gb, v.iops, v.throughput))
                .sum(),
            reason,
            candidate,
            snapshot_ids: Vec::new(),
        });
    }

    for i in &inventory.images {
        let size: u32 = i
            .snapshot_ids
            .iter()
            .filter_map(|s| snapshot_sizes.get(s.as_str()))
            .sum();
        let (candidate, reason) = if exempt(&i.tags) {
            verdict(false, "exempt".into())
        } else if i.public {
            // Public images may be launched by anyone: their use cannot be seen from here.
            verdict(false, "public".into())
        } else if let Some(user) = inventory.usage.images.get(&i.image_id) {
            verdict(false, format!("used by {user}"))
        } else {
            match i.created {
                None => verdict(false, "creation date unknown".into()),
                Some(created) if now - created < rules.ami_min_age => verdict(
                    false,
                    format!("unused but {} days old", days(now - created)),
                ),
                Some(created) => verdict(
                    true,
                    format!(
                        "AMI {} days old, used by no instance, launch template or launch configuration",
                        days(now - created)
                    ),
                ),
            }
        };
        seen.push(Observation {
            kind: WasteKind::Ami,
            resource_id: i.image_id.clone(),
            size_gb: Some(size),
            monthly_cost_usd: prices.snapshot_month(size),
            reason,
            candidate,
            snapshot_ids: i.snapshot_ids.clone(),
        });
    }
    seen
}

// ---- lifecycle ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WasteStatus {
    Detected,
    Flagged,
    ScheduledDelete,
    Deleted,
    Resolved,
}

impl WasteStatus {
    /// Still waste, as far as the optimizer knows.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Detected | Self::Flagged | Self::ScheduledDelete)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detected => "DETECTED",
            Self::Flagged => "FLAGGED",
            Self::ScheduledDelete => "SCHEDULED_DELETE",
            Self::Deleted => "DELETED",
            Self::Resolved => "RESOLVED",
        }
    }
}

/// One tracked resource in the waste table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WasteRecord {
    pub account: String,
    pub region: String,
    pub resource_id: String,
    pub kind: WasteKind,
    pub status: WasteStatus,
    pub monthly_cost_usd: f64,
    pub size_gb: Option<u32>,
    pub reason: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub flagged_at: Option<DateTime<Utc>>,
    pub delete_after: Option<DateTime<Utc>>,
    /// When it became DELETED or RESOLVED.
    pub closed_at: Option<DateTime<Utc>>,
    /// The snapshot taken of a volume before its deletion.
    pub backup_snapshot_id: Option<String>,
    pub version: u64,
}

impl WasteRecord {
    /// `{account}#{region}#{resource_id}`, the table's partition key.
    pub fn key(&self) -> String {
        record_key(&self.account, &self.region, &self.resource_id)
    }

    /// The value of [`WASTE_TAG`] while the resource is flagged.
    pub fn tag_value(&self) -> String {
        let flagged = self
            .flagged_at
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let what = format!("flagged {flagged}: ${:.2}/month", self.monthly_cost_usd);
        let value = match self.deadline_notice() {
            Some(deadline) => format!("{what}; {deadline} unless used or tagged {EXEMPT_TAG}"),
            None => format!("{what}; audit mode, nothing will be deleted"),
        };
        value.chars().take(256).collect()
    }

    /// The part of the owner's notice that announces the deletion: a resource is deleted only if
    /// its tag still carries exactly this.
    pub fn deadline_notice(&self) -> Option<String> {
        match (self.status, self.delete_after) {
            (WasteStatus::ScheduledDelete | WasteStatus::Deleted, Some(at)) => {
                Some(format!("deleted after {}", at.format("%Y-%m-%dT%H:%MZ")))
            }
            _ => None,
        }
    }
}

pub fn record_key(account: &str, region: &str, resource_id: &str) -> String {
    format!("{account}#{region}#{resource_id}")
}

/// What to do to the resource itself, besides writing its record.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// Set [`WASTE_TAG`] to this value.
    Tag(String),
    /// Remove [`WASTE_TAG`].
    Untag,
    /// Delete it (audit item first); the record to write afterwards is the step's.
    Delete,
}

/// The outcome of one resource in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The record to write, when it changed.
    pub record: Option<WasteRecord>,
    pub effect: Effect,
}

impl Step {
    fn nothing() -> Self {
        Self {
            record: None,
            effect: Effect::None,
        }
    }
}

/// Where and how a run decides.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub mode: Mode,
    pub rules: &'a WasteRules,
    pub now: DateTime<Utc>,
}

/// Moves one resource through its lifecycle: `stored` is its record, `seen` what this run saw
/// (`None`: it no longer exists).
pub fn step(stored: Option<&WasteRecord>, seen: Option<&Observation>, scope: &Scope<'_>) -> Step {
    let now = scope.now;
    let open = stored.filter(|r| r.status.is_open());
    match (open, seen) {
        // Gone. If its deletion was due, a previous run deleted it and stopped before recording it.
        (Some(r), None) => {
            let due = r.status == WasteStatus::ScheduledDelete
                && r.delete_after.is_some_and(|at| at <= now);
            let (status, reason) = if due {
                (WasteStatus::Deleted, "deleted (confirmed gone)".to_owned())
            } else {
                (WasteStatus::Resolved, "no longer exists".to_owned())
            };
            Step {
                record: Some(WasteRecord {
                    status,
                    reason,
                    closed_at: Some(now),
                    version: r.version + 1,
                    ..r.clone()
                }),
                effect: Effect::None,
            }
        }
        (None, None) => Step::nothing(),
        // Exists but is not waste (any more): resolve and take the tag off.
        (Some(r), Some(o)) if !o.candidate => Step {
            record: Some(WasteRecord {
                status: WasteStatus::Resolved,
                reason: o.reason.clone(),
                last_seen: now,
                closed_at: Some(now),
                version: r.version + 1,
                ..r.clone()
            }),
            effect: if r.status == WasteStatus::Detected {
                Effect::None
            } else {
                Effect::Untag
            },
        },
        (None, Some(o)) if !o.candidate => Step::nothing(),
        (stored_open, Some(o)) => {
            let mut r = match stored_open {
                Some(r) => WasteRecord {
                    monthly_cost_usd: o.monthly_cost_usd,
                    size_gb: o.size_gb,
                    reason: o.reason.clone(),
                    last_seen: now,
                    version: r.version + 1,
                    ..r.clone()
                },
                // New, or waste again after being resolved: a fresh lifecycle.
                None => WasteRecord {
                    account: scope.account.to_owned(),
                    region: scope.region.to_owned(),
                    resource_id: o.resource_id.clone(),
                    kind: o.kind,
                    status: WasteStatus::Detected,
                    monthly_cost_usd: o.monthly_cost_usd,
                    size_gb: o.size_gb,
                    reason: o.reason.clone(),
                    first_seen: now,
                    last_seen: now,
                    flagged_at: None,
                    delete_after: None,
                    closed_at: None,
                    backup_snapshot_id: None,
                    version: stored.map_or(1, |old| old.version + 1),
                },
            };
            let before = r.status;
            if r.status == WasteStatus::Detected && now - r.first_seen >= scope.rules.flag_after {
                r.status = WasteStatus::Flagged;
                r.flagged_at = Some(now);
            }
            match (r.status, scope.mode) {
                // Grace starts when deletion is scheduled, so an account switched to live never
                // loses a resource without a full grace period announced by the tag.
                (WasteStatus::Flagged, Mode::Live) => {
                    r.status = WasteStatus::ScheduledDelete;
                    r.delete_after = Some(now + scope.rules.delete_grace);
                }
                // Live switched off: nothing stays scheduled.
                (WasteStatus::ScheduledDelete, Mode::Audit) => {
                    r.status = WasteStatus::Flagged;
                    r.delete_after = None;
                }
                (WasteStatus::ScheduledDelete, Mode::Live)
                    if r.delete_after.is_some_and(|at| at <= now) =>
                {
                    let mut deleted = r.clone();
                    deleted.status = WasteStatus::Deleted;
                    deleted.closed_at = Some(now);
                    return Step {
                        record: Some(deleted),
                        effect: Effect::Delete,
                    };
                }
                _ => {}
            }
            let effect = if r.status != before
                && matches!(
                    r.status,
                    WasteStatus::Flagged | WasteStatus::ScheduledDelete
                ) {
                Effect::Tag(r.tag_value())
            } else {
                Effect::None
            };
            Step {
                record: Some(r),
                effect,
            }
        }
    }
}

/// Monthly cost of the open records, by kind.
pub fn open_cost(records: &[WasteRecord]) -> BTreeMap<WasteKind, f64> {
    let mut cost = BTreeMap::new();
    for r in records.iter().filter(|r| r.status.is_open()) {
        *cost.entry(r.kind).or_insert(0.0) += r.monthly_cost_usd;
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn ago(days: i64) -> DateTime<Utc> {
        now() - TimeDelta::days(days)
    }

    fn volume(id: &str, state: &str, age_days: i64) -> Volume {
        Volume {
            volume_id: id.into(),
            state: state.into(),
            volume_type: "gp3".into(),
            size_gb: 100,
            iops: Some(3000),
            throughput: Some(125),
            created: ago(age_days),
            tags: Tags::new(),
        }
    }

    fn snapshot(id: &str, age_days: i64) -> Snapshot {
        Snapshot {
            snapshot_id: id.into(),
            volume_size_gb: 20,
            started: ago(age_days),
            state: "completed".into(),
            tags: Tags::new(),
        }
    }

    fn image(id: &str, age_days: i64, snapshots: &[&str]) -> Image {
        Image {
            image_id: id.into(),
            created: Some(ago(age_days)),
            snapshot_ids: snapshots.iter().map(|s| (*s).to_owned()).collect(),
            public: false,
            tags: Tags::new(),
        }
    }

    fn verdicts(inventory: &Inventory) -> BTreeMap<String, (bool, String)> {
        observe(inventory, &WasteRules::default(), &Prices::default(), now())
            .into_iter()
            .map(|o| (o.resource_id, (o.candidate, o.reason)))
            .collect()
    }

    #[test]
    fn a_switch_source_is_waste_only_past_its_retention_and_costs_its_volumes() {
        let source = |id: &str, days: Option<i64>| StoppedSource {
            instance_id: id.into(),
            switch_id: "switch-1".into(),
            switched_at: days.map(ago),
            volume_ids: vec![format!("vol-{id}")],
            tags: Tags::new(),
        };
        let mut exempt = source("exempt", Some(40));
        exempt.tags.insert(EXEMPT_TAG.into(), String::new());
        let inventory = Inventory {
            volumes: ["recent", "old", "unknown", "exempt"]
                .iter()
                .map(|id| volume(&format!("vol-{id}"), "in-use", 60))
                .collect(),
            stopped_sources: vec![
                source("recent", Some(29)),
                source("old", Some(31)),
                source("unknown", None),
                exempt,
            ],
            ..Inventory::default()
        };
        let v = verdicts(&inventory);
        assert!(!v["recent"].0 && v["recent"].1.contains("spotctl switch revert switch-1"));
        assert!(
            v["old"].0 && v["old"].1.contains("past its 30-day retention"),
            "{v:?}"
        );
        assert!(!v["unknown"].0, "no time, never guessed");
        assert!(!v["exempt"].0);
        let old = observe(
            &inventory,
            &WasteRules::default(),
            &Prices::default(),
            now(),
        )
        .into_iter()
        .find(|o| o.resource_id == "old")
        .unwrap();
        assert_eq!(old.kind, WasteKind::SwitchSource);
        assert_eq!(old.size_gb, Some(100));
        assert!((old.monthly_cost_usd - 8.0).abs() < 1e-9, "100 GiB gp3");
    }

    #[test]
    fn elastic_ips_are_waste_only_when_associated_with_nothing() {
        let mut exempt = Tags::new();
        exempt.insert(EXEMPT_TAG.into(), "".into());
        let inventory = Inventory {
            addresses: vec![
                Address {
                    allocation_id: "eipalloc-free".into(),
                    public_ip: "1.2.3.4".into(),
                    association_id: None,
                    tags: Tags::new(),
                },
                Address {
                    allocation_id: "eipalloc-used".into(),
                    public_ip: "1.2.3.5".into(),
                    association_id: Some("eipassoc-1".into()),
                    tags: Tags::new(),
                },
                Address {
                    allocation_id: "eipalloc-exempt".into(),
                    public_ip: "1.2.3.6".into(),
                    association_id: None,
                    tags: exempt,
                },
            ],
            ..Inventory::default()
        };
        let v = verdicts(&inventory);
        assert!(v["eipalloc-free"].0);
        assert!(!v["eipalloc-used"].0);
        assert_eq!(v["eipalloc-exempt"], (false, "exempt".into()));
    }

    #[test]
    fn a_volume_a_failover_kept_is_waste_only_after_its_retention() {
        let kept = |id: &str, kept_days_ago: i64| {
            let mut v = volume(id, "available", 90);
            v.tags.insert(PRESERVED_TAG.into(), "i-0dead".into());
            v.tags.insert(
                PRESERVED_AT_TAG.into(),
                (now() - TimeDelta::days(kept_days_ago)).to_rfc3339(),
            );
            v
        };
        let mut garbled = kept("vol-garbled", 0);
        garbled
            .tags
            .insert(PRESERVED_AT_TAG.into(), "yesterday".into());
        let inventory = Inventory {
            volumes: vec![kept("vol-29d", 29), kept("vol-31d", 31), garbled],
            ..Inventory::default()
        };
        let v = verdicts(&inventory);
        assert!(!v["vol-29d"].0, "{}", v["vol-29d"].1);
        assert!(v["vol-29d"].1.contains("kept by a failover (from i-0dead)"));
        assert!(v["vol-31d"].0, "{}", v["vol-31d"].1);
        // Unreadable time: counted from creation (90 days ago), so past the retention.
        assert!(v["vol-garbled"].0);
    }

    #[test]
    fn volumes_are_waste_when_unattached_for_the_minimum_age_boundary_included() {
        let inventory = Inventory {
            volumes: vec![
                volume("vol-6d", "available", 6),
                volume("vol-7d", "available", 7),
                volume("vol-in-use", "in-use", 300),
            ],
            ..Inventory::default()
        };
        let v = verdicts(&inventory);
        assert!(!v["vol-6d"].0, "6 days: too young");
        assert!(v["vol-7d"].0, "7 days: waste");
        assert!(!v["vol-in-use"].0);
    }

    #[test]
    fn snapshots_used_by_any_image_even_disabled_or_by_a_launch_template_are_not_waste() {
        let mut usage = Usage::default();
        usage.use_snapshot("snap-lt", || "launch template lt-1 version 3".into());
        let mut backup = snapshot("snap-backup", 90);
        backup.tags.insert(BACKUP_TAG.into(), "vol-1".into());
        let inventory = Inventory {
            snapshots: vec![
                snapshot("snap-ami", 90),
                snapshot("snap-lt", 90),
                snapshot("snap-free", 30),
                snapshot("snap-young", 29),
                backup,
            ],
            // The adapter lists disabled and deprecated images too; they are just images here.
            images: vec![image("ami-disabled", 400, &["snap-ami"])],
            usage,
            ..Inventory::default()
        };
        let v = verdicts(&inventory);
        assert_eq!(v["snap-ami"], (false, "used by ami-disabled".into()));
        assert_eq!(
            v["snap-lt"],
            (false, "used by launch template lt-1 version 3".into())
        );
        assert!(v["snap-free"].0, "30 days: waste");
        assert!(!v["snap-young"].0, "29 days: too young");
        assert!(!v["snap-backup"].0);
    }

    #[test]
    fn usage_is_looked_up_only_for_old_enough_images_and_snapshots() {
        let young = Inventory {
            snapshots: vec![snapshot("snap-young", 29)],
            images: vec![image("ami-young", 29, &[])],
            ..Inventory::default()
        };
        assert_eq!(
            usage_needed(&young, &WasteRules::default(), now()),
            UsageNeeded::default()
        );

        let old_snapshot = Inventory {
            snapshots: vec![snapshot("snap-old", 30)],
            ..Inventory::default()
        };
        let need = usage_needed(&old_snapshot, &WasteRules::default(), now());
        assert!(need.templates && need.images.is_empty());

        // An image's own snapshot needs no lookup: the image keeps it.
        let old_image = Inventory {
            snapshots: vec![snapshot("snap-of-ami", 90)],
            images: vec![
                image("ami-old", 30, &["snap-of-ami"]),
                image("ami-young", 3, &[]),
            ],
            ..Inventory::default()
        };
        assert_eq!(
            usage_needed(&old_image, &WasteRules::default(), now()),
            UsageNeeded {
                images: vec!["ami-old".into()],
                templates: true
            }
        );
    }

    #[test]
    fn images_used_by_instances_templates_or_configurations_are_not_waste() {
        let mut usage = Usage::default();
        usage.use_image("ami-instance", || "instance i-1 (stopped)".into());
        usage.use_image("ami-lc", || "launch configuration web-v1".into());
        let mut public = image("ami-public", 400, &[]);
        public.public = true;
        let inventory = Inventory {
            snapshots: vec![snapshot("snap-1", 400), snapshot("snap-2", 400)],
            images: vec![
                image("ami-instance", 400, &[]),
                image("ami-lc", 400, &[]),
                image("ami-free", 30, &["snap-1", "snap-2"]),
                image("ami-young", 29, &[]),
                public,
            ],
            usage,
            ..Inventory::default()
        };
        let seen = observe(
            &inventory,
            &WasteRules::default(),
            &Prices::default(),
            now(),
        );
        let free = seen.iter().find(|o| o.resource_id == "ami-free").unwrap();
        assert!(free.candidate);
        assert_eq!(free.size_gb, Some(40));
        assert!(
            (free.monthly_cost_usd - 2.0).abs() < 1e-9,
            "its snapshots' cost"
        );
        assert_eq!(free.snapshot_ids, vec!["snap-1", "snap-2"]);
        let v = verdicts(&inventory);
        assert!(!v["ami-instance"].0 && !v["ami-lc"].0 && !v["ami-young"].0 && !v["ami-public"].0);
        // The AMI's own snapshots are not waste on their own: deleting the AMI deletes them.
        assert!(!v["snap-1"].0);
    }

    // ---- lifecycle

    fn candidate(id: &str) -> Observation {
        Observation {
            kind: WasteKind::EbsVolume,
            resource_id: id.into(),
            size_gb: Some(100),
            monthly_cost_usd: 8.0,
            reason: "unattached".into(),
            candidate: true,
            snapshot_ids: vec![],
        }
    }

    fn scope(mode: Mode, at: DateTime<Utc>, rules: &WasteRules) -> Scope<'_> {
        Scope {
            account: "111111111111",
            region: "us-east-1",
            mode,
            rules,
            now: at,
        }
    }

    /// Runs the lifecycle for `seen` at each instant, returning the record and effects.
    fn run(
        mode: Mode,
        seen: &[(DateTime<Utc>, Option<Observation>)],
    ) -> (Option<WasteRecord>, Vec<Effect>) {
        let rules = WasteRules::default();
        let mut record: Option<WasteRecord> = None;
        let mut effects = Vec::new();
        for (at, observation) in seen {
            let s = step(
                record.as_ref(),
                observation.as_ref(),
                &scope(mode, *at, &rules),
            );
            if s.record.is_some() {
                record = s.record;
            }
            effects.push(s.effect);
        }
        (record, effects)
    }

    #[test]
    fn a_candidate_is_detected_then_flagged_after_seven_days_not_six() {
        let o = Some(candidate("vol-1"));
        let (r, effects) = run(Mode::Audit, &[(ago(6), o.clone()), (now(), o.clone())]);
        assert_eq!(
            r.unwrap().status,
            WasteStatus::Detected,
            "6 days after first seen"
        );
        assert_eq!(effects, vec![Effect::None, Effect::None]);

        let (r, effects) = run(Mode::Audit, &[(ago(7), o.clone()), (now(), o.clone())]);
        let r = r.unwrap();
        assert_eq!(r.status, WasteStatus::Flagged, "7 days after first seen");
        assert_eq!(r.flagged_at, Some(now()));
        assert_eq!(r.delete_after, None, "audit mode schedules nothing");
        assert!(matches!(&effects[1], Effect::Tag(v) if v.contains("audit mode")));
    }

    #[test]
    fn live_mode_schedules_with_a_full_grace_and_deletes_only_after_it() {
        let o = Some(candidate("vol-1"));
        let flagged = ago(7);
        let (r, effects) = run(Mode::Live, &[(ago(14), o.clone()), (flagged, o.clone())]);
        let r = r.unwrap();
        assert_eq!(r.status, WasteStatus::ScheduledDelete);
        assert_eq!(r.delete_after, Some(flagged + TimeDelta::days(7)));
        assert!(matches!(&effects[1], Effect::Tag(v) if v.contains("deleted after")));

        let rules = WasteRules::default();
        let before = step(
            Some(&r),
            o.as_ref(),
            &scope(Mode::Live, now() - TimeDelta::seconds(1), &rules),
        );
        assert_eq!(before.effect, Effect::None);
        assert_eq!(before.record.unwrap().status, WasteStatus::ScheduledDelete);

        let due = step(Some(&r), o.as_ref(), &scope(Mode::Live, now(), &rules));
        assert_eq!(due.effect, Effect::Delete);
        assert_eq!(due.record.unwrap().status, WasteStatus::Deleted);
    }

    #[test]
    fn a_flag_raised_in_audit_mode_gets_a_fresh_grace_when_live_starts() {
        let o = Some(candidate("vol-1"));
        let rules = WasteRules::default();
        let (r, _) = run(Mode::Audit, &[(ago(60), o.clone()), (ago(50), o.clone())]);
        assert_eq!(r.as_ref().unwrap().status, WasteStatus::Flagged);
        let live = step(r.as_ref(), o.as_ref(), &scope(Mode::Live, now(), &rules));
        let scheduled = live.record.unwrap();
        assert_eq!(scheduled.status, WasteStatus::ScheduledDelete);
        assert_eq!(scheduled.delete_after, Some(now() + TimeDelta::days(7)));
        assert!(matches!(live.effect, Effect::Tag(_)));
    }

    #[test]
    fn switching_live_off_unschedules() {
        let o = Some(candidate("vol-1"));
        let rules = WasteRules::default();
        let (r, _) = run(Mode::Live, &[(ago(20), o.clone()), (ago(10), o.clone())]);
        assert_eq!(r.as_ref().unwrap().status, WasteStatus::ScheduledDelete);
        let audit = step(r.as_ref(), o.as_ref(), &scope(Mode::Audit, now(), &rules));
        let record = audit.record.unwrap();
        assert_eq!(record.status, WasteStatus::Flagged);
        assert_eq!(record.delete_after, None);
        assert!(matches!(audit.effect, Effect::Tag(v) if v.contains("audit mode")));
    }

    #[test]
    fn a_resource_that_stops_being_waste_is_resolved_and_untagged() {
        let o = Some(candidate("vol-1"));
        let (r, _) = run(Mode::Audit, &[(ago(10), o.clone()), (ago(1), o.clone())]);
        let mut attached = candidate("vol-1");
        attached.candidate = false;
        attached.reason = "in-use (attached or changing)".into();
        let rules = WasteRules::default();
        let s = step(
            r.as_ref(),
            Some(&attached),
            &scope(Mode::Audit, now(), &rules),
        );
        let resolved = s.record.unwrap();
        assert_eq!(resolved.status, WasteStatus::Resolved);
        assert_eq!(resolved.closed_at, Some(now()));
        assert_eq!(s.effect, Effect::Untag);

        // Waste again later: a fresh lifecycle from DETECTED.
        let again = step(
            Some(&resolved),
            o.as_ref(),
            &scope(Mode::Audit, now(), &rules),
        );
        let again = again.record.unwrap();
        assert_eq!(again.status, WasteStatus::Detected);
        assert_eq!(again.first_seen, now());
        assert_eq!(again.version, resolved.version + 1);
    }

    #[test]
    fn a_vanished_resource_is_resolved_or_confirmed_deleted_if_its_deletion_was_due() {
        let o = Some(candidate("vol-1"));
        let rules = WasteRules::default();
        let (detected, _) = run(Mode::Audit, &[(ago(1), o.clone())]);
        let gone = step(detected.as_ref(), None, &scope(Mode::Audit, now(), &rules))
            .record
            .unwrap();
        assert_eq!(gone.status, WasteStatus::Resolved);

        let (scheduled, _) = run(Mode::Live, &[(ago(30), o.clone()), (ago(20), o.clone())]);
        let gone = step(scheduled.as_ref(), None, &scope(Mode::Live, now(), &rules))
            .record
            .unwrap();
        assert_eq!(
            gone.status,
            WasteStatus::Deleted,
            "a crashed run deleted it"
        );
    }

    #[test]
    fn untracked_non_candidates_write_nothing() {
        let mut o = candidate("vol-1");
        o.candidate = false;
        let rules = WasteRules::default();
        assert_eq!(
            step(None, Some(&o), &scope(Mode::Live, now(), &rules)),
            Step::nothing()
        );
        assert_eq!(
            step(None, None, &scope(Mode::Live, now(), &rules)),
            Step::nothing()
        );
    }

    #[test]
    fn tags_fit_in_256_characters() {
        let (r, _) = run(
            Mode::Live,
            &[
                (ago(20), Some(candidate("vol-1"))),
                (ago(10), Some(candidate("vol-1"))),
            ],
        );
        let value = r.unwrap().tag_value();
        assert!(value.len() <= 256);
        assert!(value.contains(EXEMPT_TAG));
    }
}
