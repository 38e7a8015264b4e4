//! The security enforcer's flow, per account and region: read running instances and the records,
//! let the rules decide (`spot_domain::governance::enforcement::step`), then tag, untag or terminate/stop
//! (audited first) and write the records.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde_json::Value;
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog};
use spot_domain::config::{ConfigError, Env, Governance, key};
use spot_domain::governance::enforcement::{
    self, AuthStatus, AuthorizedTags, Effect, EnforceAction, EnforcementRecord, Instance,
    UNAUTHORIZED_TAG,
};
use spot_domain::governance::ports::{Enforced, EnforcementStore, Fleet, Fleets};
use spot_domain::governance::report::{RunReport, TargetReport};
use spot_domain::governance::run::RunError;
use spot_domain::governance::scope::{Defaults, Target};
use spot_domain::guard::{self, Activity, Guard};
use spot_domain::notice::{Notice, Noticeboard};
use spot_domain::pool::quarantine::Write;
use spot_domain::{AccountRegistry, AwsError, Clock};
use tracing::{info, warn};

pub const FUNCTION: &str = "security-enforcer";

#[derive(Debug, Clone)]
pub struct Config {
    pub governance: Governance,
    pub enforcement_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
    pub authorized: AuthorizedTags,
    pub grace: TimeDelta,
    pub action: EnforceAction,
    pub write_concurrency: usize,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            governance: Governance::from_env(env)?,
            enforcement_table: env.required(key::ENFORCEMENT_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
            authorized: env.parsed(key::AUTHORIZED_TAGS, AuthorizedTags::default())?,
            // At least an hour: an owner must always see the tag before anything is enforced.
            grace: env.duration(
                key::GRACE_HOURS,
                TimeDelta::hours(24),
                TimeDelta::hours(1),
                1,
            )?,
            action: env.parsed(key::ACTION, EnforceAction::Terminate)?,
            write_concurrency: 16,
        })
    }
}

pub struct Enforcer<R, F, S, A, C, N, G> {
    pub registry: R,
    pub fleets: F,
    pub store: S,
    pub audit: A,
    /// Where owners are told of flags (with the deadline) and enforcements.
    pub notices: N,
    pub clock: C,
    /// Pauses (read before every termination) and shadow before live.
    pub guard: G,
    pub home_account: String,
    pub config: Config,
}

