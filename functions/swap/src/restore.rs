//! After the last batch: MaxSize and `AZRebalance` back as the owner had them, the group's lock
//! released, and the swap summarised.

use serde::Serialize;
use serde_json::json;
use spot_aws::sns::announce;
use spot_aws::{AuditTable, LedgerTable, Notifier, Reach};
use spot_domain::audit::{AuditEntry, AuditLog};
use spot_domain::config::{Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::Mode;
use spot_domain::market::{Exclusion, ExclusionReason};
use spot_domain::notice::{Event, Kind, Notice};
use spot_domain::saga::StepError;
use spot_domain::saga::swap::{self, SwapInput};
use spot_domain::tags::SWAP_TAG;
use spot_domain::{Clock, SystemClock, metrics};
use tracing::{info, instrument};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accounts: Accounts,
    pub guardrails: spot_domain::config::Guardrails,
    pub ledger_table: String,
    pub audit_table: String,
    /// Owners' SNS topic (`NOTICE_TOPIC_ARN`); none: nobody is told.
    pub notice_topic_arn: Option<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            guardrails: spot_domain::config::Guardrails::from_env(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            audit_table: env.required(key::AUDIT_TABLE)?,
            notice_topic_arn: env.optional(key::NOTICE_TOPIC_ARN),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Restored {
    pub restored: Vec<String>,
    pub swapped: Vec<(String, String)>,
    /// Planned members left on-demand, with why.
    pub not_replaced: Vec<Exclusion>,
    pub saving_per_hour: f64,
}

pub struct Restorer {
    pub reach: Reach,
    pub guard: spot_aws::Guardian,
    pub ledger: LedgerTable,
    pub audit: AuditTable,
    /// Where owners are told how the saga ended.
    pub notices: Option<Notifier>,
}

impl Restorer {
    pub async fn connect(config: Config) -> Result<Self, crate::Error> {
        let ctx = crate::aws(spot_domain::Capability::Swap, "swap-restore").await;
        let dynamodb = crate::dynamodb(&ctx);
        Ok(Self {
            ledger: LedgerTable::new(dynamodb.clone(), config.ledger_table),
            audit: AuditTable::new(dynamodb, config.audit_table),
            notices: Notifier::of(&ctx, config.notice_topic_arn),
            guard: spot_aws::Guardian::of(&ctx, &config.guardrails, "swap-restore", None),
            reach: Reach::connect(ctx, &config.accounts).await?,
        })
    }

    #[instrument(name = "swap-restore", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.state.request.account_id, region = %input.state.request.region,
        target = %input.state.request.asg_name))]
    pub async fn handle(&self, input: SwapInput) -> Result<Restored, StepError> {
        let request = &input.state.request;
        let discovered = input.state.discovery("restore")?;
        let account = self
            .reach
            .account(&request.account_id, &request.region, &input.execution)
            .await?;
        let entry = AuditEntry {
            action_id: format!("swap-restore#{}", input.execution),
            function: "swap-restore".into(),
            action: "restore_group".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: format!("asg/{}", request.asg_name),
            reason: format!("swap {} finished", input.execution),
            pre_state: json!({"max_size": discovered.group.max_size,
                "suspended": discovered.group.suspended})
            .to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: SystemClock.now(),
        };
        self.audit.begin(&entry).await?;
        let restored = crate::restore_group(&account, &request.asg_name, &input.execution).await?;
        // The replacements that serve now carry no standing permission to terminate them.
        for (_, new) in input.state.swapped() {
            account.ec2.untag(new, SWAP_TAG).await?;
        }
        self.audit.finish(&entry.action_id, "done").await?;
        self.ledger
            .unlock(&swap::lock_key(request), &input.execution)
            .await?;

        let swapped = input.state.swapped().to_vec();
        let was_swapped = |id: &str| swapped.iter().any(|(old, _)| old == id);
        let plan = input.state.plan.as_ref();
        let saving_per_hour: f64 = plan
            .map(|p| {
                p.members
                    .iter()
                    .filter(|m| was_swapped(&m.instance_id))
                    .map(|m| m.saving_per_hour())
                    .sum()
            })
            .unwrap_or_default();
        let not_replaced: Vec<Exclusion> = plan
            .map(|p| {
                p.members
                    .iter()
                    .filter(|m| !was_swapped(&m.instance_id))
                    .map(|m| {
                        Exclusion::new(
                            &m.instance_id,
                            ExclusionReason::NotReplaced,
                            "not replaced (left the group, or no capacity)",
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if request.mode == spot_domain::saga::SagaMode::Live {
            self.guard.succeeded(&request.account_id).await?;
        }
        println!(
            "{}",
            metrics::count(
                metrics::name::SWAP_COMPLETED,
                1,
                &[("Saga", "AsgSwap")],
                &[
                    ("swap_id", json!(input.execution)),
                    ("group", json!(request.asg_name)),
                    ("swapped", json!(swapped.len())),
                    ("saving_per_hour", json!(saving_per_hour)),
                ],
                SystemClock.now(),
            )
        );
        let mut lines: Vec<String> = swapped
            .iter()
            .map(|(old, new)| format!("{old} replaced by Spot instance {new}"))
            .collect();
        lines.push(format!("saving ${saving_per_hour:.4} an hour"));
        lines.extend(
            not_replaced
                .iter()
                .map(|e| format!("{} left on-demand: {}", e.what, e.detail)),
        );
        announce(
            &self.notices,
            &[Notice::saga(
                Kind::Swap,
                Event::Finished,
                &input.execution,
                &request.account_id,
                &request.region,
                &format!("asg/{}", request.asg_name),
                "live",
                &lines,
            )],
        )
        .await;
        info!(swapped = swapped.len(), restored = ?restored, "swap finished");
        Ok(Restored {
            restored,
            swapped,
            not_replaced,
            saving_per_hour,
        })
    }
}
