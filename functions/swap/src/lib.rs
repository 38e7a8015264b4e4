//! The ASG swap: one module per step Lambda of `statemachines/asg-swap.asl.json`, each with its
//! `Config` and its step. The group's in-service capacity never drops below where it started:
//! replacements are attached before their predecessors leave (N → N+1), predecessors are detached
//! with decrement (N+1 → N) only once every replacement is InService, then terminated.
//!
//! | Lambda | module | does |
//! |---|---|---|
//! | `swap-discover` | [`discover`] | the group, every refusal, the members to replace, the lock |
//! | `swap-plan` | [`plan`] | each member's pools (same AZ, behind the gatekeeper), the risk |
//! | `swap-shadow` | [`shadow`] | records what the swap would have done and saved |
//! | `swap-prepare` | [`prepare`] | suspends `AZRebalance`, raises MaxSize if needed |
//! | `swap-launch` | [`launch`] | the batch's Spot replacements from the group's launch template |
//! | `swap-health` | [`health`] | their 2/2 status checks |
//! | `swap-attach` | [`attach`] | attaches them, waits for InService and healthy targets |
//! | `swap-detach` | [`detach`] | detaches the predecessors with decrement, waits, terminates them |
//! | `swap-restore` | [`restore`] | puts back what the swap changed on the group |
//! | `swap-rollback` | [`rollback`] | compensates, from what the group shows now |
//!
//! Steps hold the AWS adapters themselves; their decisions are pure functions of
//! `spot_domain::saga::swap`, tested there in memory; the steps are tested in the bed.

pub mod attach;
pub mod detach;
pub mod discover;
pub mod health;
pub mod launch;
pub mod plan;
pub mod prepare;
pub mod restore;
pub mod rollback;
pub mod shadow;

use std::sync::Arc;

use spot_aws::{AccountClients, AwsContext};
use spot_domain::Capability;
use spot_domain::saga::StepError;
use spot_domain::saga::swap::Group;

/// What connecting a step at start may fail with (its configuration, the home account).
pub type Error = lambda_runtime::Error;

/// The function's AWS context, loaded once per cold start; in member accounts it assumes the role
/// of `capability` (plans, shadows and health checks only read).
async fn aws(capability: Capability, function: &str) -> Arc<AwsContext> {
    Arc::new(AwsContext::load(capability, function).await)
}

fn dynamodb(ctx: &AwsContext) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(ctx.base())
}

/// The group as it is now; a group that disappeared ends the swap as `NotEligible`.
async fn group_now(account: &AccountClients, name: &str) -> Result<Group, StepError> {
    account
        .autoscaling
        .group(name)
        .await?
        .ok_or_else(|| StepError::not_eligible(format!("group {name} no longer exists")))
}

/// Puts back what swap `swap_id` changed on the group, as its mark on the group recorded it
/// (`spot_domain::saga::swap::restore` decides); idempotent, and nothing without the mark.
/// Returns what it did.
async fn restore_group(
    account: &AccountClients,
    name: &str,
    swap_id: &str,
) -> Result<Vec<String>, spot_domain::AwsError> {
    use spot_domain::saga::swap::{AZ_REBALANCE, GroupChange, restore};
    use spot_domain::tags::{RESTORE_TAG, SWAP_TAG};
    let Some(now) = account.autoscaling.group(name).await? else {
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    for change in restore(swap_id, &now) {
        match change {
            GroupChange::SetMaxSize { from, to } => {
                account.autoscaling.set_max_size(name, to).await?;
                done.push(format!("MaxSize {from} → {to}"));
            }
            GroupChange::ResumeAzRebalance => {
                account.autoscaling.resume(name, AZ_REBALANCE).await?;
                done.push(format!("{AZ_REBALANCE} resumed"));
            }
            GroupChange::Unmark => {
                account
                    .autoscaling
                    .untag_group(name, &[SWAP_TAG, RESTORE_TAG])
                    .await?;
            }
        }
    }
    Ok(done)
}
