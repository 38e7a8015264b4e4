//! How a saga step or the router reaches an account and region: the accounts table (cached), the
//! home account, and the clients of one account and region, each an adapter of its own service.

use std::sync::Arc;

use spot_domain::config::Accounts;
use spot_domain::saga::StepError;
use spot_domain::saga::step::access_for;
use spot_domain::saga::swap::Group;
use spot_domain::{AccountView, AwsError, CachedRegistry, SystemClock};

use crate::autoscaling::AutoScaling;
use crate::clients::AwsContext;
use crate::dynamodb::AccountsTable;
use crate::ec2::Ec2;
use crate::elbv2::LoadBalancing;

/// The accounts a function may act in, and how it reaches them.
pub struct Reach {
    registry: CachedRegistry<AccountsTable, SystemClock>,
    ctx: Arc<AwsContext>,
    home_account: String,
}

/// One account and region, as a step acts in it.
pub struct AccountClients {
    pub ec2: Ec2,
    pub autoscaling: AutoScaling,
    pub elb: LoadBalancing,
    pub view: AccountView,
}

impl Reach {
    /// The accounts table of `accounts` (cached as configured) and the home account (configured,
    /// else asked of STS once).
    pub async fn connect(ctx: Arc<AwsContext>, accounts: &Accounts) -> Result<Self, AwsError> {
        let home_account = ctx.home_account(accounts.home_account_id.clone()).await?;
        let table = AccountsTable::new(aws_sdk_dynamodb::Client::new(ctx.base()), &accounts.table);
        Ok(Self {
            registry: CachedRegistry::new(table, SystemClock, accounts.cache),
            ctx,
            home_account,
        })
    }

    pub fn home_account(&self) -> &str {
        &self.home_account
    }

    pub fn registry(&self) -> &CachedRegistry<AccountsTable, SystemClock> {
        &self.registry
    }

    pub fn context(&self) -> &Arc<AwsContext> {
        &self.ctx
    }

    /// The clients of `account_id` in `region` for saga `execution` (which names the session in
    /// a member's CloudTrail), after checking the account and region are well-formed and the
    /// account may be acted on.
    pub async fn account(
        &self,
        account_id: &str,
        region: &str,
        execution: &str,
    ) -> Result<AccountClients, StepError> {
        let (access, view) =
            access_for(&self.registry, &self.home_account, account_id, region).await?;
        let config = self
            .ctx
            .config_for_execution(&access, region, execution)
            .await;
        Ok(AccountClients {
            ec2: Ec2::new(aws_sdk_ec2::Client::new(&config)),
            autoscaling: AutoScaling::new(aws_sdk_autoscaling::Client::new(&config)),
            elb: LoadBalancing::new(aws_sdk_elasticloadbalancingv2::Client::new(&config)),
            view,
        })
    }
}

impl AccountClients {
    /// The group as Auto Scaling describes it, plus what eligibility decides on (see
    /// [`inspect_group`]).
    pub async fn inspect_group(&self, name: &str) -> Result<Option<Group>, AwsError> {
        inspect_group(&self.autoscaling, &self.ec2, name).await
    }
}

/// The group as Auto Scaling describes it, plus what eligibility decides on: each member's market
/// and exemption (EC2) and the launch lifecycle hooks.
pub async fn inspect_group(
    autoscaling: &AutoScaling,
    ec2: &Ec2,
    name: &str,
) -> Result<Option<Group>, AwsError> {
    {
        let Some(mut group) = autoscaling.group(name).await? else {
            return Ok(None);
        };
        let ids: Vec<String> = group
            .members
            .iter()
            .map(|m| m.instance_id.clone())
            .collect();
        let (hooks, markets) =
            futures::try_join!(autoscaling.launch_hooks(name), ec2.markets(ids))?;
        group.launch_hooks = hooks;
        for m in &mut group.members {
            if let Some((_, spot, exempt)) = markets.iter().find(|(id, _, _)| *id == m.instance_id)
            {
                m.spot = *spot;
                m.exempt = *exempt;
            }
        }
        Ok(Some(group))
    }
}
