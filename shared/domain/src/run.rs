//! Running one piece of work per account and region, a bounded number at a time.

use std::future::Future;

use futures::StreamExt;

use crate::report::TargetReport;
use crate::scope::Target;

/// Runs `work` for every target, at most `concurrency` at once; a failing target reports its error
/// in its own report and does not stop the others.
pub async fn each_target<F, Fut>(
    targets: Vec<Target>,
    concurrency: usize,
    work: F,
) -> Vec<TargetReport>
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = TargetReport>,
{
    futures::stream::iter(targets)
        .map(work)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}
