//! The waste scanner's flow, per account and region: read the inventory and the records, let the
//! lifecycle rules decide (`spot_domain::governance::waste::step`), then tag, untag or delete (audited first)
//! and write the records.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde_json::Value;
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog};
use spot_domain::config::{ConfigError, Env, Governance, key};
use spot_domain::governance::ports::{Deleted, Deletion, Fleet, Fleets, WasteStore};
use spot_domain::governance::pricing::PriceTable;
use spot_domain::governance::report::{RunReport, TargetReport};
use spot_domain::governance::run::RunError;
use spot_domain::governance::scope::{Defaults, Target};
use spot_domain::governance::waste::{
    self, Effect, Observation, WASTE_TAG, WasteRecord, WasteRules,
};
use spot_domain::guard::{self, Activity, Guard};
use spot_domain::notice::{Notice, Noticeboard};
use spot_domain::pool::quarantine::Write;
use spot_domain::{AccountRegistry, AwsError, Clock};
use tracing::{info, warn};

pub const FUNCTION: &str = "waste-scanner";

#[derive(Debug, Clone)]
pub struct Config {
    pub governance: Governance,
    pub waste_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
    pub rules: WasteRules,
    pub prices: PriceTable,
    /// Records and effects applied at once within one account and region.
    pub write_concurrency: usize,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let day = TimeDelta::days(1);
        let defaults = WasteRules::default();
        Ok(Self {
            governance: Governance::from_env(env)?,
            waste_table: env.required(key::WASTE_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
            rules: WasteRules {
                volume_min_age: env.duration(
                    key::VOLUME_MIN_AGE_DAYS,
                    defaults.volume_min_age,
                    day,
                    0,
                )?,
                preserved_retention: env.duration(
                    key::PRESERVED_RETENTION_DAYS,
                    defaults.preserved_retention,
                    day,
                    0,
                )?,
                snapshot_min_age: env.duration(
                    key::SNAPSHOT_MIN_AGE_DAYS,
                    defaults.snapshot_min_age,
                    day,
                    0,
                )?,
                ami_min_age: env.duration(key::AMI_MIN_AGE_DAYS, defaults.ami_min_age, day, 0)?,
                flag_after: env.duration(key::FLAG_AFTER_DAYS, defaults.flag_after, day, 0)?,
                // At least a day: an owner must always see the tag before anything is deleted.
                delete_grace: env.duration(
                    key::DELETE_GRACE_DAYS,
                    defaults.delete_grace,
                    day,
                    1,
                )?,
                snapshot_before_delete: env.parsed(key::SNAPSHOT_BEFORE_DELETE, true)?,
                source_retention: env.duration(
                    key::SOURCE_RETENTION_DAYS,
                    defaults.source_retention,
                    day,
                    0,
                )?,
            },
            prices: PriceTable::from_env(env)?,
            write_concurrency: 16,
        })
    }
}

pub struct Scanner<R, F, S, A, C, N, G> {
    pub registry: R,
    pub fleets: F,
    pub store: S,
    pub audit: A,
    /// Where owners are told of flags, scheduled deletions and deletions.
    pub notices: N,
    pub clock: C,
    /// Pauses (read before every change) and shadow before live.
    pub guard: G,
    pub home_account: String,
    pub config: Config,
}