impl<R, F, S, A, C, N, G> Enforcer<R, F, S, A, C, N, G>
where
    R: AccountRegistry,
    F: Fleets,
    S: EnforcementStore,
    A: AuditLog,
    C: Clock,
    N: Noticeboard,
    G: Guard,
{
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
            |target| self.audit_target(target, now, request_id),
        )
        .await?;
        info!(
            targets = report.targets.len(),
            actions = report.actions,
            errors = report.errors.len(),
            "run finished"
        );
        Ok(report)
    }

    async fn audit_target(
        &self,
        target: Target,
        now: DateTime<Utc>,
        request_id: &str,
    ) -> TargetReport {
        let target = match guard::start(&self.guard, target, Activity::Enforcement, now).await {
            Ok(target) => target,
            Err(report) => return report,
        };
        let mut report = TargetReport::new(&target);
        if let Err(e) = self
            .enforce_target(&target, now, request_id, &mut report)
            .await
        {
            warn!(account = %target.account, region = %target.region, error_type = %e.error_name(), error = %e, "target failed");
            report.error = Some(e.to_string());
        }
        for line in report.enforcement_metrics(now) {
            println!("{line}");
        }
        report
    }

    async fn enforce_target(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        request_id: &str,
        report: &mut TargetReport,
    ) -> Result<(), AwsError> {
        let fleet = self.fleets.fleet(target).await;
        let (instances, records) = futures::try_join!(
            fleet.running_instances(),
            self.store.records(&target.account, &target.region)
        )?;
        report
            .scanned
            .insert("instance".into(), instances.len() as u64);
        let stored: BTreeMap<&str, &EnforcementRecord> = records
            .iter()
            .map(|r| (r.instance_id.as_str(), r))
            .collect();
        let scope = enforcement::Scope {
            account: &target.account,
            region: &target.region,
            mode: target.mode,
            authorized: &self.config.authorized,
            grace: self.config.grace,
            action: self.config.action,
            now,
        };
        let steps: Vec<(&Instance, Option<&EnforcementRecord>, enforcement::Step)> = instances
            .iter()
            .map(|instance| {
                let before = stored.get(instance.instance_id.as_str()).copied();
                (
                    instance,
                    before,
                    enforcement::step(before, instance, &scope),
                )
            })
            .collect();
        let tagged = self.tag_all(&fleet, &steps).await;
        let outcomes: Vec<Outcome> = futures::stream::iter(steps)
            .map(|(instance, before, step)| {
                let tag = tagged.get(instance.instance_id.as_str()).cloned();
                self.apply(&fleet, step, tag, before, instance, target, request_id)
            })
            .buffer_unordered(self.config.write_concurrency)
            .collect()
            .await;
        let mut notices = Vec::new();
        for outcome in outcomes {
            notices.extend(outcome.notice);
            report.count("instance", outcome.status.as_str());
            for (action, resource, result) in outcome.actions {
                report.action(action, &resource, result);
            }
        }
        // After the records: a notice never announces what was not recorded.
        let sent = spot_aws::sns::publish_counted(&self.notices, &notices).await;
        report.notified(notices.len(), &sent);
        Ok(())
    }

    /// Sets and removes the flag tag in as few calls as possible: every instance flagged in one run
    /// shares its deadline, so one call tags up to 1,000 of them. Returns each instance's outcome.
    async fn tag_all(
        &self,
        fleet: &F::Fleet,
        steps: &[(&Instance, Option<&EnforcementRecord>, enforcement::Step)],
    ) -> BTreeMap<String, (&'static str, Result<(), String>)> {
        let mut batches: BTreeMap<Option<&str>, Vec<String>> = BTreeMap::new();
        for (instance, _, step) in steps {
            let value = match &step.effect {
                Effect::Tag(value) => Some(value.as_str()),
                Effect::Untag => None,
                _ => continue,
            };
            batches
                .entry(value)
                .or_default()
                .push(instance.instance_id.clone());
        }
        let mut results = BTreeMap::new();
        for (value, ids) in batches {
            for chunk in ids.chunks(1000) {
                let (action, result) = match value {
                    Some(value) => ("tag", fleet.set_tag(chunk, UNAUTHORIZED_TAG, value).await),
                    None => ("untag", fleet.remove_tag(chunk, UNAUTHORIZED_TAG).await),
                };
                for id in chunk {
                    results.insert(
                        id.clone(),
                        (action, result.clone().map_err(|e| e.to_string())),
                    );
                }
            }
        }
        results
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        fleet: &F::Fleet,
        step: enforcement::Step,
        tag: Option<(&'static str, Result<(), String>)>,
        before: Option<&EnforcementRecord>,
        instance: &Instance,
        target: &Target,
        request_id: &str,
    ) -> Outcome {
        let id = instance.instance_id.clone();
        // Authorised instances that were never flagged have no record.
        let unchanged = before.map_or(AuthStatus::Authorized, |b| b.auth_status);
        let mut outcome = Outcome {
            status: unchanged,
            actions: Vec::new(),
            notice: None,
        };
        let Some(mut record) = step.record else {
            return outcome;
        };
        if let Some((action, result)) = tag {
            match result {
                Ok(()) => outcome.actions.push((action, id.clone(), "done".into())),
                // The owner was not told: no deadline starts; the next run tries again.
                Err(e) => {
                    outcome.actions.push((action, id, format!("failed: {e}")));
                    return outcome;
                }
            }
        }
        match step.effect {
            Effect::None | Effect::Tag(_) | Effect::Untag => {}
            Effect::Enforce(action) => {
                let Some(before) = before else { return outcome };
                if let Some(why) = spot_domain::guard::stopped(&self.guard, &target.account).await {
                    outcome.actions.push((action.as_str(), id, why));
                    return outcome;
                }
                match self
                    .enforce(fleet, before, action, target, request_id)
                    .await
                {
                    Ok(Enforced::Done) => {
                        info!(account = %target.account, region = %target.region, instance_id = %id, action = action.as_str(), "enforced");
                        outcome
                            .actions
                            .push((action.as_str(), id.clone(), "done".into()));
                    }
                    Ok(Enforced::Refused(why)) => {
                        record = enforcement::protected(&record, &why);
                        outcome.actions.push((
                            action.as_str(),
                            id.clone(),
                            format!("refused: {why}"),
                        ));
                    }
                    Err(e) => {
                        outcome
                            .actions
                            .push((action.as_str(), id, format!("failed: {e}")));
                        return outcome;
                    }
                }
            }
        }
        match self.store.put(&record).await {
            Ok(Write::Written) => {
                outcome.notice = Notice::enforcement(before, &record);
                outcome.status = record.auth_status;
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

    /// The audit item first, then the action, then its outcome.
    async fn enforce(
        &self,
        fleet: &F::Fleet,
        before: &EnforcementRecord,
        action: EnforceAction,
        target: &Target,
        request_id: &str,
    ) -> Result<Enforced, AwsError> {
        let deadline = before
            .terminate_after
            .map(|t| t.timestamp())
            .unwrap_or_default();
        let entry = AuditEntry {
            action_id: format!("{FUNCTION}#{}#{}#{deadline}", before.key(), action.as_str()),
            function: FUNCTION.into(),
            action: action.as_str().into(),
            account: target.account.clone(),
            region: target.region.clone(),
            resource_id: before.instance_id.clone(),
            reason: before.reason.clone(),
            pre_state: serde_json::to_string(before).unwrap_or_default(),
            mode: target.mode,
            request_id: request_id.into(),
            at: self.clock.now(),
        };
        if self.audit.begin(&entry).await? == AuditBegin::AlreadyDone {
            return Ok(Enforced::Done);
        }
        let result = fleet.enforce(&before.instance_id, action).await;
        let outcome = match &result {
            Ok(Enforced::Done) => "done".to_owned(),
            Ok(Enforced::Refused(why)) => format!("refused: {why}"),
            Err(e) => format!("failed: {e}"),
        };
        self.audit.finish(&entry.action_id, &outcome).await?;
        result
    }
}

struct Outcome {
    /// The instance's status after this run.
    status: AuthStatus,
    actions: Vec<(&'static str, String, String)>,
    /// What the owner is told, once the record is written.
    notice: Option<Notice>,
}
