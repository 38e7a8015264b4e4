//! Compensation of the ASG swap, after any failure. It decides from what it sees in the group (a
//! crashed step may have left more, or less, than the state says), member by member of the plan,
//! with `spot_domain::saga::swap::member_undo`:
//!
//! | replacement | predecessor | what the rollback does |
//! |---|---|---|
//! | not in the group | (any) | terminates the replacement |
//! | in the group | still in the group | detaches the replacement with decrement (N+1 → N), terminates it |
//! | InService | already left | that member's swap is done: terminates the leftover predecessor |
//! | not InService | already left | attaches the predecessor back, then removes the replacement |
//!
//! Then MaxSize and `AZRebalance` go back as the owner had them, a pending approval is closed, the
//! group's lock is released, and the failure is recorded. The predecessor is never terminated
//! unless its replacement is InService. Every action is idempotent; the state machine retries this
//! step and then fails the execution.

use serde::Serialize;
use serde_json::json;
use spot_aws::{AccountClients, ApprovalsTable, AuditTable, LedgerTable, Reach};
use spot_domain::audit::AuditEntry;
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::saga::approval::ApprovalStatus;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::step::{CaughtError, STATES_TIMEOUT, audited};
use spot_domain::saga::swap::{self, Group, MemberUndo, SwapInput};
use spot_domain::saga::{Outcome, StepError};
use spot_domain::{AwsError, Clock, ErrorName, SystemClock};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
    pub audit_table: String,
    pub approvals_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            approvals_table: env.required(key::APPROVALS_TABLE)?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct RolledBack {
    /// The failure, as the execution's error (never a reserved `States.` name).
    pub error: ErrorName,
    pub cause: String,
    pub status: LedgerStatus,
    pub undone: Vec<String>,
}

pub struct Rollback {
    pub reach: Reach,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    pub approvals: ApprovalsTable,
}

