//! Compensation, after any failure: find what the switch left (clone, address, stopped source,
//! image), let `spot_domain::saga::switch::undo` decide, act (each action audited and idempotent),
//! close a pending approval, record why and release the lock. The state machine retries this step
//! and then fails the execution.

use serde::Serialize;
use serde_json::json;
use spot_aws::{ApprovalsTable, AuditTable, Ec2, LedgerTable, Reach};
use spot_domain::audit::AuditEntry;
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::saga::approval::ApprovalStatus;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::step::{CaughtError, STATES_TIMEOUT, audited};
use spot_domain::saga::switch::{self, Found, SwitchInput, Undo};
use spot_domain::saga::{Outcome, StepError};
use spot_domain::tags::SWITCH_TAG;
use spot_domain::{AwsError, Clock, ErrorName, SystemClock};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
    pub audit_table: String,
    pub approvals_table: String,
    /// Keep the saga's image and snapshots (for forensics) instead of deleting them.
    pub keep_image: bool,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            approvals_table: env.required(key::APPROVALS_TABLE)?,
            keep_image: env.parsed(key::KEEP_IMAGE, false)?,
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
    /// A pending approval of a rejected or timed-out switch is closed, so no list shows it.
    pub approvals: ApprovalsTable,
    pub config: Config,
}

impl Rollback {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws().await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), &config.ledger_table),
            audit: AuditTable::new(dynamodb.clone(), &config.audit_table),
            approvals: ApprovalsTable::new(dynamodb, &config.approvals_table),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    #[instrument(name = "switch-rollback", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: SwitchInput) -> Result<RolledBack, StepError> {
        let error = input.state.error.clone().unwrap_or(CaughtError {
            error: "Unknown".into(),
            cause: String::new(),
        });
        let (outcome, name) = error.outcome();
        let request = &input.state.request;
        let switch_id = &input.execution;
        let mut undone = Vec::new();
        match self
            .reach
            .account(&request.account_id, &request.region)
            .await
        {
            Ok(account) => self.undo(&account.ec2, &input, &mut undone).await?,
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
            // `false`: an operator already answered it (spotctl marks the answer first).
            self.approvals
                .answer(switch_id, status, "switch-rollback", note)
                .await?;
        }
        let plan = input.state.plan.as_ref();
        let launch = input.state.launch.as_ref();
        let status = LedgerStatus::from(outcome);
        self.ledger
            .record(&LedgerRecord {
                switch_id: switch_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: request.instance_id.clone(),
                mode: request.mode,
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
                cause: Some(format!("{}: {}", error.error, error.cause)),
                at: SystemClock.now(),
                group: None,
            })
            .await?;
        self.ledger
            .unlock(&switch::lock_key(request), switch_id)
            .await?;
        info!(error = %error.error, undone = ?undone, "rolled back");
        Ok(RolledBack {
            error: name,
            cause: error.cause,
            status,
            undone,
        })
    }

    /// What the switch left in the account.
    async fn find(&self, ec2: &Ec2, input: &SwitchInput) -> Result<Found, AwsError> {
        let switch_id = &input.execution;
        let source = &input.state.request.instance_id;
        let clone = match &input.state.launch {
            Some(l) => Some(l.instance_id.clone()),
            None => ec2.clone_of(switch_id).await?.map(|c| c.instance_id),
        };
        let address = match input
            .state
            .plan
            .as_ref()
            .and_then(|p| p.source.elastic_ip.as_ref())
        {
            Some(ip) => Some((ip.clone(), ec2.address_holder(&ip.allocation_id).await?)),
            None => None,
        };
        let source_marked = ec2.tags(source).await?.get(SWITCH_TAG) == Some(switch_id);
        let source_state = if source_marked {
            ec2.state(source).await?
        } else {
            None
        };
        let image_id = match &input.state.image {
            Some(i) => Some(i.image_id.clone()),
            None => ec2.find_image(switch_id).await?,
        };
        let image = match image_id {
            Some(image_id) => {
                let mut snapshots = input
                    .state
                    .image
                    .as_ref()
                    .map(|i| i.snapshot_ids.clone())
                    .unwrap_or_default();
                if let Some((_, more)) = ec2.image_state(&image_id).await? {
                    snapshots.extend(more);
                }
                Some((image_id, snapshots))
            }
            None => None,
        };
        Ok(Found {
            clone,
            address,
            source_marked,
            source_state,
            image,
        })
    }

    async fn undo(
        &self,
        ec2: &Ec2,
        input: &SwitchInput,
        undone: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let source = &input.state.request.instance_id;
        let found = self.find(ec2, input).await?;
        for action in switch::undo(&found, source, self.config.keep_image) {
            match action {
                Undo::TerminateClone(clone) => {
                    self.audited(
                        input,
                        "terminate_clone",
                        &clone,
                        "the switch failed",
                        ec2.terminate(&clone),
                    )
                    .await?;
                    undone.push(format!("terminated clone {clone}"));
                }
                Undo::MoveAddressBack(ip) => {
                    ec2.move_address(&ip.allocation_id, source).await?;
                    undone.push(format!("moved {} back to {source}", ip.public_ip));
                }
                Undo::StartSource => {
                    self.audited(
                        input,
                        "start_source",
                        source,
                        "the switch failed after stopping it",
                        ec2.start(source),
                    )
                    .await?;
                    undone.push(format!("started {source} again"));
                }
                Undo::WaitForSource => {
                    // Retried by the state machine until the stop has finished.
                    return Err(StepError::new(
                        ErrorName::Transient,
                        format!("{source} is still stopping"),
                    ));
                }
                Undo::Unmark => ec2.untag(source, SWITCH_TAG).await?,
                Undo::RemoveImage {
                    image_id,
                    snapshot_ids,
                } => {
                    self.audited(
                        input,
                        "remove_image",
                        &image_id,
                        "image made by a failed switch",
                        ec2.remove_image(&image_id, &snapshot_ids),
                    )
                    .await?;
                    undone.push(format!(
                        "removed image {image_id} and {} snapshot(s)",
                        snapshot_ids.len()
                    ));
                }
                Undo::KeepImage(image_id) => {
                    undone.push(format!("kept image {image_id} (KEEP_IMAGE)"));
                }
            }
        }
        Ok(())
    }

    /// Records the intent, takes the (idempotent) action, records the outcome.
    async fn audited(
        &self,
        input: &SwitchInput,
        action: &str,
        resource: &str,
        reason: &str,
        act: impl std::future::Future<Output = Result<(), AwsError>>,
    ) -> Result<(), StepError> {
        let request = &input.state.request;
        let entry = AuditEntry {
            action_id: format!("switch-rollback#{}#{action}#{resource}", input.execution),
            function: "switch-rollback".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "{reason}: {}",
                input.state.error.as_ref().map_or("", |e| e.error.as_str())
            ),
            pre_state: json!({"launch": input.state.launch, "image": input.state.image})
                .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: SystemClock.now(),
        };
        audited(&self.audit, &entry, act).await
    }
}
