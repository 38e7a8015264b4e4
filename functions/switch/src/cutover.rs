//! Cut-over, once the clone passed its checks: stop the source (marking it, so a rollback knows it
//! stopped it), move its Elastic IP, record the switch in the ledger and the audit trail.

use serde_json::json;
use spot_aws::sns::announce;
use spot_aws::{AuditTable, Guardian, LedgerTable, Notifier, Reach};
use spot_domain::audit::{AuditBegin, AuditEntry, AuditLog};
use spot_domain::config::{Accounts, ConfigError, Env, Guardrails, key};
use spot_domain::governance::mode::Mode;
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::StepError;
use spot_domain::saga::ledger::{LedgerRecord, LedgerStatus};
use spot_domain::saga::switch::{self, CutoverStep, SwitchInput};
use spot_domain::tags::{SWITCH_TAG, SWITCHED_AT_TAG};
use spot_domain::{Clock, SystemClock, metrics};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub ledger_table: String,
    pub audit_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
    pub guardrails: Guardrails,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
            guardrails: Guardrails::from_env(env)?,
        })
    }
}

pub struct Cutover {
    pub reach: Reach,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
    /// Pauses before the stop; a completed switch resets the breaker's count.
    pub guard: Guardian,
}

impl Cutover {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Switch, "switch-cutover").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), config.ledger_table),
            audit: AuditTable::new(dynamodb, config.audit_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "switch-cutover", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "switch-cutover", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.instance_id))]
    pub async fn handle(&self, input: SwitchInput) -> Result<CutoverStep, StepError> {
        let plan = input.state.plan("cut-over")?;
        let launch = input.state.launch("cut-over")?;
        switch::ready_to_cut_over(&input.state)?;
        let request = &input.state.request;
        let switch_id = &input.execution;
        let source = &plan.source.instance_id;
        // Paused before the source is stopped: the rollback removes the clone, the source runs on.
        self.guard.check(&request.account_id).await?;
        let ec2 = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?
            .ec2;
        let entry = AuditEntry {
            action_id: format!("switch-cutover#{switch_id}#stop_source"),
            function: "switch-cutover".into(),
            action: "stop_source".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: source.clone(),
            reason: format!(
                "replaced by Spot clone {} in {}",
                launch.instance_id, launch.pool
            ),
            pre_state: json!({"source": plan.source.instance_id, "state": plan.source.state,
                "elastic_ip": plan.source.elastic_ip})
            .to_string(),
            mode: Mode::Live,
            request_id: switch_id.clone(),
            at: SystemClock.now(),
        };
        // The downtime runs from this stop request, if it is the one that stopped the source.
        let mut stop_requested = None;
        if self.audit.begin(&entry).await? == AuditBegin::Proceed {
            let asked = SystemClock.now();
            let at = asked.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            ec2.tag_all(source, &[(SWITCH_TAG, switch_id), (SWITCHED_AT_TAG, &at)])
                .await?;
            if ec2.stop(source).await?.as_deref() == Some("running") {
                stop_requested = Some(asked);
            }
        }
        let mut moved = false;
        let mut downtime_ms = None;
        if let Some(ip) = &plan.source.elastic_ip {
            ec2.move_address(&ip.allocation_id, &launch.instance_id)
                .await?;
            moved = true;
            downtime_ms = stop_requested.map(|at| switch::downtime_ms(at, SystemClock.now()));
        }
        let now = SystemClock.now();
        self.ledger
            .record(&LedgerRecord {
                switch_id: switch_id.clone(),
                account_id: request.account_id.clone(),
                region: request.region.clone(),
                source_instance_id: source.clone(),
                mode: request.mode,
                status: LedgerStatus::Switched,
                new_instance_id: Some(launch.instance_id.clone()),
                pool: Some(launch.pool.clone()),
                instance_type: Some(launch.instance_type.clone()),
                on_demand_price: Some(plan.on_demand_price),
                spot_price: Some(launch.spot_price),
                saving_per_hour: Some(launch.saving_per_hour),
                risk: Some(plan.risk),
                cause: None,
                at: now,
                group: None,
                downtime_ms,
            })
            .await?;
        self.audit.finish(&entry.action_id, "done").await?;
        self.guard.succeeded(&request.account_id).await?;
        self.ledger
            .unlock(&switch::lock_key(request), switch_id)
            .await?;
        if let Some(ms) = downtime_ms {
            println!(
                "{}",
                metrics::measure(
                    metrics::name::SWITCH_DOWNTIME_MS,
                    json!(ms),
                    "Milliseconds",
                    &[("Saga", "AtomicSwitch")],
                    &[("switch_id", json!(switch_id))],
                    now,
                )
            );
        }
        println!(
            "{}",
            metrics::count(
                metrics::name::SWITCH_COMPLETED,
                1,
                &[("Saga", "AtomicSwitch")],
                &[
                    ("switch_id", json!(switch_id)),
                    ("pool", json!(launch.pool)),
                    ("saving_per_hour", json!(launch.saving_per_hour)),
                ],
                now,
            )
        );
        let mut lines = vec![
            format!(
                "{} ({}) runs on Spot in {}, saving ${:.4} an hour",
                launch.instance_id, launch.instance_type, launch.pool, launch.saving_per_hour
            ),
            format!("{source} is stopped and kept; starting it again is the way back"),
        ];
        if let Some(ms) = downtime_ms {
            lines.push(format!(
                "downtime {:.1} s (stop request to address on the clone)",
                ms as f64 / 1000.0
            ));
        }
        if let Some(ip) = plan.source.elastic_ip.as_ref().filter(|_| moved) {
            lines.push(format!("{} moved to {}", ip.public_ip, launch.instance_id));
        }
        announce(
            &self.notices,
            &[Notice::saga(
                Kind::Switch,
                Event::Finished,
                switch_id,
                &request.account_id,
                &request.region,
                source,
                request.mode.as_str(),
                &lines,
            )],
        )
        .await;
        info!(source = %source, clone = %launch.instance_id, saving_per_hour = launch.saving_per_hour, "switched");
        Ok(CutoverStep {
            stopped: source.clone(),
            elastic_ip_moved: moved,
        })
    }
}
