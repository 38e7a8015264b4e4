//! The approval gate both sagas pause on: the state machine waits on this task's token until an
//! operator answers (`spotctl approvals`, or `aws stepfunctions send-task-success/failure`) or the
//! timeout rejects. The request is stored whatever happens to its notification.

use chrono::TimeDelta;
use serde::Serialize;
use spot_aws::{ApprovalsTable, AwsContext, Notifier};
use spot_domain::config::{ConfigError, Env, key};
use spot_domain::saga::StepError;
use spot_domain::saga::approval::{
    ApprovalInput, ApprovalRequest, ApprovalStatus, LinkDigests, token_digest,
};

pub mod link;

/// A link token: 32 bytes from the operating system's CSPRNG, hex.
fn new_token() -> Result<String, StepError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        StepError::new(
            spot_domain::ErrorName::Transient,
            format!("no randomness: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
use spot_domain::{Clock, SystemClock};
use tracing::{info, instrument, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub approvals_table: String,
    /// Where operators hear about a pending approval (optional).
    pub topic_arn: Option<String>,
    /// The `approval-link` function's URL: the notice then carries approve and reject links.
    pub link_url: Option<String>,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            approvals_table: env.required(key::APPROVALS_TABLE)?,
            topic_arn: env.optional(key::APPROVAL_TOPIC_ARN),
            link_url: env.optional(key::APPROVAL_LINK_URL),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Requested {
    pub requested: bool,
}

pub struct Approval {
    pub approvals: ApprovalsTable,
    pub notifier: Option<Notifier>,
    pub link_url: Option<String>,
}

impl Approval {
    pub async fn connect(config: Config) -> Self {
        let ctx = AwsContext::load(spot_domain::Capability::Read, "saga-approval").await;
        Self {
            approvals: ApprovalsTable::new(
                aws_sdk_dynamodb::Client::new(ctx.base()),
                config.approvals_table,
            ),
            notifier: config
                .topic_arn
                .map(|topic| Notifier::new(aws_sdk_sns::Client::new(ctx.base()), topic)),
            link_url: config.link_url,
        }
    }

    #[instrument(name = "saga-approval", skip_all, err(level = tracing::Level::WARN), fields(saga_id = %input.execution,
        account = %input.account_id, region = %input.region, target = %input.target))]
    pub async fn handle(&self, input: ApprovalInput) -> Result<Requested, StepError> {
        let mut request = request(input, SystemClock.now())?;
        // Fresh tokens for every delivery: only the digests are stored, and the stored request
        // (written again if this step is delivered twice) always matches the last notice.
        let links = match &self.link_url {
            Some(url) => {
                let (approve, reject) = (new_token()?, new_token()?);
                request.link_digests = Some(LinkDigests {
                    approve: token_digest(&approve),
                    reject: token_digest(&reject),
                });
                Some(link::links(url, &request.saga_id, &approve, &reject))
            }
            None => None,
        };
        self.approvals.request(&request).await?;
        // A lost notification must not lose the approval: the request is stored either way.
        if let Some(notifier) = &self.notifier {
            let (subject, mut message) = notice(&request);
            if let Some((approve, reject)) = &links {
                message.push_str(&format!(
                    "\n\nOr open (each link works once, until {}):\nApprove: {approve}\nReject:  {reject}",
                    request.expires_at.format("%Y-%m-%d %H:%M UTC")
                ));
            }
            if let Err(e) = notifier.notify(&subject, &message).await {
                warn!(error = %e, "approval notification failed");
            }
        }
        info!(risk = %request.risk, "approval requested");
        Ok(Requested { requested: true })
    }
}

/// The longest an approval may wait: 31 days.
pub const MAX_TIMEOUT_SECONDS: u32 = 31 * 24 * 3600;

