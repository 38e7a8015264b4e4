//! The hibernation reconciler, per account and region, every five minutes: read the scheduled
//! instances and groups (one describe pass each) and their stored state (one query), let the
//! rules decide (`spot_domain::hibernation::plan`), leave alone what a saga holds, then act in
//! batches, audited first: one `StopInstances`, one with `Hibernate`, one `StartInstances`, one
//! size change per group, and write back only the targets that changed.
//!
//! Shadow unless the deployment is live and the account is on `LIVE_ACCOUNTS`: a shadow run
//! decides and records what it would do (the report, the last wish per target), and changes
//! nothing in EC2 or Auto Scaling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spot_aws::Guardian;
use spot_aws::autoscaling::AutoScaling;
use spot_aws::dynamodb::Hibernation;
use spot_aws::ec2::schedule::Outcome;
use spot_aws::{
    AccountsTable, AuditTable, AwsContext, Ec2, HibernationTable, LedgerTable, PriceList,
    SchedulesTable,
};
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog};
use spot_domain::config::{ConfigError, Env, Governance, key};
use spot_domain::governance::mode::Mode;
use spot_domain::governance::report::{RunReport, TargetReport};
use spot_domain::governance::run::{self, RunError};
use spot_domain::governance::scope::{Defaults, Target};
use spot_domain::guard::{self, Activity};
use spot_domain::hibernation::Power;
use spot_domain::hibernation::plan::{self, GroupChange, Plan, Schedules, Sizes, group_key};
use spot_domain::hibernation::state::{Saved, TargetState};
use spot_domain::hibernation::targets::{ScheduledGroup, ScheduledInstance};
use spot_domain::saga::{swap, switch};
use spot_domain::{AwsError, Clock, metrics};
use tracing::{info, warn};

pub const FUNCTION: &str = "hibernation-reconciler";

#[derive(Debug, Clone)]
pub struct Config {
    pub governance: Governance,
    pub schedules_table: String,
    pub hibernation_table: String,
    /// The sagas' locks: a target a switch or swap holds is left to it.
    pub ledger_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            governance: Governance::from_env(env)?,
            schedules_table: env.required(key::SCHEDULES_TABLE)?,
            hibernation_table: env.required(key::HIBERNATION_TABLE)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
        })
    }
}

pub struct Reconciler<C> {
    pub registry: AccountsTable,
    pub ctx: Arc<AwsContext>,
    pub schedules: SchedulesTable,
    pub table: HibernationTable,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    pub prices: PriceList,
    pub clock: C,
    /// Pauses and shadow before live, at each target's start.
    pub guard: Guardian,
    pub home_account: String,
    pub config: Config,
}

/// What one target (instance or group) is after this run's actions, for the books.
struct After {
    resource: String,
    schedule: String,
    asleep: bool,
    /// Its action failed: what it was wanted to be is not remembered, so the next run tries again.
    failed: bool,
    /// What it costs awake, should a sleep begin now: its instance types.
    types: Vec<String>,
    /// A group's record, if this run changed it (`Some(None)`: forgotten).
    record: Option<Option<Sizes>>,
}

