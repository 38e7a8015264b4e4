//! The approval gate: the state machine waits on this task's token until an operator answers
//! (`spotctl approvals`, or `aws stepfunctions send-task-success/failure`) or the timeout rejects.

use chrono::TimeDelta;
use serde::Serialize;
use spot_domain::Clock;
use spot_domain::ports::Approvals;
use spot_domain::saga::{ApprovalRequest, StepError, StepInput};
use tracing::info;

#[derive(Debug, Serialize)]
pub struct Requested {
    pub requested: bool,
}

/// Where operators hear about a pending approval.
pub trait Notify: Send + Sync {
    fn notify(
        &self,
        subject: &str,
        message: &str,
    ) -> impl std::future::Future<Output = Result<(), spot_domain::AwsError>> + Send;
}

/// No topic configured.
pub struct Nobody;

impl Notify for Nobody {
    async fn notify(&self, _: &str, _: &str) -> Result<(), spot_domain::AwsError> {
        Ok(())
    }
}

impl Notify for spot_aws::Notifier {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), spot_domain::AwsError> {
        spot_aws::Notifier::notify(self, subject, message).await
    }
}

pub struct Gate<A, N, C> {
    pub approvals: A,
    pub notify: N,
    pub clock: C,
}

impl<A: Approvals, N: Notify, C: Clock> Gate<A, N, C> {
    pub async fn handle(&self, input: StepInput) -> Result<Requested, StepError> {
        let token = input
            .token
            .clone()
            .ok_or_else(|| StepError::new("InvalidRequest", "no task token"))?;
        let plan = input
            .state
            .plan
            .as_ref()
            .ok_or_else(|| StepError::new("InvalidRequest", "no plan"))?;
        let now = self.clock.now();
        let request = ApprovalRequest {
            switch_id: input.execution.clone(),
            task_token: token,
            account_id: input.state.request.account_id.clone(),
            region: input.state.request.region.clone(),
            instance_id: input.state.request.instance_id.clone(),
            risk: plan.risk,
            reasons: plan.risk_reasons.clone(),
            summary: ApprovalRequest::summary_of(plan),
            requested_at: now,
            expires_at: now + TimeDelta::seconds(i64::from(plan.settings.approval_timeout_seconds)),
            status: "PENDING".into(),
            answered_by: None,
            answer_note: None,
        };
        self.approvals.request(&request).await?;
        let message = format!(
            "Switch {} ({} risk: {}) waits for approval until {}.\n{}\n\nApprove: spotctl approvals approve {}\nReject:  spotctl approvals reject {}",
            request.switch_id,
            request.risk,
            request.reasons.join(", "),
            request.expires_at.format("%Y-%m-%d %H:%M UTC"),
            request.summary,
            request.switch_id,
            request.switch_id
        );
        // A lost notification must not lose the approval: the request is stored either way.
        if let Err(e) = self
            .notify
            .notify(
                &format!("Spot switch {} needs approval", request.instance_id),
                &message,
            )
            .await
        {
            tracing::warn!(switch_id = %request.switch_id, error = %e, "approval notification failed");
        }
        info!(switch_id = %request.switch_id, risk = %request.risk, "approval requested");
        Ok(Requested { requested: true })
    }
}
