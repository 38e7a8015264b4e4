//! The optimizer router, per account and region: list the running instances, route each
//! (`spot_domain::route`), start one atomic switch per standalone on-demand instance and one ASG
//! swap per opted-in group, and ask the emergency failover's machine to keep each standby-replica
//! workload's standby, under names that make a re-run start nothing twice. An instance or group
//! its hibernation schedule wants asleep now is skipped. Shadow unless the
//! deployment is live and the account is on `LIVE_ACCOUNTS`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spot_aws::autoscaling::AutoScaling;
use spot_aws::{AccountsTable, AwsContext, Ec2, SchedulesTable, Started, StateMachines};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::LiveSwitch;
use spot_domain::governance::mode::Mode;
use spot_domain::governance::report::{RunReport, TargetReport};
use spot_domain::governance::run::{self, RunError};
use spot_domain::governance::scope::{Defaults, Target};
use spot_domain::guard::Guard;
use spot_domain::hibernation::plan::Schedules;
use spot_domain::hibernation::targets::asleep_by_schedule;
use spot_domain::saga::SagaMode;
use spot_domain::saga::route::{self, Route, RouteRequest};
use spot_domain::saga::swap::{self as asg, OptIn};
use spot_domain::{AwsError, Clock, SystemClock};
use tracing::info;

pub const FUNCTION: &str = "optimizer";

#[derive(Debug, Clone)]
pub struct Config {
    pub accounts: Accounts,
    pub regions: Vec<String>,
    pub switch: LiveSwitch,
    pub concurrency: usize,
    pub switch_state_machine: String,
    pub swap_state_machine: String,
    /// The emergency failover's machine, which also keeps replica workloads' standbys; none: a
    /// replica workload is only skipped.
    pub failover_state_machine: Option<String>,
    pub opt_in: OptIn,
    /// Hibernation schedules: a target its schedule wants asleep now is skipped. None: no
    /// schedule is read.
    pub schedules_table: Option<String>,
    pub guardrails: spot_domain::config::Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let mode = match env.parsed(key::MODE, SagaMode::Shadow)? {
            SagaMode::Shadow => Mode::Audit,
            SagaMode::Live => Mode::Live,
        };
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            regions: config::regions(env)?,
            switch: config::live_switch(env, mode)?,
            concurrency: config::concurrency(env)?,
            switch_state_machine: env.required(key::SWITCH_STATE_MACHINE_ARN)?,
            swap_state_machine: env.required(key::SWAP_STATE_MACHINE_ARN)?,
            failover_state_machine: env.optional(key::FAILOVER_STATE_MACHINE_ARN),
            schedules_table: env.optional(key::SCHEDULES_TABLE),
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            opt_in: OptIn {
                allowlist: env.list(key::ASG_ALLOWLIST, |n| !n.is_empty() && n.len() <= 255)?,
                allow_protected: false,
            },
        })
    }
}

pub struct Router {
    pub registry: AccountsTable,
    pub ctx: Arc<AwsContext>,
    pub executions: StateMachines,
    /// A paused account's sagas are started in shadow (the plans refuse live there too).
    pub guard: spot_aws::Guardian,
    pub home_account: String,
    pub config: Config,
}

impl Router {
    pub async fn run(&self, input: Value, request_id: &str) -> Result<RunReport, RunError> {
        let request = RouteRequest::parse(input)?;
        let defaults = Defaults {
            home: &self.home_account,
            regions: &self.config.regions,
            switch: &self.config.switch,
        };
        let now = SystemClock.now();
        let only = request.instance_id.as_deref();
        let schedules = match &self.config.schedules_table {
            Some(table) => {
                SchedulesTable::new(aws_sdk_dynamodb::Client::new(self.ctx.base()), table)
                    .by_name()
                    .await?
            }
            None => Schedules::new(),
        };
        let schedules = &schedules;
        run::scheduled(
            FUNCTION,
            request.scope(),
            request_id,
            &self.registry,
            &defaults,
            self.config.concurrency,
            |mut target| async move {
                let paused = match self.guard.stopping(Some(&target.account)).await {
                    Ok(pause) => pause.map(|p| p.explain()),
                    Err(e) => Some(format!("the pauses could not be read: {e}")),
                };
                if paused.is_some() {
                    target.mode = Mode::Audit;
                }
                let mut report = TargetReport::new(&target);
                report.paused = paused;
                if let Err(e) = self
                    .route_target(&target, only, schedules, now, &mut report)
                    .await
                {
                    report.error = Some(e.to_string());
                }
                report
            },
        )
        .await
    }