impl<C: Clock> Reconciler<C> {
    /// The reconciler with its tables, all reached with `ctx`'s own credentials.
    pub fn new(
        ctx: Arc<AwsContext>,
        prices: PriceList,
        clock: C,
        home_account: String,
        config: Config,
    ) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
        Self {
            registry: AccountsTable::new(dynamodb.clone(), &config.governance.accounts.table),
            schedules: SchedulesTable::new(dynamodb.clone(), &config.schedules_table),
            table: HibernationTable::new(dynamodb.clone(), &config.hibernation_table),
            ledger: LedgerTable::new(dynamodb.clone(), &config.ledger_table),
            audit: AuditTable::new(dynamodb.clone(), &config.governance.audit_table),
            guard: Guardian::new(
                dynamodb,
                &config.governance.guardrails,
                FUNCTION,
                config.governance.shadow_period,
            ),
            ctx,
            prices,
            clock,
            home_account,
            config,
        }
    }

    pub async fn run(&self, input: Value, request_id: &str) -> Result<RunReport, RunError> {
        let defaults = Defaults {
            home: &self.home_account,
            regions: &self.config.governance.regions,
            switch: &self.config.governance.switch,
        };
        // One instant for the whole run, and one read of the schedules.
        let now = self.clock.now();
        let schedules = self.schedules.by_name().await?;
        for (name, why) in schedules
            .iter()
            .filter_map(|(n, s)| Some((n, s.as_ref().err()?)))
        {
            warn!(schedule = %name, error = %why, "schedule refused; its targets are left alone");
        }
        let schedules = &schedules;
        let report = run::scheduled(
            FUNCTION,
            input,
            request_id,
            &self.registry,
            &defaults,
            self.config.governance.concurrency,
            |target| async move {
                let target =
                    match guard::start(&self.guard, target, Activity::Hibernation, now).await {
                        Ok(target) => target,
                        Err(report) => return report,
                    };
                let mut report = TargetReport::new(&target);
                if let Err(e) = self
                    .reconcile(&target, schedules, now, request_id, &mut report)
                    .await
                {
                    warn!(account = %target.account, region = %target.region, error_type = %e.error_name(), error = %e, "target failed");
                    report.error = Some(e.to_string());
                }
                report
            },
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

    async fn reconcile(
        &self,
        target: &Target,
        schedules: &Schedules,
        now: DateTime<Utc>,
        request_id: &str,
        report: &mut TargetReport,
    ) -> Result<(), AwsError> {
        let sdk = self.ctx.config_for_target(target).await;
        let ec2 = Ec2::new(aws_sdk_ec2::Client::new(&sdk));
        let asg = AutoScaling::new(aws_sdk_autoscaling::Client::new(&sdk));
        let (instances, groups, stored) = futures::try_join!(
            ec2.scheduled(),
            asg.scheduled(),
            self.table.scope(&target.account, &target.region),
        )?;
        report
            .scanned
            .insert("instance".into(), instances.len() as u64);
        report.scanned.insert("group".into(), groups.len() as u64);
        if instances.is_empty() && groups.is_empty() {
            return Ok(());
        }
        let states: BTreeMap<&str, &TargetState> = stored
            .targets
            .iter()
            .map(|s| (s.resource.as_str(), s))
            .collect();
        // Only a running Spot instance may need its request's type (can it be stopped?).
        let requests: Vec<String> = instances
            .iter()
            .filter(|i| i.spot && i.state == "running")
            .filter_map(|i| i.spot_request.clone())
            .collect();
        let one_time = ec2.one_time_requests(&requests).await?;
        let mut locks = BTreeMap::new();
        let mut planned = self.plan(
            schedules, &instances, &groups, &states, &stored, &one_time, &locks, now,
        );
        // A target a switch or swap holds is left to it: only those about to change are asked.
        let keys: BTreeMap<String, String> = changing(&planned)
            .map(|resource| (lock_key(target, &resource), resource))
            .collect();
        if !keys.is_empty() {
            let lock_keys: Vec<String> = keys.keys().cloned().collect();
            locks = self
                .ledger
                .held(&lock_keys, now)
                .await?
                .into_iter()
                .filter_map(|(key, holder)| Some((keys.get(&key)?.clone(), holder)))
                .collect();
            if !locks.is_empty() {
                planned = self.plan(
                    schedules, &instances, &groups, &states, &stored, &one_time, &locks, now,
                );
            }
        }
        for (resource, why) in &planned.left {
            report.action("leave", resource, why.clone());
        }
        let act = Act {
            target,
            live: target.mode == Mode::Live,
            now,
            request_id,
            plan: &planned,
        };
        let mut after = self
            .act_on_groups(&act, &asg, &groups, &states, report)
            .await?;
        after.extend(self.act_on_instances(&act, &ec2, &instances, report).await);
        self.book(&act, &states, after).await
    }

    /// The plan, given the locks sagas hold now (by resource).
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        schedules: &Schedules,
        instances: &[ScheduledInstance],
        groups: &[ScheduledGroup],
        states: &BTreeMap<&str, &TargetState>,
        stored: &Hibernation,
        one_time: &BTreeSet<String>,
        locks: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Plan {
        let held = |resource: &str| locks.get(resource).map(String::as_str);
        let instance_targets: Vec<_> = instances
            .iter()
            .map(|i| {
                // A Spot instance whose request EC2 does not show cannot be proven persistent.
                let one = i.spot_request.as_ref().is_none_or(|r| one_time.contains(r));
                i.target(one, held(&i.instance_id), now)
            })
            .collect();
        // A group a swap holds is left as it is: its sizes are the swap's to restore.
        let (held_groups, free): (Vec<_>, Vec<_>) = groups
            .iter()
            .map(|g| {
                let key = group_key(&g.name);
                (
                    g.target(states.get(key.as_str()).and_then(|s| s.record)),
                    key,
                )
            })
            .partition(|(_, key)| held(key).is_some());
        let free: Vec<_> = free.into_iter().map(|(t, _)| t).collect();
        let seen = states
            .iter()
            .filter_map(|(k, s)| Some(((*k).to_owned(), s.seen.clone()?)))
            .collect();
        let overrides = stored
            .overrides
            .iter()
            .map(|o| (o.resource.clone(), o.over.clone()))
            .collect();
        let mut p = plan::plan(schedules, &instance_targets, &free, &seen, &overrides, now);
        for (_, key) in held_groups {
            let why = format!(
                "the optimizer is moving it: held by {}",
                held(&key).unwrap_or_default()
            );
            p.left.push((key, why));
        }
        p
    }
}

/// The targets `plan` would change: instance ids and `asg/<name>`.
fn changing(plan: &Plan) -> impl Iterator<Item = String> + '_ {
    let instances = plan.stop.iter().chain(&plan.hibernate).chain(&plan.start);
    instances
        .cloned()
        .chain(plan.groups.iter().map(|(name, _)| group_key(name)))
}

