//! Compensation of the ASG swap, in two phases; the second runs whatever became of the first:
//!
//! 1. `restore`, member by member, from what the group shows now and the instances carrying this
//!    swap's mark (never from the state, which may be the raw input the discovery refused), with
//!    `spot_domain::saga::swap::member_undo`:
//!
//!    | replacement | predecessor | what the rollback does |
//!    |---|---|---|
//!    | none | in the group | nothing |
//!    | none (gone) | detached | attaches the predecessor back if it runs |
//!    | not in the group | (any) | terminates the replacement |
//!    | in the group | still in the group | detaches the replacement with decrement (N+1 → N), terminates it |
//!    | InService | detached | that member's swap is done: terminates the detached predecessor |
//!    | not InService | detached | attaches the predecessor back, then removes the replacement |
//!
//! 2. `finish`: MaxSize and `AZRebalance` back as the swap's mark on the group recorded them
//!    (nothing on a group without it; an owner's change during the swap stays), the marks
//!    removed, a pending approval closed, the group's lock released, the outcome recorded. When
//!    the first phase failed for good, the execution fails `RollbackIncomplete` (alarmed).
//!
//! The predecessor is never terminated unless its replacement is InService. Every action is
//! audited and idempotent.

use serde::Serialize;
use serde_json::json;
use spot_aws::guard::SagaEnd;
use spot_aws::sns::announce;
use spot_aws::{AccountClients, ApprovalsTable, AuditTable, LedgerTable, Notifier, Reach};
use spot_domain::audit::AuditEntry;
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::guard::Breaker;
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::approval::ApprovalStatus;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::step::{CaughtError, STATES_TIMEOUT, audited};
use spot_domain::saga::swap::{
    self, GroupIds, Marked, MemberUndo, SwapRollbackInput, SwapRollbackView,
};
use spot_domain::saga::{Outcome, Phase, SagaMode, StepError};
use spot_domain::tags::{CREATED_VIA, SOURCE_TAG, SWAP_TAG, VIA_SWAP};
use spot_domain::{AwsError, Clock, ErrorName, SystemClock, metrics};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub breaker: spot_domain::guard::Breaker,
    pub ledger_table: String,
    pub audit_table: String,
    pub approvals_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            breaker: spot_domain::config::breaker(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            approvals_table: env.required(key::APPROVALS_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
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

/// The first phase's answer.
#[derive(Debug, Serialize)]
pub struct MembersRestored {
    pub undone: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Members(MembersRestored),
    Done(RolledBack),
}

pub struct Rollback {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub breaker: Breaker,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    pub approvals: ApprovalsTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
}

/// What every part of one rollback reads: the execution and what the state says.
struct Cx<'a> {
    execution: &'a str,
    view: &'a SwapRollbackView,
    request: &'a GroupIds,
}

impl Rollback {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-rollback").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), config.ledger_table),
            audit: AuditTable::new(dynamodb.clone(), config.audit_table),
            approvals: ApprovalsTable::new(dynamodb, config.approvals_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-rollback", None),
            breaker: config.breaker,
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-rollback", skip_all, err(level = tracing::Level::WARN),
        fields(saga_id = %input.execution, phase = ?input.phase, account = tracing::field::Empty,
            region = tracing::field::Empty, target = tracing::field::Empty))]
    pub async fn handle(&self, input: SwapRollbackInput) -> Result<Answer, StepError> {
        let view = SwapRollbackView::read(&input.state);
        let finishing = match input.phase {
            None | Some(Phase::Restore) => false,
            Some(Phase::Finish) => true,
            Some(other) => {
                return Err(StepError::invalid(format!(
                    "phase {other:?} is neither restore nor finish"
                )));
            }
        };
        let Some(request) = &view.request else {
            // No request to read: the discovery refused the input before anything was done.
            return Ok(if finishing {
                Answer::Done(self.close(&input, &view, None, Vec::new()).await?)
            } else {
                Answer::Members(MembersRestored { undone: Vec::new() })
            });
        };
        let span = tracing::Span::current();
        span.record("account", request.account_id.as_str());
        span.record("region", request.region.as_str());
        span.record("target", request.asg_name.as_str());
        let cx = Cx {
            execution: &input.execution,
            view: &view,
            request,
        };
        let account = match self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await
        {
            Ok(account) => Some(account),
            // A request that could not reach its account changed nothing there.
            Err(e) if CaughtError::before_reaching_the_account(e.name) => None,
            Err(e) => return Err(e),
        };
        let mut undone = Vec::new();
        if let Some(account) = &account {
            if finishing {
                undone.extend(
                    crate::restore_group(account, &request.asg_name, &input.execution).await?,
                );
            } else {
                self.members(account, &cx, &mut undone).await?;
            }
        }
        if finishing {
            Ok(Answer::Done(
                self.close(&input, &view, Some(request), undone).await?,
            ))
        } else {
            Ok(Answer::Members(MembersRestored { undone }))
        }
    }

    /// Phase 1: every member the swap touched, found by its mark, put back or finished.
    async fn members(
        &self,
        account: &AccountClients,
        cx: &Cx<'_>,
        undone: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let name = &cx.request.asg_name;
        let marked: Vec<Marked> = account
            .ec2
            .marked(SWAP_TAG, cx.execution)
            .await?
            .into_iter()
            .map(|(instance_id, tags, state)| Marked {
                replaces: (tags.get(CREATED_VIA).map(String::as_str) == Some(VIA_SWAP))
                    .then(|| tags.get(SOURCE_TAG).cloned())
                    .flatten(),
                running: state == "running",
                instance_id,
            })
            .collect();
        for pair in swap::members_touched(&marked) {
            let old = &pair.old;
            let group = account.autoscaling.group(name).await?;
            let (what, status) = match swap::member_undo(&pair, group.as_ref()) {
                MemberUndo::Nothing => continue,
                MemberUndo::TerminateReplacement => {
                    let new = pair.new.as_deref().unwrap_or_default();
                    self.audited(cx, "terminate_replacement", new, account.ec2.terminate(new))
                        .await?;
                    (
                        format!("terminated {new} (never in the group)"),
                        LedgerStatus::RolledBack,
                    )
                }
                MemberUndo::DetachAndTerminateReplacement => {
                    let new = pair.new.as_deref().unwrap_or_default();
                    let targets = group
                        .as_ref()
                        .map(|g| g.target_groups.clone())
                        .unwrap_or_default();
                    self.audited(cx, "detach_replacement", new, async {
                        account.autoscaling.detach(name, &[new.to_owned()]).await?;
                        account.elb.deregister(&targets, new).await
                    })
                    .await?;
                    self.audited(cx, "terminate_replacement", new, account.ec2.terminate(new))
                        .await?;
                    (
                        format!("detached {new} with decrement and terminated it; {old} stays"),
                        LedgerStatus::RolledBack,
                    )
                }
                MemberUndo::KeepReplacement => {
                    let new = pair.new.as_deref().unwrap_or_default();
                    self.audited(cx, "terminate_replaced", old, account.ec2.terminate(old))
                        .await?;
                    account.ec2.untag(new, SWAP_TAG).await?;
                    (
                        format!("kept {new} in service; terminated the detached {old}"),
                        LedgerStatus::Switched,
                    )
                }
                MemberUndo::RestorePredecessor { reattach } => {
                    if reattach {
                        self.audited(
                            cx,
                            "reattach_replaced",
                            old,
                            account.autoscaling.attach(name, std::slice::from_ref(old)),
                        )
                        .await?;
                        account.ec2.untag(old, SWAP_TAG).await?;
                        undone.push(format!("attached {old} back"));
                    } else {
                        warn!(old = %old, "a detached predecessor no longer runs: not put back");
                        undone.push(format!("{old} was detached and no longer runs"));
                    }
                    if let Some(new) = pair.new.as_deref() {
                        if group.as_ref().is_some_and(|g| g.member(new).is_some()) {
                            self.audited(
                                cx,
                                "detach_replacement",
                                new,
                                account.autoscaling.detach(name, &[new.to_owned()]),
                            )
                            .await?;
                        }
                        self.audited(cx, "terminate_replacement", new, account.ec2.terminate(new))
                            .await?;
                        (
                            format!("removed {new}, which never became InService"),
                            LedgerStatus::RolledBack,
                        )
                    } else {
                        (
                            format!("{old}'s replacement was gone"),
                            LedgerStatus::RolledBack,
                        )
                    }
                }
            };
            undone.push(what);
            self.record(cx, old, pair.new.as_ref(), status).await?;
        }
        Ok(())
    }

    /// The end of every rollback: the approval closed, the lock released, the outcome named.
    async fn close(
        &self,
        input: &SwapRollbackInput,
        view: &SwapRollbackView,
        request: Option<&GroupIds>,
        undone: Vec<String>,
    ) -> Result<RolledBack, StepError> {
        let error = view.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (mut outcome, mut name) = error.outcome();
        let mut cause = error.cause.clone();
        if let Some(failure) = &view.failure {
            // The first phase gave up: some member may be left as it was, say so loudly.
            outcome = Outcome::RolledBack;
            name = ErrorName::RollbackIncomplete;
            cause = format!(
                "putting members back failed ({}: {}) after {}: {}",
                failure.error, failure.cause, error.error, error.cause
            );
            println!(
                "{}",
                metrics::count(
                    metrics::name::ROLLBACK_INCOMPLETE,
                    1,
                    &[("Saga", "AsgSwap")],
                    &[("swap_id", json!(input.execution))],
                    SystemClock.now(),
                )
            );
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
        if let Some(request) = request {
            self.ledger
                .unlock(
                    &swap::lock_key_of(&request.account_id, &request.region, &request.asg_name),
                    &input.execution,
                )
                .await?;
        }
        if let Some(request) = request.filter(|r| r.mode == Some(SagaMode::Live))
            && outcome == Outcome::RolledBack
        {
            println!(
                "{}",
                metrics::count(
                    metrics::name::SAGA_ROLLED_BACK,
                    1,
                    &[("Saga", "AsgSwap")],
                    &[
                        ("swap_id", json!(input.execution)),
                        ("error", json!(error.error))
                    ],
                    SystemClock.now(),
                )
            );
            let event = if name == ErrorName::RollbackIncomplete {
                Event::RollbackIncomplete
            } else {
                Event::RolledBack
            };
            let mut lines = vec![format!("why: {cause}")];
            lines.extend(undone.iter().cloned());
            announce(
                &self.notices,
                &[Notice::saga(
                    Kind::Swap,
                    event,
                    &input.execution,
                    &request.account_id,
                    &request.region,
                    &format!("asg/{}", request.asg_name),
                    SagaMode::Live.as_str(),
                    &lines,
                )],
            )
            .await;
            let status = if name == ErrorName::RollbackIncomplete {
                LedgerStatus::RollbackIncomplete
            } else {
                LedgerStatus::RolledBack
            };
            if Breaker::counts(status, Some(name)) {
                let end = SagaEnd {
                    kind: Kind::Swap,
                    saga_id: &input.execution,
                    account: &request.account_id,
                    region: &request.region,
                };
                end.failed(
                    &self.guard,
                    self.breaker,
                    &self.notices,
                    name.as_str(),
                    SystemClock.now(),
                )
                .await?;
            }
        }
        info!(error = %error.error, undone = ?undone, "swap rolled back");
        Ok(RolledBack {
            error: name,
            cause,
            status: LedgerStatus::from(outcome),
            undone,
        })
    }

    async fn record(
        &self,
        cx: &Cx<'_>,
        old: &str,
        new: Option<&String>,
        status: LedgerStatus,
    ) -> Result<(), StepError> {
        let request = cx.request;
        let replacement = cx
            .view
            .launch
            .as_ref()
            .and_then(|l| l.replacements.iter().find(|r| r.old == old));
        self.ledger
            .record(&LedgerRecord {
                switch_id: swap::record_id(cx.execution, old),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: old.into(),
                mode: request.mode.unwrap_or(SagaMode::Shadow),
                status,
                new_instance_id: new.cloned(),
                pool: replacement.map(|r| r.pool.clone()),
                instance_type: replacement.map(|r| r.instance_type.clone()),
                on_demand_price: replacement.map(|r| r.on_demand_price),
                spot_price: replacement.map(|r| r.spot_price),
                saving_per_hour: (status == LedgerStatus::Switched)
                    .then(|| replacement.map(|r| r.saving_per_hour))
                    .flatten(),
                risk: cx.view.plan.as_ref().map(|p| p.risk),
                cause: cx
                    .view
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.error, e.cause)),
                at: SystemClock.now(),
                group: Some(request.asg_name.clone()),
                downtime_ms: None,
            })
            .await?;
        Ok(())
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        cx: &Cx<'_>,
        action: &str,
        resource: &str,
        act: impl std::future::Future<Output = Result<(), AwsError>>,
    ) -> Result<(), StepError> {
        let request = cx.request;
        let entry = AuditEntry {
            action_id: format!("swap-rollback#{}#{action}#{resource}", cx.execution),
            function: "swap-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "swap of group {} failed: {}",
                request.asg_name,
                cx.view.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": cx.view.launch, "cursor": cx.view.cursor}).to_string(),
            mode: Mode::Live,
            request_id: cx.execution.to_owned(),
            at: SystemClock.now(),
        };
        audited(&self.audit, &entry, act).await
    }
}
