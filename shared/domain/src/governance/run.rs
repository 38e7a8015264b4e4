//! Running a scheduled function: parse the request, resolve the targets from the registry, run one
//! piece of work per account and region (a bounded number at a time), and summarise.

use std::future::Future;

use futures::StreamExt;
use serde_json::Value;

use crate::account::AccountRegistry;
use crate::error::{AwsError, ErrorName};
use crate::governance::report::{RunReport, TargetReport};
use crate::governance::scope::{self, Defaults, RequestError, RunRequest, Target};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("reading the accounts table: {0}")]
    Registry(#[from] AwsError),
    /// Reading what the whole run works from (e.g. the ledger, once per run) failed.
    #[error("reading {what}: {source}")]
    Store {
        what: &'static str,
        source: AwsError,
    },
}

impl RunError {
    /// Stable name for Lambda's `errorType`.
    pub fn error_name(&self) -> ErrorName {
        match self {
            Self::Request(_) => ErrorName::InvalidRequest,
            Self::Registry(e) => e.error_name(),
            Self::Store { source, .. } => source.error_name(),
        }
    }
}

/// One run of `function` over the targets `input` asks for. A target whose work fails reports the
/// error in its own report and does not stop the others.
pub async fn scheduled<R, F, Fut>(
    function: &'static str,
    input: Value,
    request_id: &str,
    registry: &R,
    defaults: &Defaults<'_>,
    concurrency: usize,
    work: F,
) -> Result<RunReport, RunError>
where
    R: AccountRegistry,
    F: Fn(Target) -> Fut,
    Fut: Future<Output = TargetReport>,
{
    let request = RunRequest::parse(input)?;
    let accounts = accounts_of(&request, registry).await?;
    let (targets, unreachable) = scope::targets(&request, &accounts, defaults);
    let reports = futures::stream::iter(targets)
        .map(work)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let errors = unreachable
        .iter()
        .map(|u| format!("{}: {}", u.account, u.reason))
        .collect();
    Ok(RunReport::new(function, request_id, reports, errors))
}

/// The registry items a run needs: those of the accounts it names, one read each (a fanned-out
/// run names one account per invocation), else the whole registry.
pub async fn accounts_of<R: AccountRegistry>(
    request: &RunRequest,
    registry: &R,
) -> Result<Vec<crate::account::Account>, AwsError> {
    match &request.accounts {
        Some(named) if named.len() <= NAMED_READS => {
            let mut found = Vec::new();
            for account in named {
                found.extend(registry.account(account).await?);
            }
            Ok(found)
        }
        _ => registry.all().await,
    }
}

/// Up to this many named accounts are read one by one; more read the whole registry once.
const NAMED_READS: usize = 20;
