//! The `accounts-verify` function (`spotctl accounts verify`): for each registered account (or
//! those named), assume its member read role with its ExternalId, as every scheduled function
//! does, and make one small read; say what works and what does not, and why. It changes nothing.
//! A function and not the operator's own credentials, because the member roles trust only the
//! stack's functions (by their capability tag).

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spot_aws::{AwsContext, Ec2};
use spot_domain::config::{self, Accounts, ConfigError, Env};
use spot_domain::governance::run::{RunError, accounts_of};
use spot_domain::governance::scope::{RequestError, RunRequest, check_scope};
use spot_domain::{Access, AccountRegistry, AccountView, Environment};
use tracing::info;

pub const FUNCTION: &str = "accounts-verify";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    /// An account's region when its registry item names none (`REGIONS`, else the function's).
    pub regions: Vec<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            regions: config::regions(env)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    #[serde(default)]
    accounts: Option<Vec<String>>,
}

/// One account's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub account: String,
    pub environment: Environment,
    /// The role assumed; none for the home account (own credentials).
    pub role_arn: Option<String>,
    pub region: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Verifier<R> {
    pub registry: R,
    pub ctx: Arc<AwsContext>,
    pub home_account: String,
    pub config: Config,
}

impl<R: AccountRegistry> Verifier<R> {
    pub async fn handle(&self, input: Value) -> Result<Vec<Verdict>, RunError> {
        let ask: Ask = serde_json::from_value(input).map_err(|e| {
            RunError::Request(RequestError(format!(
                "expected {{\"accounts\"?: [...]}}: {e}"
            )))
        })?;
        check_scope(ask.accounts.as_deref(), None)?;
        let request = RunRequest {
            accounts: ask.accounts.clone(),
            ..RunRequest::default()
        };
        let registry = accounts_of(&request, &self.registry).await?;
        let ids: Vec<String> = match ask.accounts {
            Some(named) => named,
            None => registry.iter().map(|a| a.account_id.clone()).collect(),
        };
        let verdicts = futures::stream::iter(ids)
            .map(|id| {
                let item = registry.iter().find(|a| a.account_id == id).cloned();
                self.verify(id, item)
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await;
        info!(
            accounts = verdicts.len(),
            failing = verdicts.iter().filter(|v| !v.ok).count(),
            "verified"
        );
        Ok(verdicts)
    }

    async fn verify(&self, id: String, item: Option<spot_domain::Account>) -> Verdict {
        let region = item
            .as_ref()
            .and_then(|a| a.regions.first().cloned())
            .or_else(|| self.config.regions.first().cloned())
            .unwrap_or_default();
        let registered = item.is_some();
        let view = AccountView::new(&id, item, Environment::Prod);
        let mut verdict = Verdict {
            account: id.clone(),
            environment: view.environment,
            role_arn: None,
            region: region.clone(),
            ok: false,
            detail: String::new(),
        };
        if !registered && id != self.home_account {
            verdict.detail = "not in the accounts table (spotctl accounts put, or discover)".into();
            return verdict;
        }
        let access = match view.access(&self.home_account) {
            Ok(access) => access,
            Err(e) => {
                verdict.detail = e.to_string();
                return verdict;
            }
        };
        if let Access::AssumeRole { role_arn, .. } = &access {
            verdict.role_arn = Some(role_arn.clone());
        }
        let config = self.ctx.config_for(&access, &region).await;
        match Ec2::new(aws_sdk_ec2::Client::new(&config))
            .reachable()
            .await
        {
            Ok(seen) => {
                verdict.ok = true;
                verdict.detail =
                    format!("DescribeInstances answered ({seen} instance(s) in the first page)");
            }
            Err(e) => {
                verdict.detail = match e.code.as_deref() {
                    Some("AccessDenied") | Some("AccessDeniedException") => format!(
                        "{e} - check the member stack is deployed there, its ExternalId matches, and it trusts this account"
                    ),
                    _ => e.to_string(),
                }
            }
        }
        verdict
    }
}
