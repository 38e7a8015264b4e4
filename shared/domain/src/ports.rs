//! What the rules need from the outside world. `spot-aws` implements these over the AWS SDK; unit
//! tests implement them over memory.

use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::account::{Access, Account};
use crate::pool::PoolKey;
use crate::quarantine::QuarantineRecord;

/// An AWS call that failed, classified so callers can decide to retry, report or route on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    pub kind: AwsErrorKind,
    /// The API operation, e.g. `DescribeInstances`.
    pub operation: String,
    /// The service's error code, e.g. `RequestLimitExceeded`, when there is one.
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttling, timeouts, 5xx, connection failures: worth retrying.
    Transient,
    AccessDenied,
    /// A stored item this version cannot read.
    InvalidData,
    /// Any other answer from the service.
    Rejected,
}

impl AwsError {
    pub fn new(
        kind: AwsErrorKind,
        operation: impl Into<String>,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation: operation.into(),
            code,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == AwsErrorKind::Transient
    }

    /// Stable error name for Lambda and state machines.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            AwsErrorKind::Transient => "Transient",
            AwsErrorKind::AccessDenied => "AccessDenied",
            AwsErrorKind::InvalidData => "InvalidData",
            AwsErrorKind::Rejected => "AwsError",
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instance_type: String,
    pub az_name: String,
    pub az_id: String,
    pub state: String,
    /// `spot` for Spot instances, none for on-demand.
    pub lifecycle: Option<String>,
}

/// The accounts registry.
pub trait AccountRegistry: Send + Sync {
    fn account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Account>, AwsError>> + Send;

    /// Every registered account.
    fn all(&self) -> impl Future<Output = Result<Vec<Account>, AwsError>> + Send;
}

/// Finds where an instance runs, in the account and region the caller names.
pub trait InstanceDirectory: Send + Sync {
    /// `Ok(None)` when the instance does not exist (any more).
    fn placement(
        &self,
        access: &Access,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Placement>, AwsError>> + Send;
}

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Written,
    /// Someone else changed the item since it was read; read again and decide again.
    Conflict,
}

/// The shared table of pool quarantines.
pub trait QuarantineStore: Send + Sync {
    /// A strongly consistent read of one pool's record, active or not.
    fn get(
        &self,
        pool: &PoolKey,
    ) -> impl Future<Output = Result<Option<QuarantineRecord>, AwsError>> + Send;

    /// Writes `record` only if the stored version is `record.version - 1` (absent for version 1).
    fn put(
        &self,
        record: &QuarantineRecord,
    ) -> impl Future<Output = Result<Write, AwsError>> + Send;

    /// Every record in the table, active or not.
    fn all(&self) -> impl Future<Output = Result<Vec<QuarantineRecord>, AwsError>> + Send;

    /// The records of `pools` that exist (batched reads).
    fn get_many(
        &self,
        pools: &[PoolKey],
    ) -> impl Future<Output = Result<Vec<QuarantineRecord>, AwsError>> + Send;
}

// ---- scheduled governance: waste scanner and security enforcer -----------------------------------

use crate::enforcement::{EnforceAction, EnforcementRecord, Instance};
use crate::mode::Mode;
use crate::waste::{Inventory, Usage, WasteKind, WasteRecord};

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
    fn fleet(&self, access: &Access, region: &str) -> impl Future<Output = Self::Fleet> + Send;
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

/// One destructive action, recorded before it is taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Stable for one decision, so a re-run after a crash finds it: `{function}#{resource key}#{action}#{deadline}`.
    pub action_id: String,
    pub function: String,
    pub action: String,
    pub account: String,
    pub region: String,
    pub resource_id: String,
    pub reason: String,
    /// The resource's record before the action, as JSON.
    pub pre_state: String,
    pub mode: Mode,
    pub request_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Whether an audited action was already completed by an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBegin {
    /// First attempt, or an earlier attempt that did not finish: take the action.
    Proceed,
    /// An earlier run took it and recorded so.
    AlreadyDone,
}

