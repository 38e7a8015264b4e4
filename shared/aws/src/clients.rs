//! SDK configuration: the function's own, and one per member account reached through AssumeRole.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use spot_domain::saga::step::session_name;
use spot_domain::{Access, AwsError, Capability};

use crate::error::classify;

/// Session names in member accounts' CloudTrail start with this, then the function's name (saga
/// steps name the execution instead, see [`session_name`]).
const SESSION_PREFIX: &str = "spot-optimizer-";

/// Member sessions a process keeps; more (a warm step after many executions) start over.
const MAX_SESSIONS: usize = 64;

/// The function's base SDK configuration and the member-account configurations derived from it.
///
/// Member configurations are kept for the life of the process: the SDK caches and refreshes the
/// assumed role's credentials, so a warm Lambda does not call AssumeRole per event. A saga step's
/// sessions are named per execution, so a warm step assumes once per execution it serves.
#[derive(Debug)]
pub struct AwsContext {
    base: SdkConfig,
    /// Which of a member account's roles this function assumes.
    capability: Capability,
    /// The function's name, which names its sessions in members' CloudTrail.
    function: String,
    assumed: Mutex<HashMap<(Access, String), SdkConfig>>,
}

impl AwsContext {
    /// Loads the default chain (env, container or instance role), with the HTTPS client of
    /// [`crate::tls`]. `AWS_ENDPOINT_URL` points every client at a local emulator. `function`
    /// (the binary's name) names its sessions in member accounts, where it assumes the role of
    /// `capability`.
    pub async fn load(capability: Capability, function: &str) -> Self {
        Self::new(crate::tls::load().await, capability, function)
    }

    pub fn new(base: SdkConfig, capability: Capability, function: &str) -> Self {
        Self {
            base,
            capability,
            function: function.to_owned(),
            assumed: Mutex::new(HashMap::new()),
        }
    }

    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// The configuration a scheduled run's `target` is reached with: its session names the
    /// function, and the fan-out execution the run serves when there is one.
    pub async fn config_for_target(
        &self,
        target: &spot_domain::governance::scope::Target,
    ) -> SdkConfig {
        match &target.execution {
            Some(execution) => {
                self.config_for_execution(&target.access, &target.region, execution)
                    .await
            }
            None => self.config_for(&target.access, &target.region).await,
        }
    }

    /// The configuration that reaches `access` in `region`, in a session named after the function.
    pub async fn config_for(&self, access: &Access, region: &str) -> SdkConfig {
        // Function names are binary names ([a-z-]); STS allows 64 characters.
        let session: String = format!("{SESSION_PREFIX}{}", self.function)
            .chars()
            .take(64)
            .collect();
        self.config_in_session(access, region, session).await
    }

    /// As [`AwsContext::config_for`], for a saga step acting for `execution`: the member's
    /// CloudTrail names the function and the execution ([`session_name`]).
    pub async fn config_for_execution(
        &self,
        access: &Access,
        region: &str,
        execution: &str,
    ) -> SdkConfig {
        let session = session_name(&self.function, execution);
        self.config_in_session(access, region, session).await
    }

    async fn config_in_session(&self, access: &Access, region: &str, session: String) -> SdkConfig {
        let credentials = match access {
            Access::Own => self.base.clone(),
            Access::AssumeRole { .. } => self.assumed(access, session).await,
        };
        credentials
            .into_builder()
            .region(Region::new(region.to_owned()))
            .build()
    }

    async fn assumed(&self, access: &Access, session: String) -> SdkConfig {
        let key = (access.clone(), session);
        if let Some(config) = lock(&self.assumed).get(&key) {
            return config.clone();
        }
        let Access::AssumeRole {
            role_arn,
            external_id,
        } = access
        else {
            return self.base.clone();
        };
        let mut builder = AssumeRoleProvider::builder(self.capability.role_arn(role_arn))
            .session_name(&key.1)
            .configure(&self.base);
        if let Some(external_id) = external_id {
            builder = builder.external_id(external_id.clone());
        }
        let provider = builder.build().await;
        let config = self
            .base
            .clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let mut assumed = lock(&self.assumed);
        // A warm step serves one execution after another: keep the cache small.
        if assumed.len() >= MAX_SESSIONS {
            assumed.clear();
        }
        assumed.insert(key, config.clone());
        config
    }

    /// The account the function runs in: `configured` (env `HOME_ACCOUNT_ID`, set by the template),
    /// else asked of STS once at start.
    pub async fn home_account(&self, configured: Option<String>) -> Result<String, AwsError> {
        match configured {
            Some(id) => Ok(id),
            None => self.own_account_id().await,
        }
    }

    /// The account the function's own credentials belong to.
    pub async fn own_account_id(&self) -> Result<String, AwsError> {
        account_of(&self.base).await
    }
}

/// The account `config`'s credentials belong to (STS `GetCallerIdentity`).
pub async fn account_of(config: &SdkConfig) -> Result<String, AwsError> {
    let sts = aws_sdk_sts::Client::new(config);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", e))?;
    identity.account.ok_or_else(|| {
        crate::error::invalid_data("GetCallerIdentity", "the answer names no account")
    })
}

/// Locks a cache; a poisoned lock (a panic elsewhere, impossible with panic=abort) still yields
/// the map, which holds no invariant a half-done insert could break.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
