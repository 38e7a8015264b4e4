//! What the scheduled governance functions need from AWS, one trait per capability; `spot-aws`
//! implements them. The flows are generic over them so the tests run them in-process with a fixed
//! clock against the bed.

use std::future::Future;

use crate::error::AwsError;
use crate::governance::enforcement::{EnforceAction, EnforcementRecord, Instance};
use crate::governance::scope::Target;
use crate::governance::waste::{Inventory, Usage, WasteKind, WasteRecord};
use crate::pool::quarantine::Write;

/// What to delete, and what a previous attempt left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub kind: WasteKind,
    pub resource_id: String,
    /// For an AMI: its snapshots, deleted with it.
    pub snapshot_ids: Vec<String>,
    /// For a volume: snapshot it first.
    pub backup: bool,
    /// A backup snapshot an earlier run already started.
    pub backup_snapshot_id: Option<String>,
    /// The deadline the owner was told of (part of the resource's `spot-optimizer:waste` tag):
    /// the deletion happens only if the resource's tag still announces it.
    pub announced: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Done {
        backup_snapshot_id: Option<String>,
    },
    /// The volume's backup snapshot is not complete yet: the volume is kept until a later run.
    BackupPending {
        backup_snapshot_id: String,
    },
    /// The resource changed since the scan (e.g. the address got associated): nothing was done.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforced {
    Done,
    /// Termination or stop protection, or another refusal: reported, never forced.
    Refused(String),
}

/// One account and region's EC2 and Auto Scaling resources.
pub trait Fleet: Send + Sync {
    /// Addresses, volumes, snapshots and own images (incl. disabled and deprecated); `usage` empty.
    fn waste_resources(&self) -> impl Future<Output = Result<Inventory, AwsError>> + Send;
    /// What uses images and snapshots: instances (any state) running `images`, and every launch
    /// template version and launch configuration.
    fn usage(&self, images: &[String]) -> impl Future<Output = Result<Usage, AwsError>> + Send;
    /// Instances in state `pending` or `running`.
    fn running_instances(&self) -> impl Future<Output = Result<Vec<Instance>, AwsError>> + Send;
    /// Tags all `resource_ids` (one call).
    fn set_tag(
        &self,
        resource_ids: &[String],
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn remove_tag(
        &self,
        resource_ids: &[String],
        key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes after re-checking that it is still unused; "already gone" is done.
    fn delete(&self, deletion: &Deletion)
    -> impl Future<Output = Result<Deleted, AwsError>> + Send;
    fn enforce(
        &self,
        instance_id: &str,
        action: EnforceAction,
    ) -> impl Future<Output = Result<Enforced, AwsError>> + Send;
}

/// Builds the [`Fleet`] of an account and region.
pub trait Fleets: Send + Sync {
    type Fleet: Fleet;
    /// The fleet of `target`'s account and region, its sessions named after the function (and the
    /// fan-out execution the run serves, if any).
    fn fleet(&self, target: &Target) -> impl Future<Output = Self::Fleet> + Send;
}

/// Tracked records of one account and region, and conditional writes (same rule as [`QuarantineStore::put`]).
pub trait WasteStore: Send + Sync {
    fn records(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<WasteRecord>, AwsError>> + Send;
    fn put(&self, record: &WasteRecord) -> impl Future<Output = Result<Write, AwsError>> + Send;
}

pub trait EnforcementStore: Send + Sync {
    fn records(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<EnforcementRecord>, AwsError>> + Send;
    fn put(
        &self,
        record: &EnforcementRecord,
    ) -> impl Future<Output = Result<Write, AwsError>> + Send;
}
