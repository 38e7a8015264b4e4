//! The approval gate shared by the sagas: the state machine waits on this task's token until an operator answers
//! (`spotctl approvals`, or `aws stepfunctions send-task-success/failure`) or the timeout rejects.

use chrono::TimeDelta;
use serde::Serialize;
use spot_domain::Clock;
use spot_domain::ports::Approvals;
use spot_domain::saga::{ApprovalInput, ApprovalRequest, StepError};
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
    pub async fn handle(&self, input: ApprovalInput) -> Result<Requested, StepError> {
        if input.token.is_empty() {
            return Err(StepError::new("InvalidRequest", "no task token"));
        }
        let now = self.clock.now();
        let request = ApprovalRequest {
            saga_id: input.execution,
            saga: input.saga,
            task_token: input.token,
            account_id: input.account_id,
            region: input.region,
            target: input.target,
            risk: input.risk,
            reasons: input.reasons,
            summary: input.summary,
            requested_at: now,
            expires_at: now + TimeDelta::seconds(i64::from(input.timeout_seconds.max(1))),
            status: "PENDING".into(),
            answered_by: None,
            answer_note: None,
        };
        self.approvals.request(&request).await?;
        let message = format!(
            "{} {} of {} in {} {} ({} risk: {}) waits for approval until {}.\n{}\n\n\
             Approve: spotctl approvals approve {}\nReject:  spotctl approvals reject {}",
            request.saga,
            request.saga_id,
            request.target,
            request.account_id,
            request.region,
            request.risk,
            request.reasons.join(", "),
            request.expires_at.format("%Y-%m-%d %H:%M UTC"),
            request.summary,
            request.saga_id,
            request.saga_id
        );
        // A lost notification must not lose the approval: the request is stored either way.
        if let Err(e) = self
            .notify
            .notify(
                &format!(
                    "Spot optimizer: {} of {} needs approval",
                    request.saga, request.target
                ),
                &message,
            )
            .await
        {
            tracing::warn!(saga_id = %request.saga_id, error = %e, "approval notification failed");
        }
        info!(saga_id = %request.saga_id, target = %request.target, risk = %request.risk, "approval requested");
        Ok(Requested { requested: true })
    }
}
