//! The batch's replaced members leave: phase `detach` detaches them with decrement (in service
//! N+k → N) and deregisters them from the group's target groups (connection draining starts);
//! phase `check` reports when they are out of the group and of every target group; phase
//! `terminate` terminates them, records each swap and moves the cursor on.
//!
//! An old member is never detached nor terminated unless its replacement is InService in the
//! group: this step checks it again before acting.

use serde::Serialize;
use serde_json::json;
use spot_aws::{AuditTable, LedgerTable, Reach};
use spot_domain::audit::AuditEntry;
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::step::audited;
use spot_domain::saga::swap::{self, Cursor, Group, SwapInput};
use spot_domain::saga::{Phase, Progress, StepError};
use spot_domain::tags::SWAP_TAG;
use spot_domain::{Clock, SystemClock, metrics};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub ledger_table: String,
    pub audit_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Progress(Progress),
    Cursor(Cursor),
}

pub struct Detacher {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
}

impl Detacher {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-detach").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), config.ledger_table),
            audit: AuditTable::new(dynamodb, config.audit_table),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-detach", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-detach", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name, phase = ?input.phase))]
    pub async fn handle(&self, input: SwapInput) -> Result<Outcome, StepError> {
        let request = &input.state.request;
        let launch = input.state.batch("detach")?;
        let plan = input.state.plan("detach")?;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let group = crate::group_now(&account, &request.asg_name).await?;
        match input.phase {
            Some(Phase::Detach) => {
                self.guard.check(&request.account_id).await?;
                swap::replacements_in_service(&group, launch)?;
                let olds: Vec<String> = launch
                    .replacements
                    .iter()
                    .filter(|r| group.member(&r.old).is_some())
                    .map(|r| r.old.clone())
                    .collect();
                if !olds.is_empty() {
                    let entry = self.entry(&input, "detach_replaced", &olds.join(","), &group);
                    audited(&self.audit, &entry, async {
                        // The mark is what lets this step terminate it later (IAM condition).
                        for old in &olds {
                            account.ec2.tag(old, SWAP_TAG, &input.execution).await?;
                        }
                        account.autoscaling.detach(&request.asg_name, &olds).await
                    })
                    .await?;
                    info!(detached = ?olds, "detached");
                }
                // Auto Scaling deregisters detached instances; asking too makes draining start
                // whatever the group's attachment does (and is a no-op when already done).
                for r in &launch.replacements {
                    account.elb.deregister(&group.target_groups, &r.old).await?;
                }
                // The wait lasts as long as the target groups drain, up to an hour.
                let delay = account
                    .elb
                    .deregistration_delay(&group.target_groups)
                    .await?;
                let settings = &input.state.discovery("detach")?.settings;
                Ok(Outcome::Progress(
                    Progress::pending(0).limited(swap::detach_checks(settings, delay)),
                ))
            }
            Some(Phase::Check) => {
                let previous = input.state.detach.as_ref();
                let limit = match previous.and_then(|p| p.limit) {
                    Some(limit) => limit,
                    None => input.state.discovery("detach")?.settings.health_checks,
                };
                let checks = previous.map_or(0, |p| p.checks) + 1;
                let states = crate::attach::target_states(
                    &account,
                    &group,
                    launch.replacements.iter().map(|r| &r.old),
                )
                .await?;
                swap::detach_progress(&group, launch, &states, checks, limit)
                    .map(|p| Outcome::Progress(p.limited(limit)))
            }
            Some(Phase::Terminate) => {
                self.guard.check(&request.account_id).await?;
                swap::replacements_in_service(&group, launch)?;
                let now = SystemClock.now();
                for r in &launch.replacements {
                    let entry = self.entry(&input, "terminate_replaced", &r.old, &group);
                    audited(&self.audit, &entry, account.ec2.terminate(&r.old)).await?;
                    self.ledger
                        .record(&LedgerRecord {
                            switch_id: swap::record_id(&input.execution, &r.old),
                            account_id: request.account_id.clone(),
                            region: request.region.clone(),
                            source_instance_id: r.old.clone(),
                            mode: request.mode,
                            status: LedgerStatus::Switched,
                            new_instance_id: Some(r.new.clone()),
                            pool: Some(r.pool.clone()),
                            instance_type: Some(r.instance_type.clone()),
                            on_demand_price: Some(r.on_demand_price),
                            spot_price: Some(r.spot_price),
                            saving_per_hour: Some(r.saving_per_hour),
                            risk: Some(plan.risk),
                            cause: None,
                            at: now,
                            group: Some(request.asg_name.clone()),
                            downtime_ms: None,
                        })
                        .await?;
                    println!(
                        "{}",
                        metrics::count(
                            metrics::name::SWITCH_COMPLETED,
                            1,
                            &[("Saga", "AsgSwap")],
                            &[
                                ("swap_id", json!(input.execution)),
                                ("group", json!(request.asg_name)),
                                ("pool", json!(r.pool)),
                                ("saving_per_hour", json!(r.saving_per_hour)),
                            ],
                            now,
                        )
                    );
                    info!(old = %r.old, new = %r.new, "member swapped");
                }
                let mut swapped = input.state.swapped().to_vec();
                swapped.extend(
                    launch
                        .replacements
                        .iter()
                        .map(|r| (r.old.clone(), r.new.clone())),
                );
                Ok(Outcome::Cursor(Cursor {
                    next: launch.next,
                    done: launch.next >= plan.members.len(),
                    swapped,
                }))
            }
            other => Err(StepError::invalid(format!(
                "phase {other:?} is neither detach, check nor terminate"
            ))),
        }
    }

    fn entry(&self, input: &SwapInput, action: &str, resource: &str, group: &Group) -> AuditEntry {
        let request = &input.state.request;
        AuditEntry {
            action_id: format!("swap-detach#{}#{action}#{resource}", input.execution),
            function: "swap-detach".into(),
            action: action.into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: resource.into(),
            reason: format!(
                "replaced by Spot in group {} (swap {})",
                group.name, input.execution
            ),
            pre_state: json!({"desired": group.desired, "in_service": group.in_service(),
                "replacements": input.state.launch.as_ref().map(|l| &l.replacements)})
            .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: SystemClock.now(),
        }
    }
}