    async fn route_target(
        &self,
        target: &Target,
        only: Option<&str>,
        schedules: &Schedules,
        now: DateTime<Utc>,
        report: &mut TargetReport,
    ) -> Result<(), AwsError> {
        let sdk = self.ctx.config_for_target(target).await;
        let ec2 = Ec2::new(aws_sdk_ec2::Client::new(&sdk));
        let mode = route::saga_mode(target.mode);
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for instance in ec2.running().await? {
            if only.is_some_and(|id| id != instance.instance_id) {
                continue;
            }
            *report.scanned.entry("instance".into()).or_default() += 1;
            if let Some(why) = asleep_by_schedule(&instance.tags, schedules, now) {
                report.count("instance", "skipped");
                report.action("skip", &instance.instance_id, why);
                continue;
            }
            match route::route(&instance, now) {
                Route::Switch => {
                    report.count("instance", "switch");
                    let name = route::execution_name(
                        "sw",
                        &target.account,
                        &target.region,
                        &instance.instance_id,
                        mode,
                        now,
                    );
                    let input = json!({"account_id": target.account, "region": target.region,
                        "instance_id": instance.instance_id, "mode": mode});
                    let outcome = self
                        .start(&self.config.switch_state_machine, &name, &input)
                        .await?;
                    report.action("start_switch", &instance.instance_id, outcome);
                }
                Route::Swap(group) => {
                    report.count("instance", "swap");
                    groups
                        .entry(group)
                        .or_default()
                        .push(instance.instance_id.clone());
                }
                Route::Standby => {
                    report.count("instance", "standby");
                    let Some(machine) = &self.config.failover_state_machine else {
                        report.action(
                            "skip",
                            &instance.instance_id,
                            "a replica workload, and no failover machine to keep its standby",
                        );
                        continue;
                    };
                    let name = route::standby_execution_name(
                        &target.account,
                        &target.region,
                        &instance.instance_id,
                        mode,
                        now,
                    );
                    let input = json!({"account_id": target.account, "region": target.region,
                        "primary": instance.instance_id, "mode": mode});
                    let outcome = self.start(machine, &name, &input).await?;
                    report.action("keep_standby", &instance.instance_id, outcome);
                }
                Route::Skip(why) => {
                    report.count("instance", "skipped");
                    report.action("skip", &instance.instance_id, why);
                }
            }
        }
        if !groups.is_empty() {
            let autoscaling = AutoScaling::new(aws_sdk_autoscaling::Client::new(&sdk));
            for (name, members) in groups {
                let refusals =
                    match spot_aws::reach::inspect_group(&autoscaling, &ec2, &name).await? {
                        Some(group) => asleep_by_schedule(&group.tags, schedules, now)
                            .map(|why| vec![why])
                            .unwrap_or_else(|| asg::refusals(&group, &self.config.opt_in)),
                        None => vec!["the group no longer exists".into()],
                    };
                if !refusals.is_empty() {
                    report.action("skip_group", &format!("asg/{name}"), refusals.join("; "));
                    continue;
                }
                let execution =
                    route::execution_name("asg", &target.account, &target.region, &name, mode, now);
                let input = json!({"account_id": target.account, "region": target.region, "asg_name": name, "mode": mode});
                let outcome = self
                    .start(&self.config.swap_state_machine, &execution, &input)
                    .await?;
                info!(group = %name, members = members.len(), outcome = %outcome, "swap routed");
                report.action("start_swap", &format!("asg/{name}"), outcome);
            }
        }
        if only.is_some() && report.scanned.is_empty() {
            report.action(
                "skip",
                only.unwrap_or_default(),
                "not running in this account and region",
            );
        }
        Ok(())
    }

    async fn start(&self, machine: &str, name: &str, input: &Value) -> Result<String, AwsError> {
        Ok(match self.executions.start(machine, name, input).await? {
            Started::New(arn) => format!("started {arn}"),
            Started::AlreadyExists => format!("already started ({name})"),
        })
    }
}