impl<R, F, S, A, C, N, G> Scanner<R, F, S, A, C, N, G>
where
    R: AccountRegistry,
    F: Fleets,
    S: WasteStore,
    A: AuditLog,
    C: Clock,
    N: Noticeboard,
    G: Guard,
{
    /// One run over every target of `input` (a schedule's event or a run request).
    pub async fn run(&self, input: Value, request_id: &str) -> Result<RunReport, RunError> {
        let defaults = Defaults {
            home: &self.home_account,
            regions: &self.config.governance.regions,
            switch: &self.config.governance.switch,
        };
        // One instant for the whole run: every grace period is judged against the same clock.
        let now = self.clock.now();
        let report = spot_domain::governance::run::scheduled(
            FUNCTION,
            input,
            request_id,
            &self.registry,
            &defaults,
            self.config.governance.concurrency,
            |target| self.scan(target, now, request_id),
        )
        .await?;
        info!(
            targets = report.targets.len(),
            monthly_waste_usd = report.monthly_waste_usd.unwrap_or_default(),
            actions = report.actions,
            errors = report.errors.len(),
            "run finished"
        );
        Ok(report)
    }

    async fn scan(&self, target: Target, now: DateTime<Utc>, request_id: &str) -> TargetReport {
        let target = match guard::start(&self.guard, target, Activity::Waste, now).await {
            Ok(target) => target,
            Err(report) => return report,
        };
        let mut report = TargetReport::new(&target);
        if let Err(e) = self
            .scan_target(&target, now, request_id, &mut report)
            .await
        {
            warn!(account = %target.account, region = %target.region, error_type = %e.error_name(), error = %e, "target failed");
            report.error = Some(e.to_string());
        }
        for line in report.waste_metrics(now) {
            println!("{line}");
        }
        report
    }

    async fn scan_target(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        request_id: &str,
        report: &mut TargetReport,
    ) -> Result<(), AwsError> {
        let fleet = self.fleets.fleet(target).await;
        let (mut inventory, records) = futures::try_join!(
            fleet.waste_resources(),
            self.store.records(&target.account, &target.region)
        )?;
        let needed = waste::usage_needed(&inventory, &self.config.rules, now);
        if needed.templates {
            inventory.usage = fleet.usage(&needed.images).await?;
        }
        let prices = self.config.prices.region(&target.region);
        let observations = waste::observe(&inventory, &self.config.rules, prices, now);
        for o in &observations {
            *report.scanned.entry(o.kind.to_string()).or_default() += 1;
        }
        let seen: BTreeMap<&str, &Observation> = observations
            .iter()
            .map(|o| (o.resource_id.as_str(), o))
            .collect();
        let stored: BTreeMap<&str, &WasteRecord> = records
            .iter()
            .map(|r| (r.resource_id.as_str(), r))
            .collect();
        let ids: BTreeSet<&str> = seen.keys().chain(stored.keys()).copied().collect();
        let scope = waste::Scope {
            account: &target.account,
            region: &target.region,
            mode: target.mode,
            rules: &self.config.rules,
            now,
        };

        let outcomes: Vec<Outcome> = futures::stream::iter(ids)
            .map(|id| {
                let step = waste::step(stored.get(id).copied(), seen.get(id).copied(), &scope);
                self.apply(
                    &fleet,
                    step,
                    stored.get(id).copied(),
                    seen.get(id).copied(),
                    target,
                    request_id,
                )
            })
            .buffer_unordered(self.config.write_concurrency)
            .collect()
            .await;

        let mut monthly = 0.0;
        let mut notices = Vec::new();
        for outcome in outcomes {
            notices.extend(outcome.notice);
            if let Some(record) = &outcome.record {
                report.count(record.kind.as_str(), record.status.as_str());
                let kind = record.kind.as_str().to_owned();
                if record.status.is_open() {
                    monthly += record.monthly_cost_usd;
                    *report.open_usd.entry(kind).or_default() += record.monthly_cost_usd;
                } else if outcome.removed {
                    *report.removed_usd.entry(kind).or_default() += record.monthly_cost_usd;
                }
            }
            for (action, resource, result) in outcome.actions {
                report.action(action, &resource, result);
            }
        }
        report.monthly_waste_usd = Some((monthly * 100.0).round() / 100.0);
        // After the records: a notice never announces what was not recorded.
        let sent = spot_aws::sns::publish_counted(&self.notices, &notices).await;
        report.notified(notices.len(), &sent);
        Ok(())
    }

    /// Carries out one resource's step: the effect first (audited when destructive), then the record.
    async fn apply(
        &self,
        fleet: &F::Fleet,
        step: waste::Step,
        stored: Option<&WasteRecord>,
        seen: Option<&Observation>,
        target: &Target,
        request_id: &str,
    ) -> Outcome {
        let mut outcome = Outcome {
            record: step.record.clone().or_else(|| stored.cloned()),
            actions: Vec::new(),
            notice: None,
            removed: false,
        };
        let Some(mut record) = step.record else {
            return outcome;
        };
        let id = record.resource_id.clone();
        // An AMI's snapshots carry its tag too: deletion is only permitted on tagged resources.
        let tagged: Vec<String> = std::iter::once(id.clone())
            .chain(seen.map(|o| o.snapshot_ids.clone()).unwrap_or_default())
            .collect();
        if step.effect != Effect::None {
            // A pause put in force part-way through the run stops every change not yet made; the
            // record stays as it was, so the next run after the resume takes it up again.
            if let Some(why) = spot_domain::guard::stopped(&self.guard, &target.account).await {
                let action = match step.effect {
                    Effect::Delete => delete_action(record.kind),
                    Effect::Tag(_) => "tag",
                    _ => "untag",
                };
                outcome.actions.push((action, id, why));
                outcome.record = stored.cloned();
                return outcome;
            }
        }
        match step.effect {
            Effect::None => {}
            Effect::Tag(value) => {
                let result = fleet.set_tag(&tagged, WASTE_TAG, &value).await;
                outcome
                    .actions
                    .push(("tag", id.clone(), result_text(&result)));
                if result.is_err() {
                    // No status, and so no deadline, the owner was not told about: the next run
                    // tries again.
                    outcome.record = stored.cloned();
                    return outcome;
                }
            }
            Effect::Untag => {
                let result = fleet.remove_tag(&tagged, WASTE_TAG).await;
                outcome
                    .actions
                    .push(("untag", id.clone(), result_text(&result)));
            }
            Effect::Delete => {
                let Some(before) = stored else { return outcome };
                let action = delete_action(record.kind);
                match self
                    .delete(fleet, before, seen, target, request_id, action)
                    .await
                {
                    Ok(Deleted::Done { backup_snapshot_id }) => {
                        record.backup_snapshot_id =
                            backup_snapshot_id.or(record.backup_snapshot_id);
                        info!(account = %target.account, region = %target.region, resource_id = %id, action, "deleted");
                        outcome.actions.push((action, id.clone(), "done".into()));
                    }
                    Ok(Deleted::BackupPending { backup_snapshot_id }) => {
                        // Keep it scheduled; the next run deletes it once the snapshot is complete.
                        record = WasteRecord {
                            backup_snapshot_id: Some(backup_snapshot_id.clone()),
                            last_seen: record.last_seen,
                            version: before.version + 1,
                            ..before.clone()
                        };
                        outcome.actions.push((
                            action,
                            id.clone(),
                            format!("pending: backup {backup_snapshot_id} not complete"),
                        ));
                    }
                    Ok(Deleted::Refused(why)) => {
                        outcome.record = Some(before.clone());
                        outcome
                            .actions
                            .push((action, id.clone(), format!("refused: {why}")));
                        return outcome;
                    }
                    Err(e) => {
                        outcome.record = Some(before.clone());
                        outcome
                            .actions
                            .push((action, id.clone(), format!("failed: {e}")));
                        return outcome;
                    }
                }
            }
        }
        match self.store.put(&record).await {
            Ok(Write::Written) => {
                outcome.removed = record.status == waste::WasteStatus::Deleted
                    && stored.is_some_and(|s| s.status != waste::WasteStatus::Deleted);
                outcome.notice = Notice::waste(stored, &record, target.mode);
                outcome.record = Some(record);
            }
            Ok(Write::Conflict) => {
                outcome
                    .actions
                    .push(("record", id, "skipped: changed by a concurrent run".into()))
            }
            Err(e) => outcome.actions.push(("record", id, format!("failed: {e}"))),
        }
        outcome
    }

    /// The audit item first (a re-run after a crash finds it), then the deletion, then its outcome.
    async fn delete(
        &self,
        fleet: &F::Fleet,
        before: &WasteRecord,
        seen: Option<&Observation>,
        target: &Target,
        request_id: &str,
        action: &str,
    ) -> Result<Deleted, AwsError> {
        let deadline = before
            .delete_after
            .map(|t| t.timestamp())
            .unwrap_or_default();
        let entry = AuditEntry {
            action_id: format!("{FUNCTION}#{}#{action}#{deadline}", before.key()),
            function: FUNCTION.into(),
            action: action.into(),
            account: target.account.clone(),
            region: target.region.clone(),
            resource_id: before.resource_id.clone(),
            reason: before.reason.clone(),
            pre_state: serde_json::to_string(before).unwrap_or_default(),
            mode: target.mode,
            request_id: request_id.into(),
            at: self.clock.now(),
        };
        if self.audit.begin(&entry).await? == AuditBegin::AlreadyDone {
            return Ok(Deleted::Done {
                backup_snapshot_id: before.backup_snapshot_id.clone(),
            });
        }
        let deletion = Deletion {
            kind: before.kind,
            resource_id: before.resource_id.clone(),
            snapshot_ids: seen.map(|o| o.snapshot_ids.clone()).unwrap_or_default(),
            backup: self.config.rules.snapshot_before_delete,
            backup_snapshot_id: before.backup_snapshot_id.clone(),
            announced: before.deadline_notice().unwrap_or_default(),
        };
        let result = fleet.delete(&deletion).await;
        let outcome = match &result {
            Ok(Deleted::Done { .. }) => "done".to_owned(),
            Ok(Deleted::BackupPending { backup_snapshot_id }) => {
                format!("pending: backup {backup_snapshot_id}")
            }
            Ok(Deleted::Refused(why)) => format!("refused: {why}"),
            Err(e) => format!("failed: {e}"),
        };
        self.audit.finish(&entry.action_id, &outcome).await?;
        result
    }
}

/// What one resource's step did.
struct Outcome {
    /// The record as it stands after this run.
    record: Option<WasteRecord>,
    actions: Vec<(&'static str, String, String)>,
    /// What the owner is told, once the record is written.
    notice: Option<Notice>,
    /// This run closed it as deleted (its cost is removed).
    removed: bool,
}

fn delete_action(kind: waste::WasteKind) -> &'static str {
    match kind {
        waste::WasteKind::ElasticIp => "release_address",
        waste::WasteKind::EbsVolume => "delete_volume",
        waste::WasteKind::EbsSnapshot => "delete_snapshot",
        waste::WasteKind::Ami => "deregister_image",
        waste::WasteKind::SwitchSource => "terminate_switch_source",
    }
}

fn result_text(result: &Result<(), AwsError>) -> String {
    match result {
        Ok(()) => "done".into(),
        Err(e) => format!("failed: {e}"),
    }
}
