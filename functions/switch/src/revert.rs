//! Revert (Lambda `switch-revert`, asked by `spotctl switch revert <switch id>`): switch a
//! completed switch back within its retention. Start the source, wait until it runs, move the
//! address back onto it, and only then terminate the clone; unmark the source (so the waste
//! scanner no longer counts it a leftover), record `REVERTED` in the ledger, tell the owner.
//!
//! Every step is checked on the resource before it acts and audited first, so a redelivered or
//! repeated request finishes what an earlier one started and repeats nothing; the source and the
//! clone must still carry this switch's marks, or nothing is done. The instance's lock is held
//! for the duration, so no saga or hibernation moves it meanwhile.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use spot_aws::sns::announce;
use spot_aws::{AuditTable, Ec2, LedgerTable, Notifier, Reach};
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::StepError;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::switch::{self, RevertRequest, Reverted};
use spot_domain::tags::{CREATED_VIA, SWITCH_TAG, SWITCHED_AT_TAG, VIA_SWITCH};
use spot_domain::{Clock, ErrorName, SystemClock};
use tracing::{info, instrument};

pub const FUNCTION: &str = "switch-revert";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
    pub audit_table: String,
    pub notice_topic_arn: Option<String>,
    /// How long after a switch it can be reverted (`SOURCE_RETENTION_DAYS`).
    pub retention: TimeDelta,
    /// Pause between checks that the started source runs (`WAIT_SECONDS`), and how many.
    pub wait: Duration,
    pub checks: u32,
    pub guardrails: spot_domain::config::Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
            retention: env.duration(
                key::SOURCE_RETENTION_DAYS,
                TimeDelta::days(spot_domain::governance::waste::DEFAULT_SOURCE_RETENTION_DAYS),
                TimeDelta::days(1),
                0,
            )?,
            wait: Duration::from_secs(env.bounded(key::WAIT_SECONDS, 15, 1, 300)?),
            checks: env.bounded(key::HEALTH_CHECKS, 40, 1, 1000)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
        })
    }
}

pub struct Revert {
    pub reach: Reach,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    pub notices: Option<Notifier>,
    /// A paused account or function reverts nothing.
    pub guard: spot_aws::Guardian,
    pub config: Config,
}