/// The lock item of a target: the switch's (`lock#account#region#i-…`) or the swap's
/// (`lock#account#region#asg/<name>`).
fn lock_key(target: &Target, resource: &str) -> String {
    match resource.strip_prefix("asg/") {
        Some(group) => swap::lock_key_of(&target.account, &target.region, group),
        None => switch::lock_key_of(&target.account, &target.region, resource),
    }
}

/// One run's acting context for one account and region.
struct Act<'a> {
    target: &'a Target,
    live: bool,
    now: DateTime<Utc>,
    request_id: &'a str,
    plan: &'a Plan,
}

impl Act<'_> {
    /// The audit item of `action` on `resources`, before it is taken.
    fn entry(&self, action: &str, resources: &[String], reason: String, pre: Value) -> AuditEntry {
        let t = self.target;
        AuditEntry {
            action_id: format!(
                "{FUNCTION}#{}#{}#{action}#{}#{}",
                t.account,
                t.region,
                resources.first().map_or("", String::as_str),
                self.now.timestamp()
            ),
            function: FUNCTION.into(),
            action: action.into(),
            account: t.account.clone(),
            region: t.region.clone(),
            resource_id: resources.join(","),
            reason,
            pre_state: pre.to_string(),
            mode: t.mode,
            request_id: self.request_id.into(),
            at: self.now,
        }
    }

    /// Why the plan changes `resources`, each distinct reason once.
    fn why(&self, resources: &[String]) -> String {
        let reasons: BTreeSet<&str> = resources
            .iter()
            .filter_map(|r| self.plan.why.get(r).map(String::as_str))
            .collect();
        reasons.into_iter().collect::<Vec<_>>().join("; ")
    }
}

