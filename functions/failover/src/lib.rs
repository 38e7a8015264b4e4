//! The emergency failover: one module per step Lambda of
//! `statemachines/emergency-failover.asl.json`, each with its `Config` (what it reads from its
//! environment) and its step.
//!
//! | Lambda | module | does |
//! |---|---|---|
//! | `failover-launch` | [`launch`] | plans and launches the replacement: Spot, on-demand, the origin |
//! | `failover-preserve` | [`preserve`] | keeps the dying instance's volumes past its termination |
//! | `failover-health` | [`health`] | the replacement's 2/2 status checks |
//! | `failover-promote` | [`promote`] | address, target groups, roles in the ledger, retirement |
//! | `failover-rollback` | [`rollback`] | what a failed failover leaves, and the record of why |
//! | `failover-standby` | [`standby`] | a replica workload's one warm standby, in another pool |
//!
//! Planning and launching are one step: the first launch call is due within a second of the
//! warning, and a state transition plus a Lambda invocation between them would cost a good part
//! of it. The decisions are pure functions in `spot_domain::saga::failover`; the steps are tested
//! in the bed, where moto runs the real state machine against these binaries.

pub mod health;
pub mod launch;
pub mod preserve;
pub mod promote;
pub mod rollback;
pub mod standby;

use std::sync::Arc;

use spot_aws::AwsContext;
use spot_domain::Capability;

/// What connecting a step at start may fail with (its configuration, the home account).
pub type Error = lambda_runtime::Error;

/// The function's AWS context, loaded once per cold start; in member accounts it assumes the role
/// of `capability`.
async fn aws(capability: Capability, function: &str) -> Arc<AwsContext> {
    Arc::new(AwsContext::load(capability, function).await)
}

fn dynamodb(ctx: &AwsContext) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(ctx.base())
}
