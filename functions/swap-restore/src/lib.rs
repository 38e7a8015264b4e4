//! After the last batch: MaxSize and `AZRebalance` back as the owner had them, the group's lock
//! released, and the swap summarised.

use serde::Serialize;
use serde_json::json;
use spot_domain::asg::{self, SwapInput};
use spot_domain::mode::Mode;
use spot_domain::ports::{
    AccountRegistry, AuditEntry, AuditLog, GroupFleets, SwitchFleets, SwitchLedger,
};
use spot_domain::saga::{Reach, StepError};
use spot_domain::switch::Exclusion;
use spot_domain::{Clock, metrics};
use tracing::info;

#[derive(Debug, Serialize)]
pub struct Restored {
    pub restored: Vec<String>,
    pub swapped: Vec<(String, String)>,
    /// Planned members left on-demand, with why.
    pub not_replaced: Vec<Exclusion>,
    pub saving_per_hour: f64,
}

pub struct Restorer<R, F, L, A, C> {
    pub reach: Reach<R, F>,
    pub ledger: L,
    pub audit: A,
    pub clock: C,
}

impl<R, F, L, A, C> Restorer<R, F, L, A, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    L: SwitchLedger,
    A: AuditLog,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<Restored, StepError> {
        let request = &input.state.request;
        let discovered = input.state.discover.as_ref().ok_or_else(|| {
            StepError::new("InvalidRequest", "the restore step needs the discovery")
        })?;
        let reach = self.reach.group(request).await?;
        let entry = AuditEntry {
            action_id: format!("swap-restore#{}", input.execution),
            function: "swap-restore".into(),
            action: "restore_group".into(),
            account: request.account_id.clone(),
            region: request.region.clone(),
            resource_id: format!("asg/{}", request.asg_name),
            reason: format!("swap {} finished", input.execution),
            pre_state: json!({"max_size": discovered.group.max_size, "suspended": discovered.group.suspended}).to_string(),
            mode: Mode::Live,
            request_id: input.execution.clone(),
            at: self.clock.now(),
        };
        self.audit.begin(&entry).await?;
        let restored = asg::restore_group(&reach.groups, &discovered.group).await?;
        self.audit.finish(&entry.action_id, "done").await?;
        self.ledger
            .unlock(&asg::lock_key(request), &input.execution)
            .await?;

        let swapped = input.state.swapped().to_vec();
        let plan = input.state.plan.as_ref();
        let saving_per_hour: f64 = plan
            .map(|p| {
                p.members
                    .iter()
                    .filter(|m| swapped.iter().any(|(old, _)| *old == m.instance_id))
                    .map(|m| m.saving_per_hour())
                    .sum()
            })
            .unwrap_or_default();
        let not_replaced: Vec<Exclusion> = plan
            .map(|p| {
                p.members
                    .iter()
                    .filter(|m| !swapped.iter().any(|(old, _)| *old == m.instance_id))
                    .map(|m| Exclusion {
                        what: m.instance_id.clone(),
                        reason: "not replaced (left the group, or no capacity)".into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{}",
            metrics::count(
                "SwapCompleted",
                1,
                &[("Saga", "AsgSwap")],
                &[
                    ("swap_id", json!(input.execution)),
                    ("group", json!(request.asg_name)),
                    ("swapped", json!(swapped.len())),
                    ("saving_per_hour", json!(saving_per_hour)),
                ],
                self.clock.now(),
            )
        );
        info!(swap_id = %input.execution, group = %request.asg_name, swapped = swapped.len(), restored = ?restored, "swap finished");
        Ok(Restored {
            restored,
            swapped,
            not_replaced,
            saving_per_hour,
        })
    }
}
