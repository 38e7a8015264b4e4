//! The atomic switch: one module per step Lambda of `statemachines/atomic-switch.asl.json`, each
//! with its `Config` (what it reads from its environment) and its step (what it reads from AWS,
//! which decision of `spot_domain::saga::switch` it asks, what it does).
//!
//! | Lambda | module | does |
//! |---|---|---|
//! | `switch-plan` | [`plan`] | eligibility, pools ranked behind the gatekeeper, risk, the lock |
//! | `switch-shadow` | [`shadow`] | records what a switch would have done and saved |
//! | `switch-image` | [`image`] | images the source, then watches the image |
//! | `switch-launch` | [`launch`] | the Spot clone, in the best pool still open |
//! | `switch-health` | [`health`] | the clone's 2/2 status checks |
//! | `switch-cutover` | [`cutover`] | stops the source, moves its address, records the switch |
//! | `switch-rollback` | [`rollback`] | compensates whatever was done |
//! | `switch-revert` | [`revert`] | switches a completed switch back (`spotctl switch revert`; not a state machine step) |
//!
//! Steps hold the AWS adapters themselves (no generics): their decisions are pure functions tested
//! in `spot-domain`, the steps are tested in the bed, where moto runs the real state machine
//! against these binaries.

pub mod cutover;
pub mod health;
pub mod image;
pub mod launch;
pub mod plan;
pub mod revert;
pub mod rollback;
pub mod shadow;

use std::sync::Arc;

use spot_aws::AwsContext;
use spot_domain::Capability;

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
