//! Onboarding from AWS Organizations (`spotctl accounts discover`): which accounts of the
//! organisation to register, in which environment (from the operator's OU and tag mapping), and
//! with which member role (the member stack's role name, the same in every account).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::account::{Account, Environment};

/// An account as the organisation lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub account_id: String,
    pub name: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`.
    pub status: String,
    /// The names of the OUs it sits in, from below the root down (empty: directly in the root).
    pub ou_path: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl OrgAccount {
    /// `Workloads/Sandbox`, or `/` for the root.
    pub fn path(&self) -> String {
        if self.ou_path.is_empty() {
            "/".into()
        } else {
            self.ou_path.join("/")
        }
    }
}

/// One line of the operator's mapping: `ou:<name or path>=ENV` or `tag:<key>=<value>=ENV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Accounts in this OU or below it: a path from the root (`Workloads/Sandbox`) or one OU's
    /// name anywhere in the path (`Sandbox`).
    Ou { ou: String, env: Environment },
    Tag {
        key: String,
        value: String,
        env: Environment,
    },
}

impl Rule {
    fn env(&self) -> Environment {
        match self {
            Self::Ou { env, .. } | Self::Tag { env, .. } => *env,
        }
    }

    fn matches(&self, account: &OrgAccount) -> bool {
        match self {
            Self::Ou { ou, .. } if ou.contains('/') => {
                let path = account.ou_path.join("/");
                path == *ou || path.starts_with(&format!("{ou}/"))
            }
            Self::Ou { ou, .. } => account.ou_path.iter().any(|n| n == ou),
            Self::Tag { key, value, .. } => account.tags.get(key) == Some(value),
        }
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is neither ou:<name or path>=ENV nor tag:<key>=<value>=ENV");
        let (what, env) = s.rsplit_once('=').ok_or_else(bad)?;
        let env: Environment = env.parse().map_err(|e| format!("`{s}`: {e}"))?;
        match what.split_once(':') {
            Some(("ou", ou)) if !ou.trim_matches('/').is_empty() => Ok(Self::Ou {
                ou: ou.trim_matches('/').to_owned(),
                env,
            }),
            Some(("tag", kv)) => match kv.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok(Self::Tag {
                    key: key.into(),
                    value: value.into(),
                    env,
                }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ou { ou, env } => write!(f, "ou:{ou}={env}"),
            Self::Tag { key, value, env } => write!(f, "tag:{key}={value}={env}"),
        }
    }
}

/// How discovered accounts are registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onboarding {
    pub rules: Vec<Rule>,
    /// The environment of an account no rule matches.
    pub default: Environment,
    /// The member stack's role name (`MemberRoleName`).
    pub role_name: String,
    /// The member stacks' ExternalId.
    pub external_id: Option<String>,
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
}

/// What discovery does with one account of the organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Register {
        account: Account,
        /// The rule that chose its environment; none: the default.
        by: Option<Rule>,
    },
    /// Already in the accounts table: left as it is.
    Registered,
    Skip(String),
}

impl Onboarding {
    pub fn decide(&self, account: &OrgAccount, registered: bool) -> Decision {
        if account.status != "ACTIVE" {
            return Decision::Skip(format!("{} in the organisation", account.status));
        }
        if registered {
            return Decision::Registered;
        }
        let by = self.rules.iter().find(|r| r.matches(account)).cloned();
        Decision::Register {
            account: Account {
                account_id: account.account_id.clone(),
                environment: by.as_ref().map_or(self.default, Rule::env),
                role_arn: Some(format!(
                    "arn:{}:iam::{}:role/{}",
                    self.partition, account.account_id, self.role_name
                )),
                external_id: self.external_id.clone(),
                regions: Vec::new(),
            },
            by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, path: &[&str], tags: &[(&str, &str)], status: &str) -> OrgAccount {
        OrgAccount {
            account_id: id.into(),
            name: format!("acct-{id}"),
            status: status.into(),
            ou_path: path.iter().map(|p| (*p).to_owned()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn onboarding(rules: &[&str]) -> Onboarding {
        Onboarding {
            rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
            default: Environment::Prod,
            role_name: "SpotOptimizerMember".into(),
            external_id: Some("ext".into()),
            partition: "aws".into(),
        }
    }

    fn env(d: &Decision) -> Option<Environment> {
        match d {
            Decision::Register { account, .. } => Some(account.environment),
            _ => None,
        }
    }

    #[test]
    fn the_first_matching_rule_chooses_the_environment_else_the_default() {
        let o = onboarding(&[
            "tag:env=prod=PROD",
            "ou:Sandbox=LAB",
            "ou:Workloads/Test=LAB",
        ]);
        let sandbox = account("111111111111", &["Workloads", "Sandbox"], &[], "ACTIVE");
        assert_eq!(env(&o.decide(&sandbox, false)), Some(Environment::Lab));
        let tagged = account("222222222222", &["Sandbox"], &[("env", "prod")], "ACTIVE");
        assert_eq!(
            env(&o.decide(&tagged, false)),
            Some(Environment::Prod),
            "rules apply in order"
        );
        let below = account(
            "333333333333",
            &["Workloads", "Test", "Team1"],
            &[],
            "ACTIVE",
        );
        assert_eq!(env(&o.decide(&below, false)), Some(Environment::Lab));
        let other = account("444444444444", &["Workloads", "Testing"], &[], "ACTIVE");
        assert_eq!(env(&o.decide(&other, false)), Some(Environment::Prod));
        let Decision::Register { account: a, by } = o.decide(&other, false) else {
            panic!()
        };
        assert_eq!(by, None);
        assert_eq!(
            a.role_arn.as_deref(),
            Some("arn:aws:iam::444444444444:role/SpotOptimizerMember")
        );
        assert_eq!(a.external_id.as_deref(), Some("ext"));
    }

    #[test]
    fn registered_and_inactive_accounts_are_left_alone() {
        let o = onboarding(&[]);
        let a = account("111111111111", &[], &[], "ACTIVE");
        assert_eq!(o.decide(&a, true), Decision::Registered);
        let s = account("111111111111", &[], &[], "SUSPENDED");
        assert!(matches!(o.decide(&s, false), Decision::Skip(_)));
        assert_eq!(a.path(), "/");
    }

    #[test]
    fn rules_parse_and_bad_ones_say_why() {
        assert_eq!(
            "tag:team=data=lab".parse::<Rule>(),
            Ok(Rule::Tag {
                key: "team".into(),
                value: "data".into(),
                env: Environment::Lab
            })
        );
        assert_eq!(
            "ou:/Workloads/Sandbox/=LAB"
                .parse::<Rule>()
                .unwrap()
                .to_string(),
            "ou:Workloads/Sandbox=LAB"
        );
        for bad in [
            "ou:=LAB",
            "tag:=x=LAB",
            "ou:Sandbox",
            "ou:Sandbox=STAGING",
            "x:y=LAB",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }
}
