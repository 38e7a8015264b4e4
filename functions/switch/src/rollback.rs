//! Compensation, after any failure, in two phases the state machine loops between, so the
//! rollback never leaves less running than the saga started with:
//!
//! 1. `restore`: if this switch stopped the source (its mark is on it), start it, and report
//!    until it runs (the state machine waits between rounds). A source that never runs again ends
//!    the execution as `RollbackIncomplete` with its Spot clone still running.
//! 2. `finish`: once the source runs (or was never stopped), move the address back from this
//!    switch's clone, terminate the clone, remove the mark and the image, close a pending
//!    approval, record why and release the lock.
//!
//! Nothing the state names is acted on unless the resource carries this execution's mark: the
//! state may be the raw input the plan refused. Every action is audited and idempotent.

use serde::Serialize;
use serde_json::json;
use spot_aws::guard::SagaEnd;
use spot_aws::sns::announce;
use spot_aws::{ApprovalsTable, AuditTable, Ec2, Guardian, LedgerTable, Notifier, Reach};
use spot_domain::audit::AuditEntry;
use spot_domain::config::{self, Accounts, ConfigError, Env, Guardrails, key};
use spot_domain::governance::mode::Mode;
use spot_domain::guard::Breaker;
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::approval::ApprovalStatus;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::step::{CaughtError, STATES_TIMEOUT, audited};
use spot_domain::saga::switch::{
    self, Found, RequestIds, RestoreProgress, RollbackInput, RollbackView, SourceAction,
    SourceRestore, Undo,
};
use spot_domain::saga::{Outcome, Phase, SagaMode, StepError};
use spot_domain::tags::{CREATED_VIA, SWITCH_TAG, SWITCHED_AT_TAG, VIA_SWITCH};
use spot_domain::{AwsError, Clock, ErrorName, SystemClock, metrics};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
    pub audit_table: String,
    pub approvals_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
    /// Keep the saga's image and snapshots (for forensics) instead of deleting them.
    pub keep_image: bool,
    pub guardrails: Guardrails,
    pub breaker: Breaker,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            approvals_table: env.required(key::APPROVALS_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
            keep_image: env.parsed(key::KEEP_IMAGE, false)?,
            guardrails: Guardrails::from_env(env)?,
            breaker: config::breaker(env)?,
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

/// What the step answers: the first phase's progress, or the second's summary.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Progress(RestoreProgress),
    Done(RolledBack),
}

pub struct Rollback {
    pub reach: Reach,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    /// A pending approval of a rejected or timed-out switch is closed, so no list shows it.
    pub approvals: ApprovalsTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
    /// The circuit breaker's count of failed live switches.
    pub guard: Guardian,
    pub config: Config,
}

/// What both phases read: the execution, the state as given, and the request it names.
struct Cx<'a> {
    execution: &'a str,
    view: &'a RollbackView,
    request: &'a RequestIds,
}

