//! The `fanout` function: the two ends of a scheduled function fanned out on Step Functions
//! (`statemachines/scheduled-fanout.asl.json`). `{"list": {"request": <run request or null>,
//! "function": <name>}}` answers the targets the scheduled function would cover (the same rules,
//! `governance::scope`), each with the request's mode (checked as that function reads it), and the
//! `Map` state's concurrency; `{"summarise": {"function", "results", "unreachable"}}` sums up
//! what the `Map` state kept. It reads the accounts table and nothing else.

use serde::Deserialize;
use serde_json::Value;
use spot_domain::AccountRegistry;
use spot_domain::config::{self, ConfigError, Env, key};
use spot_domain::governance::fanout::{self, Summary, TargetList, TargetOutcome};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::governance::run::{RunError, accounts_of};
use spot_domain::governance::scope::{Defaults, RequestError, RunRequest};
use tracing::{info, warn};

pub const FUNCTION: &str = "fanout";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts_table: String,
    /// The account the scheduled functions run in; asked of STS at start when unset.
    pub home_account_id: Option<String>,
    /// `REGIONS`, else the function's own region, as the scheduled functions read it.
    pub regions: Vec<String>,
    /// The `Map` state's concurrency (`FAN_OUT_CONCURRENCY`, 1-100).
    pub max_concurrency: u32,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts_table: env.required(key::ACCOUNTS_TABLE)?,
            home_account_id: env.optional(key::HOME_ACCOUNT_ID),
            regions: config::regions(env)?,
            max_concurrency: env.bounded(key::FAN_OUT_CONCURRENCY, 10, 1, 100)?,
        })
    }
}

/// What the state machine asks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Ask {
    List(Listing),
    Summarise(Results),
}

/// The run request the machine was started with, and the function it fans out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    request: Value,
    function: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Results {
    function: String,
    results: Vec<TargetOutcome>,
    #[serde(default)]
    unreachable: Vec<String>,
}

/// The answer: the targets, or the summary.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Answer {
    Targets(TargetList),
    Summary(Summary),
}

pub struct FanOut<R> {
    pub registry: R,
    pub home_account: String,
    pub config: Config,
}

impl<R: AccountRegistry> FanOut<R> {
    pub async fn handle(&self, input: Value) -> Result<Answer, RunError> {
        let ask: Ask = serde_json::from_value(input).map_err(|e| {
            RunError::Request(RequestError(format!(
                "expected {{\"list\": request}} or {{\"summarise\": results}}: {e}"
            )))
        })?;
        match ask {
            Ask::List(Listing {
                mut request,
                function,
            }) => {
                let mode = fanout::take_mode(&function, &mut request)?;
                let request = RunRequest::parse(request)?;
                let registry = accounts_of(&request, &self.registry).await?;
                // Listing needs no live switch: each invocation applies its own, lowered by the
                // request's mode.
                let switch = LiveSwitch::default();
                let defaults = Defaults {
                    home: &self.home_account,
                    regions: &self.config.regions,
                    switch: &switch,
                };
                let list = fanout::list(
                    &request,
                    mode.as_deref(),
                    &registry,
                    &defaults,
                    self.config.max_concurrency,
                );
                info!(
                    function = %function,
                    mode = mode.as_deref().unwrap_or("its own"),
                    targets = list.targets.len(),
                    unreachable = list.unreachable.len(),
                    "targets listed"
                );
                Ok(Answer::Targets(list))
            }
            Ask::Summarise(r) => {
                let summary = fanout::summarise(&r.function, r.results, r.unreachable);
                for f in &summary.failed {
                    warn!(function = %summary.function, account = %f.account, region = %f.region, error = %f.error, "target failed");
                }
                info!(
                    function = %summary.function,
                    targets = summary.targets,
                    failed = summary.failed.len(),
                    actions = summary.actions,
                    "run finished"
                );
                Ok(Answer::Summary(summary))
            }
        }
    }
}
