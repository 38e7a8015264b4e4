//! The accounts registry: which environment an account is, and how to reach it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Environment {
    Prod,
    /// Lab accounts run experiments that interrupt their own instances; their signals say nothing
    /// about a pool's capacity, so they never quarantine.
    Lab,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prod => "PROD",
            Self::Lab => "LAB",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PROD" => Ok(Self::Prod),
            "LAB" => Ok(Self::Lab),
            _ => Err(AccountError::UnknownEnvironment(s.to_owned())),
        }
    }
}

/// A registered account, as stored in the accounts table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    pub environment: Environment,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Regions the scheduled scans cover in this account; empty: the deployment's `REGIONS`.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// Which credentials reach an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Access {
    /// The function's own credentials: its own account, or an unregistered one.
    Own,
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
    },
}

/// What a function does in a member account, and so which of the member's roles it assumes:
/// the interruption handler and every plan only read, and a role that can change instances is
/// assumed only by the steps that change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    Read,
    Governance,
    Switch,
    Swap,
    /// The emergency failover's acting steps.
    Failover,
    /// The hibernation reconciler: stops and starts scheduled instances, sizes scheduled groups.
    Hibernation,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Self::Read,
        Self::Governance,
        Self::Switch,
        Self::Swap,
        Self::Failover,
        Self::Hibernation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Governance => "governance",
            Self::Switch => "switch",
            Self::Swap => "swap",
            Self::Failover => "failover",
            Self::Hibernation => "hibernation",
        }
    }

    /// The member role for this capability: the registered role itself (read-only), or the role
    /// named after it with the capability as suffix (`…:role/SpotOptimizerMember-switch`).
    pub fn role_arn(self, registered: &str) -> String {
        match self {
            Self::Read => registered.to_owned(),
            other => format!("{registered}-{}", other.as_str()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("environment `{0}` is neither PROD nor LAB")]
    UnknownEnvironment(String),
    #[error("account {0} is registered without a role_arn, so it cannot be reached")]
    MissingRole(String),
    #[error("account {account}: role_arn `{role_arn}` belongs to another account")]
    RoleOfAnotherAccount { account: String, role_arn: String },
    #[error(
        "account {0} is not registered and the stack names no OrganizationId: only the home account's and registered accounts' signals are read (spotctl accounts put or discover)"
    )]
    OutsideOrganization(String),
    #[error(
        "account {0} of the organisation is not registered and the stack has no MemberExternalId to reach it by the member role convention (spotctl accounts discover)"
    )]
    NotOnboarded(String),
}

impl AccountError {
    pub fn error_name(&self) -> crate::ErrorName {
        crate::ErrorName::AccountMisconfigured
    }
}

/// How an account the registry does not know is reached, for the signals its events carry: an
/// account of the organisation (events reach the bus only from there, by its policy) through the
/// member stack's role, the same name and ExternalId in every account; anything else refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unregistered {
    /// The stack's `OrganizationId`.
    pub organization_id: Option<String>,
    /// The member stacks' role name (`MemberRoleName`).
    pub role_name: String,
    /// The member stacks' ExternalId (`MemberExternalId`).
    pub external_id: Option<String>,
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
}

/// What the optimizer knows about the account an event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account_id: String,
    pub environment: Environment,
    pub registered: bool,
    account: Option<Account>,
}

impl AccountView {
    /// `registered` is the registry's item, if any. An unregistered account gets `default_env`.
    pub fn new(account_id: &str, registered: Option<Account>, default_env: Environment) -> Self {
        Self {
            account_id: account_id.to_owned(),
            environment: registered.as_ref().map_or(default_env, |a| a.environment),
            registered: registered.is_some(),
            account: registered,
        }
    }

    /// As [`AccountView::access`], with `unregistered` deciding how an account the registry does
    /// not know is reached (instead of the function's own credentials, which would read the home
    /// account under another account's name).
    pub fn access_with(
        &self,
        home_account: &str,
        unregistered: &Unregistered,
    ) -> Result<Access, AccountError> {
        if self.registered || self.account_id == home_account {
            return self.access(home_account);
        }
        if unregistered.organization_id.is_none() {
            return Err(AccountError::OutsideOrganization(self.account_id.clone()));
        }
        let Some(external_id) = unregistered.external_id.clone() else {
            return Err(AccountError::NotOnboarded(self.account_id.clone()));
        };
        Ok(Access::AssumeRole {
            role_arn: format!(
                "arn:{}:iam::{}:role/{}",
                unregistered.partition, self.account_id, unregistered.role_name
            ),
            external_id: Some(external_id),
        })
    }