impl Rollback {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws().await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), config.ledger_table),
            audit: AuditTable::new(dynamodb.clone(), config.audit_table),
            approvals: ApprovalsTable::new(dynamodb, config.approvals_table),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-rollback", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<RolledBack, StepError> {
        let error = input.state.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (outcome, name) = error.outcome();
        let request = &input.state.request;
        let mut undone = Vec::new();
        match self
            .reach
            .account(&request.account_id, &request.region)
            .await
        {
            Ok(account) => self.undo(&account, &input, &mut undone).await?,
            // A request that could not reach its account changed nothing there.
            Err(e) if CaughtError::before_reaching_the_account(e.name) => {}
            Err(e) => return Err(e),
        }
        if outcome == Outcome::Rejected {
            let (status, note) = if error.error == STATES_TIMEOUT {
                (
                    ApprovalStatus::Expired,
                    "no answer before the approval timeout",
                )
            } else {
                (ApprovalStatus::Rejected, error.cause.as_str())
            };
            self.approvals
                .answer(&input.execution, status, "swap-rollback", note)
                .await?;
        }
        self.ledger
            .unlock(&swap::lock_key(request), &input.execution)
            .await?;
        info!(error = %error.error, undone = ?undone, "swap rolled back");
        Ok(RolledBack {
            error: name,
            cause: error.cause,
            status: LedgerStatus::from(outcome),
            undone,
        })
    }

    async fn undo(
        &self,
        account: &AccountClients,
        input: &SwapInput,
        undone: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let (Some(discovered), Some(plan)) = (&input.state.discover, &input.state.plan) else {
            // Nothing was changed before the plan (discovery only reads and locks).
            return Ok(());
        };
        let name = &request.asg_name;
        // Every replacement this swap launched, wherever the saga stopped.
        let mut pairs = Vec::new();
        for m in &plan.members {
            if let Some(new) = account
                .ec2
                .replacement_of(&input.execution, &m.instance_id)
                .await?
            {
                pairs.push((m.instance_id.clone(), new.instance_id));
            }
        }
        for (old, new) in &pairs {
            let group = account.autoscaling.group(name).await?;
            let member = |id: &str| group.as_ref().and_then(|g: &Group| g.member(id).cloned());
            let (replacement, predecessor) = (member(new), member(old));
            let running = replacement.is_some()
                && predecessor.is_none()
                && account.ec2.state(old).await?.as_deref() == Some("running");
            let (what, status) =
                match swap::member_undo(replacement.as_ref(), predecessor.as_ref(), running) {
                    MemberUndo::TerminateReplacement => {
                        self.audited(
                            input,
                            "terminate_replacement",
                            new,
                            account.ec2.terminate(new),
                        )
                        .await?;
                        (
                            format!("terminated {new} (never in the group)"),
                            LedgerStatus::RolledBack,
                        )
                    }
                    MemberUndo::DetachAndTerminateReplacement => {
                        let targets = group
                            .as_ref()
                            .map(|g| g.target_groups.clone())
                            .unwrap_or_default();
                        self.audited(input, "detach_replacement", new, async {
                            account
                                .autoscaling
                                .detach(name, std::slice::from_ref(new))
                                .await?;
                            account.elb.deregister(&targets, new).await
                        })
                        .await?;
                        self.audited(
                            input,
                            "terminate_replacement",
                            new,
                            account.ec2.terminate(new),
                        )
                        .await?;
                        (
                            format!("detached {new} with decrement and terminated it; {old} stays"),
                            LedgerStatus::RolledBack,
                        )
                    }
                    MemberUndo::KeepReplacement => {
                        self.audited(input, "terminate_replaced", old, account.ec2.terminate(old))
                            .await?;
                        (
                            format!("kept {new} in service; terminated the detached {old}"),
                            LedgerStatus::Switched,
                        )
                    }
                    MemberUndo::RestorePredecessor { reattach } => {
                        if reattach {
                            self.audited(
                                input,
                                "reattach_replaced",
                                old,
                                account.autoscaling.attach(name, std::slice::from_ref(old)),
                            )
                            .await?;
                            undone.push(format!("attached {old} back"));
                        }
                        self.audited(
                            input,
                            "detach_replacement",
                            new,
                            account.autoscaling.detach(name, std::slice::from_ref(new)),
                        )
                        .await?;
                        self.audited(
                            input,
                            "terminate_replacement",
                            new,
                            account.ec2.terminate(new),
                        )
                        .await?;
                        (
                            format!("detached and terminated {new}, which never became InService"),
                            LedgerStatus::RolledBack,
                        )
                    }
                };
            undone.push(what);
            self.record(input, old, Some(new), status).await?;
        }
        undone.extend(crate::restore_group(account, &discovered.group).await?);
        Ok(())
    }

    async fn record(
        &self,
        input: &SwapInput,
        old: &str,
        new: Option<&String>,
        status: LedgerStatus,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let replacement = input
            .state
            .launch
            .as_ref()
            .and_then(|l| l.replacements.iter().find(|r| r.old == old));
        self.ledger
            .record(&LedgerRecord {
                switch_id: swap::record_id(&input.execution, old),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: old.into(),
                mode: request.mode,
                status,
                new_instance_id: new.cloned(),
                pool: replacement.map(|r| r.pool.clone()),
                instance_type: replacement.map(|r| r.instance_type.clone()),
                on_demand_price: replacement.map(|r| r.on_demand_price),
                spot_price: replacement.map(|r| r.spot_price),
                saving_per_hour: (status == LedgerStatus::Switched)
                    .then(|| replacement.map(|r| r.saving_per_hour))
                    .flatten(),
                risk: input.state.plan.as_ref().map(|p| p.risk),
                cause: input
                    .state
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.error, e.cause)),
                at: SystemClock.now(),
                group: Some(request.asg_name.clone()),
            })
            .await?;
        Ok(())
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        input: &SwapInput,
        action: &str,
        resource: &str,
        act: impl std::future::Future<Output = Result<(), AwsError>>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let entry = AuditEntry {
            action_id: format!("swap-rollback#{}#{action}#{resource}", input.execution),
            function: "swap-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "swap of group {} failed: {}",
                request.asg_name,
                input.state.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": input.state.launch, "cursor": input.state.cursor})
                .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: SystemClock.now(),
        };
        audited(&self.audit, &entry, act).await
    }
}
