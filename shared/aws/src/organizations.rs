//! AWS Organizations: the organisation's accounts with the OU path each sits in and its tags, for
//! onboarding (`spotctl accounts discover`). Answered by the management account or a delegated
//! administrator.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::ParentType;
use spot_domain::AwsError;
use spot_domain::onboarding::OrgAccount;

use crate::error::{classify, invalid_data};

pub struct Organization {
    client: Client,
}

/// An OU's name and where it sits.
struct Unit {
    name: String,
    parent: Option<String>,
}

impl Organization {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every account, with its OU path (names from below the root) and tags.
    pub async fn accounts(&self) -> Result<Vec<OrgAccount>, AwsError> {
        let pages: Vec<_> = self
            .client
            .list_accounts()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAccounts", e))?;
        let listed: Vec<_> = pages
            .into_iter()
            .flat_map(|p| p.accounts.unwrap_or_default())
            .collect();
        let mut units: HashMap<String, Unit> = HashMap::new();
        let mut accounts = Vec::new();
        for a in listed {
            let id = a
                .id()
                .ok_or_else(|| invalid_data("ListAccounts", "an account without an id"))?
                .to_owned();
            let mut ou_path = Vec::new();
            let mut next = self.parent_unit(&id).await?;
            while let Some(unit_id) = next {
                if !units.contains_key(&unit_id) {
                    let unit = self.unit(&unit_id).await?;
                    units.insert(unit_id.clone(), unit);
                }
                let unit = &units[&unit_id];
                ou_path.push(unit.name.clone());
                next = unit.parent.clone();
            }
            ou_path.reverse();
            accounts.push(OrgAccount {
                name: a.name().unwrap_or_default().to_owned(),
                status: a
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                ou_path,
                tags: self.tags(&id).await?,
                account_id: id,
            });
        }
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(accounts)
    }

    /// The OU `child` sits in; none when it sits in the root.
    async fn parent_unit(&self, child: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .list_parents()
            .child_id(child)
            .send()
            .await
            .map_err(|e| classify("ListParents", e))?;
        Ok(answer
            .parents()
            .first()
            .filter(|p| p.r#type() == Some(&ParentType::OrganizationalUnit))
            .and_then(|p| p.id().map(str::to_owned)))
    }

    async fn unit(&self, id: &str) -> Result<Unit, AwsError> {
        let answer = self
            .client
            .describe_organizational_unit()
            .organizational_unit_id(id)
            .send()
            .await
            .map_err(|e| classify("DescribeOrganizationalUnit", e))?;
        Ok(Unit {
            name: answer
                .organizational_unit()
                .and_then(|u| u.name())
                .unwrap_or(id)
                .to_owned(),
            parent: self.parent_unit(id).await?,
        })
    }

    async fn tags(&self, id: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let tags: Vec<_> = self
            .client
            .list_tags_for_resource()
            .resource_id(id)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListTagsForResource", e))?;
        Ok(tags
            .into_iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }
}