    /// The credentials to use. `home_account` is the account the function runs in.
    pub fn access(&self, home_account: &str) -> Result<Access, AccountError> {
        match &self.account {
            None => Ok(Access::Own),
            Some(_) if self.account_id == home_account => Ok(Access::Own),
            Some(account) => {
                let role_arn = account
                    .role_arn
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .ok_or_else(|| AccountError::MissingRole(self.account_id.clone()))?;
                // arn:aws:iam::<account>:role/<name>; a role elsewhere would read another tenant.
                if role_arn.split(':').nth(4) != Some(self.account_id.as_str()) {
                    return Err(AccountError::RoleOfAnotherAccount {
                        account: self.account_id.clone(),
                        role_arn,
                    });
                }
                Ok(Access::AssumeRole {
                    role_arn,
                    external_id: account.external_id.clone(),
                })
            }
        }
    }
}

/// The accounts registry (`ACCOUNTS_TABLE`).
pub trait AccountRegistry: Send + Sync {
    fn account(
        &self,
        account_id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Account>, crate::AwsError>> + Send;

    /// Every registered account.
    fn all(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<Account>, crate::AwsError>> + Send;
}

/// The registry, remembered for `ttl` per account (registered or not), so a warm function does not
/// read the same item on every event. A change to the registry applies within `ttl`.
pub struct CachedRegistry<R, C> {
    inner: R,
    clock: C,
    ttl: chrono::TimeDelta,
    entries: std::sync::Mutex<std::collections::HashMap<String, CacheEntry>>,
}

type CacheEntry = (chrono::DateTime<chrono::Utc>, Option<Account>);

impl<R, C> CachedRegistry<R, C> {
    pub fn new(inner: R, clock: C, ttl: chrono::TimeDelta) -> Self {
        Self {
            inner,
            clock,
            ttl,
            entries: std::sync::Mutex::default(),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CacheEntry>> {
        // The map holds no invariant a panicking writer could break.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<R: AccountRegistry, C: crate::Clock> AccountRegistry for CachedRegistry<R, C> {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, crate::AwsError> {
        let now = self.clock.now();
        if let Some((at, account)) = self.entries().get(account_id)
            && now - *at < self.ttl
        {
            return Ok(account.clone());
        }
        let account = self.inner.account(account_id).await?;
        self.entries()
            .insert(account_id.to_owned(), (now, account.clone()));
        Ok(account)
    }

    async fn all(&self) -> Result<Vec<Account>, crate::AwsError> {
        self.inner.all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_capability_assumes_its_own_member_role_and_reading_the_registered_one() {
        let registered = "arn:aws:iam::111122223333:role/SpotOptimizerMember";
        let roles: Vec<String> = Capability::ALL
            .iter()
            .map(|c| c.role_arn(registered))
            .collect();
        assert_eq!(
            roles,
            [
                registered.to_owned(),
                format!("{registered}-governance"),
                format!("{registered}-switch"),
                format!("{registered}-swap"),
                format!("{registered}-failover"),
                format!("{registered}-hibernation"),
            ]
        );
    }

    const HOME: &str = "123456789012";
    const MEMBER: &str = "222222222222";

    fn member(env: Environment, role: Option<&str>) -> Account {
        Account {
            account_id: MEMBER.into(),
            environment: env,
            role_arn: role.map(Into::into),
            external_id: Some("ext-1".into()),
            regions: Vec::new(),
        }
    }

    #[test]
    fn unregistered_account_gets_the_default_environment_and_own_credentials() {
        let view = AccountView::new(MEMBER, None, Environment::Prod);
        assert_eq!(view.environment, Environment::Prod);
        assert!(!view.registered);
        assert_eq!(view.access(HOME), Ok(Access::Own));

        let view = AccountView::new(MEMBER, None, Environment::Lab);
        assert_eq!(view.environment, Environment::Lab);
    }

    #[test]
    fn registered_member_is_reached_through_its_role() {
        let role = "arn:aws:iam::222222222222:role/SpotOptimizerMember";
        let view = AccountView::new(
            MEMBER,
            Some(member(Environment::Prod, Some(role))),
            Environment::Lab,
        );
        assert_eq!(view.environment, Environment::Prod);
        assert_eq!(
            view.access(HOME),
            Ok(Access::AssumeRole {
                role_arn: role.into(),
                external_id: Some("ext-1".into())
            })
        );
    }

    #[test]
    fn the_home_account_uses_own_credentials_even_if_registered() {
        let mut account = member(Environment::Prod, None);
        account.account_id = HOME.into();
        let view = AccountView::new(HOME, Some(account), Environment::Prod);
        assert_eq!(view.access(HOME), Ok(Access::Own));
    }

    #[test]
    fn a_member_without_role_or_with_a_foreign_role_is_misconfigured() {
        let view = AccountView::new(
            MEMBER,
            Some(member(Environment::Prod, None)),
            Environment::Prod,
        );
        assert_eq!(
            view.access(HOME),
            Err(AccountError::MissingRole(MEMBER.into()))
        );

        let view = AccountView::new(
            MEMBER,
            Some(member(
                Environment::Prod,
                Some("arn:aws:iam::999999999999:role/x"),
            )),
            Environment::Prod,
        );
        assert!(matches!(
            view.access(HOME),
            Err(AccountError::RoleOfAnotherAccount { .. })
        ));
    }

    #[test]
    fn an_unregistered_account_of_the_organisation_is_reached_by_the_member_role_convention() {
        let view = AccountView::new(MEMBER, None, Environment::Prod);
        let mut unregistered = Unregistered {
            organization_id: Some("o-abcdefghij".into()),
            role_name: "SpotOptimizerMember".into(),
            external_id: Some("ext-1".into()),
            partition: "aws".into(),
        };
        assert_eq!(
            view.access_with(HOME, &unregistered),
            Ok(Access::AssumeRole {
                role_arn: format!("arn:aws:iam::{MEMBER}:role/SpotOptimizerMember"),
                external_id: Some("ext-1".into())
            })
        );
        unregistered.external_id = None;
        assert_eq!(
            view.access_with(HOME, &unregistered),
            Err(AccountError::NotOnboarded(MEMBER.into()))
        );
        unregistered.organization_id = None;
        let refused = view.access_with(HOME, &unregistered).unwrap_err();
        assert_eq!(refused, AccountError::OutsideOrganization(MEMBER.into()));
        assert!(refused.to_string().contains("OrganizationId"));
        // The home account and registered ones are as before.
        let home = AccountView::new(HOME, None, Environment::Prod);
        assert_eq!(home.access_with(HOME, &unregistered), Ok(Access::Own));
        let role = "arn:aws:iam::222222222222:role/SpotOptimizerMember";
        let registered = AccountView::new(
            MEMBER,
            Some(member(Environment::Prod, Some(role))),
            Environment::Prod,
        );
        assert!(matches!(
            registered.access_with(HOME, &unregistered),
            Ok(Access::AssumeRole { .. })
        ));
    }

    #[test]
    fn environment_parses_case_insensitively_and_rejects_others() {
        assert_eq!("prod".parse::<Environment>(), Ok(Environment::Prod));
        assert_eq!(" LAB ".parse::<Environment>(), Ok(Environment::Lab));
        assert!("STAGING".parse::<Environment>().is_err());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::{AwsError, Clock};
    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Manual(Mutex<DateTime<Utc>>);
    impl Clock for &Manual {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// Answers "registered as PROD" for one account, counting reads.
    #[derive(Default)]
    struct Counting(AtomicUsize);
    impl AccountRegistry for Counting {
        async fn account(&self, account_id: &str) -> Result<Option<Account>, AwsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok((account_id == "222222222222").then(|| Account {
                account_id: account_id.into(),
                environment: Environment::Prod,
                role_arn: None,
                external_id: None,
                regions: Vec::new(),
            }))
        }

        async fn all(&self) -> Result<Vec<Account>, AwsError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn remembers_answers_for_the_ttl_then_reads_again() {
        let clock = Manual(Mutex::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        ));
        let cache = CachedRegistry::new(Counting::default(), &clock, TimeDelta::seconds(60));
        let reads = || cache.inner().0.load(Ordering::SeqCst);

        // GIVEN one registered and one unregistered account, each read once
        assert!(cache.account("222222222222").await.unwrap().is_some());
        assert!(cache.account("999999999999").await.unwrap().is_none());
        assert_eq!(reads(), 2);

        // WHEN asked again within the TTL THEN both answers come from memory
        *clock.0.lock().unwrap() += TimeDelta::seconds(59);
        assert!(cache.account("222222222222").await.unwrap().is_some());
        assert!(cache.account("999999999999").await.unwrap().is_none());
        assert_eq!(reads(), 2);

        // WHEN the TTL has passed THEN the registry is read again
        *clock.0.lock().unwrap() += TimeDelta::seconds(1);
        assert!(cache.account("222222222222").await.unwrap().is_some());
        assert_eq!(reads(), 3);
    }

    #[tokio::test]
    async fn a_zero_ttl_disables_the_cache() {
        let clock = Manual(Mutex::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        ));
        let cache = CachedRegistry::new(Counting::default(), &clock, TimeDelta::zero());
        cache.account("222222222222").await.unwrap();
        cache.account("222222222222").await.unwrap();
        assert_eq!(cache.inner().0.load(Ordering::SeqCst), 2);
    }
}