/// The pending request the input asks for, expiring with the approval's timeout; the input's
/// fields are checked and bounded first.
pub fn request(
    input: ApprovalInput,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ApprovalRequest, StepError> {
    use spot_domain::ids::Field;
    Field::ExecutionName.check(&input.execution)?;
    Field::AccountId.check(&input.account_id)?;
    Field::Region.check(&input.region)?;
    // Step Functions' own limits (a task token is at most 2,048 characters), and room for what
    // the state machine writes (a group is `asg/` and at most 255 characters; a few reasons).
    let bounded = input.token.chars().count() <= 2048
        && input.target.chars().count() <= 260
        && input.reasons.len() <= 32
        && input.reasons.iter().all(|r| r.chars().count() <= 500)
        && input.summary.chars().count() <= 4096
        && (1..=MAX_TIMEOUT_SECONDS).contains(&input.timeout_seconds);
    if input.token.is_empty() || !bounded {
        return Err(StepError::invalid(format!(
            "an approval needs a task token (at most 2048 characters), a target (260), at most 32 \
             reasons (500 each), a summary (4096) and a timeout of 1-{MAX_TIMEOUT_SECONDS} s"
        )));
    }
    Ok(ApprovalRequest {
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
        expires_at: now + TimeDelta::seconds(i64::from(input.timeout_seconds)),
        status: ApprovalStatus::Pending,
        answered_by: None,
        answer_note: None,
        link_digests: None,
    })
}

/// The notice operators receive: subject and body, with the commands that answer it.
pub fn notice(request: &ApprovalRequest) -> (String, String) {
    let subject = format!(
        "Spot optimizer: {} of {} needs approval",
        request.saga, request.target
    );
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
    (subject, message)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use spot_domain::ErrorName;
    use spot_domain::saga::Risk;
    use spot_domain::saga::approval::Saga;

    use super::*;

    fn input(token: &str) -> ApprovalInput {
        ApprovalInput {
            execution: "sw-1".into(),
            token: token.into(),
            saga: Saga::AtomicSwitch,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            target: "i-0abc".into(),
            risk: Risk::High,
            reasons: vec!["PROD account".into(), "Elastic IP".into()],
            summary: "i-0abc m5.large → Spot".into(),
            timeout_seconds: 3600,
        }
    }

    #[test]
    fn a_request_expires_with_its_timeout_and_names_how_to_answer_it() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        let request = request(input("token-1"), now).unwrap();
        assert_eq!(request.status, ApprovalStatus::Pending);
        assert_eq!(request.expires_at - now, TimeDelta::hours(1));
        let (subject, body) = notice(&request);
        assert!(subject.contains("AtomicSwitch of i-0abc"), "{subject}");
        assert!(body.contains("spotctl approvals approve sw-1"), "{body}");
        assert!(
            body.contains("HIGH risk: PROD account, Elastic IP"),
            "{body}"
        );
    }

    #[test]
    fn a_request_without_a_task_token_is_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        assert_eq!(
            request(input(""), now).unwrap_err().name,
            ErrorName::InvalidRequest
        );
    }

    #[test]
    fn malformed_or_unbounded_fields_are_refused_before_anything_is_stored() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        let long = "x".repeat(5000);
        let cases: [fn(&mut ApprovalInput, &str); 9] = [
            |i, l| i.execution = l.into(),
            |i, _| i.execution = "a:b".into(),
            |i, _| i.account_id = "1234".into(),
            |i, l| i.region = l.into(),
            |i, l| i.token = l.into(),
            |i, l| i.summary = l.into(),
            |i, l| i.reasons = vec![l.into()],
            |i, _| i.timeout_seconds = 0,
            |i, _| i.timeout_seconds = u32::MAX,
        ];
        for (n, change) in cases.into_iter().enumerate() {
            let mut bad = input("token-1");
            change(&mut bad, &long);
            let e = request(bad, now).unwrap_err();
            assert_eq!(e.name, ErrorName::InvalidRequest, "case {n}");
            assert!(e.message.len() < 400, "case {n}: {}", e.message);
        }
    }
}