impl Rollback {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Switch, "switch-rollback").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), &config.ledger_table),
            audit: AuditTable::new(dynamodb.clone(), &config.audit_table),
            approvals: ApprovalsTable::new(dynamodb, &config.approvals_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn.clone()),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "switch-rollback", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "switch-rollback", skip_all, err(level = tracing::Level::WARN),
        fields(saga_id = %input.execution, phase = ?input.phase, account = tracing::field::Empty,
            region = tracing::field::Empty, target = tracing::field::Empty))]
    pub async fn handle(&self, input: RollbackInput) -> Result<Answer, StepError> {
        let view = RollbackView::read(&input.state);
        let Some(request) = &view.request else {
            // No request to read: the plan refused the input before anything was done anywhere.
            return match input.phase {
                Some(Phase::Finish) => Ok(Answer::Done(
                    self.close(&input, &view, None, Vec::new()).await?,
                )),
                _ => Ok(Answer::Progress(RestoreProgress {
                    source: SourceRestore::Untouched,
                    checks: 0,
                    wait_seconds: 1,
                })),
            };
        };
        let span = tracing::Span::current();
        span.record("account", request.account_id.as_str());
        span.record("region", request.region.as_str());
        span.record("target", request.instance_id.as_str());
        let cx = Cx {
            execution: &input.execution,
            view: &view,
            request,
        };
        let ec2 = match self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await
        {
            Ok(account) => Some(account.ec2),
            // A request that could not reach its account changed nothing there.
            Err(e) if CaughtError::before_reaching_the_account(e.name) => None,
            Err(e) => return Err(e),
        };
        match (input.phase, ec2) {
            (Some(Phase::Finish), Some(ec2)) => {
                let undone = self.finish(&ec2, &cx).await?;
                Ok(Answer::Done(
                    self.close(&input, &view, Some(request), undone).await?,
                ))
            }
            (Some(Phase::Finish), None) => Ok(Answer::Done(
                self.close(&input, &view, Some(request), Vec::new()).await?,
            )),
            (None | Some(Phase::Restore), Some(ec2)) => {
                Ok(Answer::Progress(self.restore(&ec2, &cx).await?))
            }
            (None | Some(Phase::Restore), None) => Ok(Answer::Progress(RestoreProgress {
                source: SourceRestore::Untouched,
                checks: 0,
                wait_seconds: 1,
            })),
            (Some(other), _) => Err(StepError::invalid(format!(
                "phase {other:?} is neither restore nor finish"
            ))),
        }
    }

    /// Phase 1: the source this switch stopped runs again.
    async fn restore(&self, ec2: &Ec2, cx: &Cx<'_>) -> Result<RestoreProgress, StepError> {
        let source = &cx.request.instance_id;
        let found = self.find(ec2, cx).await?;
        let checks = cx.view.progress.map_or(0, |p| p.checks) + 1;
        let settings = cx
            .view
            .plan
            .as_ref()
            .map(|p| p.settings)
            .unwrap_or_default();
        let state = match switch::source_action(&found) {
            SourceAction::Report(state) => state,
            SourceAction::Wait => SourceRestore::Starting,
            SourceAction::Start => {
                let started = self
                    .audited(
                        cx,
                        "start_source",
                        source,
                        "the switch failed after stopping it",
                        ec2.start(source),
                    )
                    .await;
                match started {
                    Ok(()) => {}
                    // EC2 could not start it now (capacity): try again next round.
                    Err(e) if e.name == ErrorName::AwsError || e.name == ErrorName::Transient => {
                        warn!(error = %e, "source not started this round");
                    }
                    Err(e) => return Err(e),
                }
                SourceRestore::Starting
            }
        };
        match switch::restore_verdict(state, checks, settings.health_checks, source) {
            Ok(source) => Ok(RestoreProgress {
                source,
                checks,
                wait_seconds: settings.wait_seconds,
            }),
            Err(e) => {
                self.record(cx, LedgerStatus::RollbackIncomplete, &e.message)
                    .await?;
                announce(
                    &self.notices,
                    &[Notice::saga(
                        Kind::Switch,
                        Event::RollbackIncomplete,
                        cx.execution,
                        &cx.request.account_id,
                        &cx.request.region,
                        source,
                        SagaMode::Live.as_str(),
                        &[
                            format!("why: {}", e.message),
                            "the Spot clone is kept running; start the source by hand, then terminate the clone".to_owned(),
                        ],
                    )],
                )
                .await;
                println!(
                    "{}",
                    metrics::count(
                        metrics::name::ROLLBACK_INCOMPLETE,
                        1,
                        &[("Saga", "AtomicSwitch")],
                        &[
                            ("switch_id", json!(cx.execution)),
                            ("source", json!(source))
                        ],
                        SystemClock.now(),
                    )
                );
                Err(e)
            }
        }
    }

    /// Phase 2: what the switch made goes, now that the source runs.
    async fn finish(&self, ec2: &Ec2, cx: &Cx<'_>) -> Result<Vec<String>, StepError> {
        let source = &cx.request.instance_id;
        let found = self.find(ec2, cx).await?;
        let mut undone = Vec::new();
        for action in switch::finish(&found, self.config.keep_image)? {
            match action {
                Undo::MoveAddressBack(ip) => {
                    ec2.move_address(&ip.allocation_id, source).await?;
                    undone.push(format!("moved {} back to {source}", ip.public_ip));
                }
                Undo::TerminateClone(clone) => {
                    self.audited(
                        cx,
                        "terminate_clone",
                        &clone,
                        "the switch failed",
                        ec2.terminate(&clone),
                    )
                    .await?;
                    undone.push(format!("terminated clone {clone}"));
                }
                Undo::Unmark => {
                    ec2.untag_all(source, &[SWITCH_TAG, SWITCHED_AT_TAG])
                        .await?;
                    if found.source_state.as_deref() == Some("running") {
                        undone.push(format!("{source} runs again"));
                    }
                }
                Undo::RemoveImage {
                    image_id,
                    snapshot_ids,
                } => {
                    let resource = image_id.clone().unwrap_or_else(|| "snapshots".into());
                    self.audited(
                        cx,
                        "remove_image",
                        &resource,
                        "image made by a failed switch",
                        ec2.remove_image(image_id.as_deref(), &snapshot_ids),
                    )
                    .await?;
                    undone.push(format!(
                        "removed image {resource} and {} snapshot(s)",
                        snapshot_ids.len()
                    ));
                }
                Undo::KeepImage(image_id) => {
                    undone.push(format!("kept image {image_id} (KEEP_IMAGE)"));
                }
            }
        }
        Ok(undone)
    }

    /// The end of every rollback: the approval closed, the ledger, the lock released.
    async fn close(
        &self,
        input: &RollbackInput,
        view: &RollbackView,
        request: Option<&RequestIds>,
        undone: Vec<String>,
    ) -> Result<RolledBack, StepError> {
        let error = view.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (outcome, name) = error.outcome();
        let switch_id = &input.execution;
        if outcome == Outcome::Rejected {
            let (status, note) = if error.error == STATES_TIMEOUT {
                (
                    ApprovalStatus::Expired,
                    "no answer before the approval timeout",
                )
            } else {
                (ApprovalStatus::Rejected, error.cause.as_str())
            };
            // `false`: an operator already answered it (spotctl marks the answer first).
            self.approvals
                .answer(switch_id, status, "switch-rollback", note)
                .await?;
        }
        let status = LedgerStatus::from(outcome);
        if let Some(request) = request {
            let cx = Cx {
                execution: switch_id,
                view,
                request,
            };
            self.record(&cx, status, &format!("{}: {}", error.error, error.cause))
                .await?;
            // A live switch undone: its owner hears why and what was put back.
            if status == LedgerStatus::RolledBack && request.mode == Some(SagaMode::Live) {
                println!(
                    "{}",
                    metrics::count(
                        metrics::name::SAGA_ROLLED_BACK,
                        1,
                        &[("Saga", "AtomicSwitch")],
                        &[
                            ("switch_id", json!(switch_id)),
                            ("error", json!(error.error))
                        ],
                        SystemClock.now(),
                    )
                );
                let mut lines = vec![format!("why: {}: {}", error.error, error.cause)];
                lines.extend(undone.iter().cloned());
                announce(
                    &self.notices,
                    &[Notice::saga(
                        Kind::Switch,
                        Event::RolledBack,
                        switch_id,
                        &request.account_id,
                        &request.region,
                        &request.instance_id,
                        SagaMode::Live.as_str(),
                        &lines,
                    )],
                )
                .await;
                if Breaker::counts(status, Some(name)) {
                    let end = SagaEnd {
                        kind: Kind::Switch,
                        saga_id: switch_id,
                        account: &request.account_id,
                        region: &request.region,
                    };
                    end.failed(
                        &self.guard,
                        self.config.breaker,
                        &self.notices,
                        name.as_str(),
                        SystemClock.now(),
                    )
                    .await?;
                }
            }
            // Only this execution's lock is released (the write is conditional on the owner).
            self.ledger
                .unlock(
                    &switch::lock_key_of(
                        &request.account_id,
                        &request.region,
                        &request.instance_id,
                    ),
                    switch_id,
                )
                .await?;
        }
        info!(error = %error.error, undone = ?undone, "rolled back");
        Ok(RolledBack {
            error: name,
            cause: error.cause,
            status,
            undone,
        })
    }

    async fn record(
        &self,
        cx: &Cx<'_>,
        status: LedgerStatus,
        cause: &str,
    ) -> Result<(), StepError> {
        let plan = cx.view.plan.as_ref();
        let launch = cx.view.launch.as_ref();
        let request = cx.request;
        self.ledger
            .record(&LedgerRecord {
                switch_id: cx.execution.to_owned(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: request.instance_id.clone(),
                mode: request.mode.unwrap_or(SagaMode::Shadow),
                status,
                new_instance_id: launch.map(|l| l.instance_id.clone()),
                pool: launch
                    .map(|l| l.pool.clone())
                    .or_else(|| plan.and_then(|p| p.candidates.first().map(|c| c.pool.clone()))),
                instance_type: launch.map(|l| l.instance_type.clone()),
                on_demand_price: plan.map(|p| p.on_demand_price),
                spot_price: launch.map(|l| l.spot_price),
                saving_per_hour: None,
                risk: plan.map(|p| p.risk),
                cause: Some(cause.to_owned()),
                at: SystemClock.now(),
                group: None,
                downtime_ms: None,
            })
            .await?;
        Ok(())
    }

    /// What this switch left in the account, each resource checked to carry its mark: nothing
    /// the state names is acted on unless the resource itself says it is this switch's.
    async fn find(&self, ec2: &Ec2, cx: &Cx<'_>) -> Result<Found, AwsError> {
        let switch_id = cx.execution;
        let source = &cx.request.instance_id;
        let mut clones: Vec<String> = ec2
            .clones_of(switch_id)
            .await?
            .into_iter()
            .map(|c| c.instance_id)
            .collect();
        if let Some(launch) = &cx.view.launch
            && !clones.contains(&launch.instance_id)
        {
            // A clone the tag filter does not show yet (or a forged id): checked on the instance.
            let tags = ec2.tags(&launch.instance_id).await?;
            if tags.get(SWITCH_TAG).map(String::as_str) == Some(switch_id)
                && tags.get(CREATED_VIA).map(String::as_str) == Some(VIA_SWITCH)
            {
                clones.push(launch.instance_id.clone());
            }
        }
        let address = match cx
            .view
            .plan
            .as_ref()
            .and_then(|p| p.source.elastic_ip.as_ref())
        {
            Some(ip) => Some((ip.clone(), ec2.address_holder(&ip.allocation_id).await?)),
            None => None,
        };
        let source_marked =
            ec2.tags(source).await?.get(SWITCH_TAG).map(String::as_str) == Some(switch_id);
        let source_state = if source_marked {
            ec2.state(source).await?
        } else {
            None
        };
        let (image, mut snapshots) = match ec2.marked_image(switch_id).await? {
            Some((image, snapshots)) => (Some(image), snapshots),
            None => (None, Vec::new()),
        };
        snapshots.extend(ec2.marked_snapshots(switch_id).await?);
        Ok(Found {
            clones,
            address,
            source_marked,
            source_state,
            image,
            snapshots,
        })
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        cx: &Cx<'_>,
        action: &str,
        resource: &str,
        reason: &str,
        act: impl std::future::Future<Output = Result<(), AwsError>>,
    ) -> Result<(), StepError> {
        let request = cx.request;
        let entry = AuditEntry {
            action_id: format!("switch-rollback#{}#{action}#{resource}", cx.execution),
            function: "switch-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "{reason}: {}",
                cx.view.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": cx.view.launch,
                "source": cx.view.plan.as_ref().map(|p| &p.source.instance_id)})
            .to_string(),
            mode: Mode::Live,
            request_id: cx.execution.to_owned(),
            at: SystemClock.now(),
        };
        audited(&self.audit, &entry, act).await
    }
}