pub trait AuditLog: Send + Sync {
    /// Records the intent (once per `action_id`).
    fn begin(
        &self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<AuditBegin, AwsError>> + Send;
    /// Records how it ended: `done`, `pending`, `refused: …`, `failed: …`.
    fn finish(
        &self,
        action_id: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

// ---- the atomic-switch saga ---------------------------------------------------------------------

use crate::switch::{InstanceTypeInfo, SourceInstance, SpotPrice, SubnetInfo};

/// A clone the saga launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchClone {
    pub instance_id: String,
    pub instance_type: String,
    pub az_name: String,
}

/// How to launch the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub switch_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub iam_instance_profile_arn: Option<String>,
    pub key_name: Option<String>,
    pub ebs_optimized: bool,
    pub user_data: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Idempotency token (at most 64 characters).
    pub client_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    Instance(String),
    /// The pool has no Spot capacity now (`InsufficientInstanceCapacity` and the like).
    NoCapacity(String),
}

/// 2/2 status checks, as EC2 reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    pub state: String,
    pub system: String,
    pub instance: String,
}

/// EC2 as the saga needs it, in one account and region.
pub trait SwitchFleet: Send + Sync {
    fn source(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<SourceInstance>, AwsError>> + Send;
    /// What placement decisions need of several instances (type, size, AZ, network, tags), in a
    /// few calls whatever their number; volumes, user data and address are left empty.
    fn placements(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<SourceInstance>, AwsError>> + Send;
    fn instance_types(
        &self,
        architecture: &str,
    ) -> impl Future<Output = Result<Vec<InstanceTypeInfo>, AwsError>> + Send;
    fn subnets(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<SubnetInfo>, AwsError>> + Send;
    fn spot_prices(
        &self,
        instance_types: &[String],
    ) -> impl Future<Output = Result<Vec<SpotPrice>, AwsError>> + Send;
    /// The saga's image of `switch_id` (found by name), or a new one.
    fn image(
        &self,
        switch_id: &str,
        instance_id: &str,
        no_reboot: bool,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// The saga's image of `switch_id`, if one was made.
    fn find_image(
        &self,
        switch_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// The image's state and snapshots; `None` when it no longer exists.
    fn image_state(
        &self,
        image_id: &str,
    ) -> impl Future<Output = Result<Option<(String, Vec<String>)>, AwsError>> + Send;
    /// The clone a previous attempt of `switch_id` launched, if any (not terminated).
    fn clone_of(
        &self,
        switch_id: &str,
    ) -> impl Future<Output = Result<Option<SwitchClone>, AwsError>> + Send;
    fn launch(&self, spec: &LaunchSpec) -> impl Future<Output = Result<Launched, AwsError>> + Send;
    fn health(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<InstanceHealth>, AwsError>> + Send;
    /// The instance's state (`running`, `stopped`...), `None` if it does not exist.
    fn state(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn stop(&self, instance_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn start(&self, instance_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn terminate(&self, instance_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag(
        &self,
        resource_id: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tags(
        &self,
        resource_id: &str,
    ) -> impl Future<Output = Result<crate::waste::Tags, AwsError>> + Send;
    /// Removes the tag `key` (any value); a missing tag or resource is done.
    fn untag(
        &self,
        resource_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Associates the address with `instance_id` (re-association allowed).
    fn move_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The instance an address is associated with.
    fn address_holder(
        &self,
        allocation_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// Running instances, with their market and tags (one paginated list).
    fn running(&self)
    -> impl Future<Output = Result<Vec<crate::route::Routable>, AwsError>> + Send;
    /// Deregisters the image and deletes its snapshots; "already gone" is done.
    fn remove_image(
        &self,
        image_id: &str,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Linux on-demand prices, USD per hour (`None`: not sold there, or unknown).
pub trait OnDemandPrices: Send + Sync {
    fn on_demand(
        &self,
        region: &str,
        instance_type: &str,
    ) -> impl Future<Output = Result<Option<f64>, AwsError>> + Send;
}

/// The shipped table alone (offline, and in tests of pure logic).
impl OnDemandPrices for crate::catalog::Catalog {
    async fn on_demand(&self, region: &str, instance_type: &str) -> Result<Option<f64>, AwsError> {
        Ok(crate::catalog::Catalog::on_demand(
            self,
            region,
            instance_type,
        ))
    }
}

/// Builds the [`SwitchFleet`] of an account and region.
pub trait SwitchFleets: Send + Sync {
    type Fleet: SwitchFleet;
    fn switch_fleet(
        &self,
        access: &Access,
        region: &str,
    ) -> impl Future<Output = Self::Fleet> + Send;
}

// ---- the ASG swap -------------------------------------------------------------------------------

/// How to launch a group's replacement: the group's own launch template or configuration, with
/// the chosen type, subnet and Spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLaunchSpec {
    pub source: crate::asg::LaunchSource,
    pub instance_type: String,
    pub subnet_id: String,
    pub tags: Vec<(String, String)>,
    /// Idempotency token (at most 64 characters).
    pub client_token: String,
}

/// Auto Scaling and its target groups, as the swap needs them, in one account and region.
pub trait GroupFleet: Send + Sync {
    /// The group as Auto Scaling describes it (sizes, processes, target groups, members'
    /// lifecycle and health), in one call; `None` if absent. Members' market and exemption and the
    /// launch hooks are not read here (`false`, empty): [`GroupFleet::inspect`] reads them.
    fn group(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<crate::asg::Group>, AwsError>> + Send;
    /// [`GroupFleet::group`] plus what eligibility decides on: each member's market and
    /// exemption (EC2) and the launch lifecycle hooks.
    fn inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<crate::asg::Group>, AwsError>> + Send;
    fn suspend(
        &self,
        name: &str,
        process: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn resume(
        &self,
        name: &str,
        process: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn set_max_size(
        &self,
        name: &str,
        max: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn launch(
        &self,
        spec: &GroupLaunchSpec,
    ) -> impl Future<Output = Result<Launched, AwsError>> + Send;
    /// The replacement a previous attempt of `swap_id` launched for `old`, if any (not terminated).
    fn replacement_of(
        &self,
        swap_id: &str,
        old: &str,
    ) -> impl Future<Output = Result<Option<SwitchClone>, AwsError>> + Send;
    /// Attaches running instances (desired capacity grows by as many).
    fn attach(
        &self,
        name: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Detaches instances and decrements the desired capacity by as many.
    fn detach(
        &self,
        name: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The state of `instance` in each target group (`healthy`, `initial`, `draining`, `unused`...).
    fn target_states(
        &self,
        target_groups: &[String],
        instance: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send;
    /// Deregisters `instance` from the target groups (starts draining); "not registered" is done.
    fn deregister(
        &self,
        target_groups: &[String],
        instance: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Builds the [`GroupFleet`] of an account and region.
pub trait GroupFleets: Send + Sync {
    type Fleet: GroupFleet;
    fn group_fleet(
        &self,
        access: &Access,
        region: &str,
    ) -> impl Future<Output = Self::Fleet> + Send;
}

/// Whether a start began an execution or found one of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    New(String),
    /// An execution of that name exists (running or ended): nothing was started.
    AlreadyExists,
}

/// Step Functions, as the router starts the sagas.
pub trait Executions: Send + Sync {
    fn start(
        &self,
        state_machine: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> impl Future<Output = Result<Started, AwsError>> + Send;
}

/// The switch ledger and its pending approvals.
pub trait SwitchLedger: Send + Sync {
    /// Records (or replaces) a switch's outcome.
    fn record(
        &self,
        record: &crate::saga::SwitchRecord,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn get(
        &self,
        switch_id: &str,
    ) -> impl Future<Output = Result<Option<crate::saga::SwitchRecord>, AwsError>> + Send;
    /// Takes the lock `key` for `owner` until `until`. `Ok(None)`: taken (or already held by
    /// `owner`); `Ok(Some(other))`: another owner holds it.
    fn lock(
        &self,
        key: &str,
        owner: &str,
        until: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// Releases `key` if `owner` holds it; anything else is left alone.
    fn unlock(&self, key: &str, owner: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub trait Approvals: Send + Sync {
    fn request(
        &self,
        request: &crate::saga::ApprovalRequest,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn pending(
        &self,
    ) -> impl Future<Output = Result<Vec<crate::saga::ApprovalRequest>, AwsError>> + Send;
    /// Marks a pending request answered (`status`, who, why); `false` if it was not pending any
    /// more.
    fn answer(
        &self,
        saga_id: &str,
        status: &str,
        by: &str,
        note: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
}