impl<C: Clock> Reconciler<C> {
    /// Runs `call` between its audit item's begin and finish, and returns its outcome; an
    /// action an earlier run already finished is not taken again.
    async fn audited<F, Fut>(&self, entry: AuditEntry, call: F) -> Result<String, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        if self.audit.begin(&entry).await? == AuditBegin::AlreadyDone {
            return Ok("done (by an earlier run)".into());
        }
        let outcome = call().await;
        self.audit.finish(&entry.action_id, &outcome).await?;
        Ok(outcome)
    }

    /// Each group change: a sleep writes the record before the sizes go to 0; a wake restores
    /// the sizes, and the books then forget the record.
    async fn act_on_groups(
        &self,
        act: &Act<'_>,
        asg: &AutoScaling,
        groups: &[ScheduledGroup],
        states: &BTreeMap<&str, &TargetState>,
        report: &mut TargetReport,
    ) -> Result<Vec<After>, AwsError> {
        let changes: BTreeMap<&str, &GroupChange> = act
            .plan
            .groups
            .iter()
            .map(|(n, c)| (n.as_str(), c))
            .collect();
        if act.live {
            // The records first, all in one write: a group never sleeps without one to wake to.
            let records: Vec<TargetState> = groups
                .iter()
                .filter_map(|g| {
                    let GroupChange::Sleep { record } = changes.get(g.name.as_str())? else {
                        return None;
                    };
                    let key = group_key(&g.name);
                    let mut state = states.get(key.as_str()).map_or_else(
                        || {
                            let schedule = g.target(None).schedule;
                            TargetState::new(
                                &act.target.account,
                                &act.target.region,
                                &key,
                                &schedule,
                            )
                        },
                        |s| (*s).clone(),
                    );
                    state.record = Some(*record);
                    Some(state)
                })
                .collect();
            self.table.put_targets(&records).await?;
        }
        let mut after = Vec::new();
        for g in groups {
            let key = group_key(&g.name);
            let stored = states.get(key.as_str());
            let mut done = After {
                resource: key.clone(),
                schedule: g.target(None).schedule,
                asleep: g.size == Sizes::ASLEEP && stored.is_some_and(|s| s.record.is_some()),
                failed: false,
                types: g.member_types.clone(),
                record: None,
            };
            report.count("group", if done.asleep { "asleep" } else { "awake" });
            let Some(change) = changes.get(g.name.as_str()) else {
                after.push(done);
                continue;
            };
            let (action, to, record) = match change {
                GroupChange::Sleep { record } => {
                    ("sleep_group", Some(Sizes::ASLEEP), Some(*record))
                }
                GroupChange::Wake { to } => ("wake_group", Some(*to), None),
                GroupChange::Rerecord { record } => ("rerecord_group", None, Some(*record)),
            };
            if !act.live {
                report.action(action, &key, format!("shadow: would {}", describe(change)));
                after.push(done);
                continue;
            }
            let Some(to) = to else {
                // Re-recorded: the books write it.
                report.action(action, &key, "done");
                done.record = Some(record);
                after.push(done);
                continue;
            };
            let entry = act.entry(
                action,
                std::slice::from_ref(&key),
                act.why(std::slice::from_ref(&key)),
                json!({"min": g.size.min, "max": g.size.max, "desired": g.size.desired}),
            );
            let outcome = self
                .audited(entry, || async {
                    match asg.set_sizes(&g.name, to).await {
                        Ok(()) => "done".to_owned(),
                        Err(e) => format!("failed: {e}"),
                    }
                })
                .await?;
            done.failed = outcome.starts_with("failed");
            if !done.failed {
                done.asleep = to == Sizes::ASLEEP;
                done.record = Some(record);
            }
            info!(group = %g.name, action, outcome = %outcome, "group");
            report.action(action, &key, outcome);
            after.push(done);
        }
        Ok(after)
    }

    /// The batched stops, hibernations and starts, each audited as one action.
    async fn act_on_instances(
        &self,
        act: &Act<'_>,
        ec2: &Ec2,
        instances: &[ScheduledInstance],
        report: &mut TargetReport,
    ) -> Vec<After> {
        let plan = act.plan;
        let mut outcomes: BTreeMap<String, (&'static str, Result<(), String>)> = BTreeMap::new();
        for (action, ids) in [
            ("stop", &plan.stop),
            ("hibernate", &plan.hibernate),
            ("start", &plan.start),
        ] {
            if ids.is_empty() {
                continue;
            }
            if !act.live {
                for id in ids {
                    report.action(action, id, "shadow: would do");
                }
                continue;
            }
            let entry = act.entry(action, ids, act.why(ids), json!({"instances": ids.len()}));
            let mut results: Vec<Outcome> = Vec::new();
            let summary = self
                .audited(entry, || async {
                    results = match action {
                        "start" => ec2.start_all(ids).await,
                        _ => ec2.stop_all(ids, action == "hibernate").await,
                    };
                    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
                    match failed {
                        0 => "done".to_owned(),
                        n => format!("failed: {n} of {}", results.len()),
                    }
                })
                .await;
            if let Err(e) = &summary {
                // The audit trail could not be written: nothing was done.
                for id in ids {
                    report.action(action, id, format!("failed: {e}"));
                    outcomes.insert(id.clone(), (action, Err(e.to_string())));
                }
                continue;
            }
            info!(action, instances = ids.len(), outcome = ?summary, "batch");
            for (id, result) in results {
                report.action(
                    action,
                    &id,
                    match &result {
                        Ok(()) => "done".to_owned(),
                        Err(e) => format!("failed: {e}"),
                    },
                );
                outcomes.insert(id, (action, result));
            }
        }
        instances
            .iter()
            .map(|i| {
                let (asleep, failed) = match outcomes.get(&i.instance_id) {
                    Some((_, Err(_))) => (i.state == "stopped", true),
                    Some((action, Ok(()))) => (*action != "start", false),
                    None => (i.state == "stopped", false),
                };
                After {
                    resource: i.instance_id.clone(),
                    schedule: i.target(false, None, act.now).schedule,
                    asleep,
                    failed,
                    types: vec![i.instance_type.clone()],
                    record: None,
                }
            })
            .collect()
    }

    /// Writes what changed per target: the last wish (unless its action failed), a group's
    /// record, and, in live mode, the sleep it is in and what ended sleeps saved; one EMF line
    /// per schedule whose sleeps ended.
    async fn book(
        &self,
        act: &Act<'_>,
        states: &BTreeMap<&str, &TargetState>,
        after: Vec<After>,
    ) -> Result<(), AwsError> {
        let t = act.target;
        let mut changed = Vec::new();
        let mut saved: BTreeMap<String, Saved> = BTreeMap::new();
        let mut prices = BTreeMap::new();
        for a in after {
            let stored = states.get(a.resource.as_str()).copied();
            let mut state = stored.cloned().unwrap_or_else(|| {
                TargetState::new(&t.account, &t.region, &a.resource, &a.schedule)
            });
            state.schedule = a.schedule.clone();
            if let Some(record) = a.record {
                state.record = record;
            }
            let seen = act.plan.seen.get(&a.resource);
            // The wish and since when: a re-run that wants the same keeps the item unchanged.
            if let (Some(seen), false) = (seen, a.failed)
                && state.seen.as_ref().map(|s| s.desired) != Some(seen.desired)
            {
                state.seen = Some(seen.clone());
            }
            if let (Some(seen), true) = (seen, act.live) {
                let price =
                    if a.asleep && seen.desired == Power::Asleep && state.asleep_since.is_none() {
                        self.price(&t.region, &a.types, &mut prices).await
                    } else {
                        None
                    };
                if let Some(s) = state.account(a.asleep, seen.desired, act.now, price) {
                    saved.entry(a.schedule.clone()).or_default().add(s);
                }
            }
            if stored != Some(&state) {
                changed.push(state);
            }
        }
        self.table.put_targets(&changed).await?;
        for (schedule, s) in saved {
            let dims = [("Schedule", schedule.as_str())];
            let props = [("account", json!(t.account)), ("region", json!(t.region))];
            println!(
                "{}",
                metrics::measure(
                    metrics::name::HIBERNATION_SAVED_USD,
                    json!(round2(s.usd)),
                    "None",
                    &dims,
                    &props,
                    act.now
                )
            );
            println!(
                "{}",
                metrics::measure(
                    metrics::name::HIBERNATION_ASLEEP_HOURS,
                    json!(round2(s.hours)),
                    "Count",
                    &dims,
                    &props,
                    act.now
                )
            );
        }
        Ok(())
    }

    /// What `types` cost per hour on demand in `region`; `None` when a price is unknown.
    /// Asked once per type and run (`known`), whatever the answer: the Price List is not asked
    /// again for the next of 2,000 instances of the same type.
    async fn price(
        &self,
        region: &str,
        types: &[String],
        known: &mut BTreeMap<String, Option<f64>>,
    ) -> Option<f64> {
        let mut total = 0.0;
        for t in types {
            let usd = match known.get(t) {
                Some(usd) => *usd,
                None => {
                    let usd = self.prices.on_demand(region, t).await.ok().flatten();
                    known.insert(t.clone(), usd);
                    usd
                }
            };
            total += usd?;
        }
        Some(total)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn describe(change: &GroupChange) -> String {
    let s = |z: &Sizes| format!("min {} max {} desired {}", z.min, z.max, z.desired);
    match change {
        GroupChange::Sleep { record } => format!("record {} and set all three to 0", s(record)),
        GroupChange::Wake { to } => format!("restore {}", s(to)),
        GroupChange::Rerecord { record } => format!("record {} (changed by hand)", s(record)),
    }
}