impl Revert {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Switch, FUNCTION).await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), &config.ledger_table),
            audit: AuditTable::new(dynamodb, &config.audit_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn.clone()),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, FUNCTION, None),
            reach: Reach::connect(ctx, &config.accounts).await?,
            config,
        })
    }

    /// `input`: a [`RevertRequest`]; anything else is refused and changes nothing.
    #[instrument(name = "switch-revert", skip_all, err(level = tracing::Level::WARN))]
    pub async fn handle(
        &self,
        input: serde_json::Value,
        request_id: &str,
    ) -> Result<Reverted, StepError> {
        let request: RevertRequest = serde_json::from_value(input)
            .map_err(|e| StepError::invalid(format!("not a revert request: {e}")))?;
        request.check()?;
        let id = &request.switch_id;
        let record: LedgerRecord = self
            .ledger
            .get(id)
            .await?
            .ok_or_else(|| StepError::not_eligible(format!("no switch {id} in the ledger")))?;
        let now = SystemClock.now();
        let source = record.source_instance_id.clone();
        let clone = record.new_instance_id.clone().unwrap_or_default();
        if switch::revertible(&record, now, self.config.retention)? {
            return Ok(Reverted {
                switch_id: id.clone(),
                source,
                clone,
                address: None,
                clone_terminated: true,
                already: true,
            });
        }
        self.guard.check(&record.account_id).await?;
        let ec2 = self
            .reach
            .account(&record.account_id, &record.region, id)
            .await?
            .ec2;
        // Only this switch's own source and clone, as their marks say.
        let source_tags = ec2.tags(&source).await?;
        if source_tags.get(SWITCH_TAG) != Some(id) {
            return Err(StepError::not_eligible(format!(
                "{source} no longer carries {SWITCH_TAG}={id}: it was taken back or deleted"
            )));
        }
        let clone_tags = ec2.tags(&clone).await?;
        let clone_ours = clone_tags.get(SWITCH_TAG) == Some(id)
            && clone_tags.get(CREATED_VIA).map(String::as_str) == Some(VIA_SWITCH);
        let lock = switch::lock_key_of(&record.account_id, &record.region, &source);
        let owner = format!("revert-{id}");
        if let Some(holder) = self
            .ledger
            .lock(&lock, &owner, now + TimeDelta::hours(1), now)
            .await?
        {
            return Err(StepError::new(
                ErrorName::Transient,
                format!("{source} is held by {holder}; try again when it is done"),
            ));
        }
        let audited = |action: &str, resource: &str, reason: String| AuditEntry {
            action_id: format!("{FUNCTION}#{id}#{action}"),
            function: FUNCTION.into(),
            action: action.into(),
            account: record.account_id.clone(),
            region: record.region.clone(),
            resource_id: resource.into(),
            reason,
            pre_state: json!({"source": source, "clone": clone, "by": request.by,
                "reason": request.reason})
            .to_string(),
            mode: Mode::Live,
            request_id: request_id.into(),
            at: now,
        };

        // 1. The source runs again.
        let start = audited(
            "start_source",
            &source,
            format!("revert asked by {}: {}", request.by, request.reason),
        );
        // Already running (started by hand, or by an earlier request): nothing to start or audit.
        if ec2.state(&source).await?.as_deref() != Some("running") {
            if self.audit.begin(&start).await? == AuditBegin::Proceed
                || ec2.state(&source).await?.as_deref() == Some("stopped")
            {
                ec2.start(&source).await?;
            }
            self.wait_running(&ec2, &source).await?;
            self.audit.finish(&start.action_id, "done").await?;
        }

        // 2. Its address back, once it runs.
        let mut address = None;
        if let Some((allocation, ip)) = ec2.address_on(&clone).await? {
            let entry = audited(
                "move_address",
                &allocation,
                format!("{ip} back to {source}"),
            );
            self.audit.begin(&entry).await?;
            ec2.move_address(&allocation, &source).await?;
            self.audit.finish(&entry.action_id, "done").await?;
            address = Some(ip);
        }

        // 3. Only then the clone goes.
        let mut clone_terminated = false;
        if clone_ours {
            let entry = audited("terminate_clone", &clone, format!("{source} runs again"));
            self.audit.begin(&entry).await?;
            ec2.terminate(&clone).await?;
            self.audit.finish(&entry.action_id, "done").await?;
            clone_terminated = true;
        }

        // 4. Unmarked, recorded, told.
        ec2.untag_all(&source, &[SWITCH_TAG, SWITCHED_AT_TAG])
            .await?;
        let cause = format!("reverted by {}: {}", request.by, request.reason);
        self.ledger
            .record(&LedgerRecord {
                status: LedgerStatus::Reverted,
                cause: Some(cause.clone()),
                at: SystemClock.now(),
                ..record.clone()
            })
            .await?;
        self.ledger.unlock(&lock, &owner).await?;
        let mut lines = vec![cause, format!("{source} runs again on demand")];
        if let Some(ip) = &address {
            lines.push(format!("{ip} moved back to {source}"));
        }
        lines.push(if clone_terminated {
            format!("Spot clone {clone} terminated")
        } else {
            format!("{clone} is not this switch's clone any more and was left alone")
        });
        announce(
            &self.notices,
            &[Notice::saga(
                Kind::Switch,
                Event::Reverted,
                id,
                &record.account_id,
                &record.region,
                &source,
                record.mode.as_str(),
                &lines,
            )],
        )
        .await;
        info!(switch_id = %id, source = %source, clone = %clone, "reverted");
        Ok(Reverted {
            switch_id: id.clone(),
            source,
            clone,
            address,
            clone_terminated,
            already: false,
        })
    }

    async fn wait_running(&self, ec2: &Ec2, source: &str) -> Result<(), StepError> {
        for _ in 0..self.config.checks {
            match ec2.state(source).await?.as_deref() {
                Some("running") => return Ok(()),
                Some("pending" | "stopped" | "stopping") => {
                    tokio::time::sleep(self.config.wait).await;
                }
                other => {
                    return Err(StepError::new(
                        ErrorName::SwitchFailed,
                        format!("{source} is {other:?}: it cannot run again; the clone is kept"),
                    ));
                }
            }
        }
        Err(StepError::new(
            ErrorName::Transient,
            format!("{source} does not run yet; ask again to finish (the clone is kept)"),
        ))
    }
}
