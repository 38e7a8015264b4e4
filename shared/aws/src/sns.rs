//! SNS adapter: telling operators that a switch waits for their approval, and owners what was
//! decided about their resources ([`Notice`]s, ten per `PublishBatch`).

use aws_sdk_sns::Client;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use spot_domain::notice::{Notice, Noticeboard};
use spot_domain::{AwsError, AwsErrorKind, metrics};
use tracing::{info, warn};

use crate::AwsContext;
use crate::error::classify;

/// The most entries one `PublishBatch` takes.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct Notifier {
    client: Client,
    topic_arn: String,
}

impl Notifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// The notifier of the owners' topic `topic` (`NOTICE_TOPIC_ARN`), if one is configured.
    pub fn of(ctx: &AwsContext, topic: Option<String>) -> Option<Self> {
        topic.map(|topic| Self::new(Client::new(ctx.base()), topic))
    }

    pub async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        // SNS subjects are limited to 100 characters.
        let subject: String = subject.chars().take(100).collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| classify("Publish", e))?;
        Ok(())
    }
}

impl Noticeboard for Notifier {
    /// Every notice, ten per call; the first failure (a call, or an entry SNS refused) is the
    /// result, after every batch was tried.
    async fn publish(&self, notices: &[Notice]) -> Result<(), AwsError> {
        let mut first_error = None;
        for chunk in notices.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, notice)| entry(i, notice))
                .collect::<Result<Vec<_>, _>>()?;
            let result = self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("PublishBatch", e));
            let error = match result {
                Ok(out) => out.failed.unwrap_or_default().into_iter().next().map(|f| {
                    AwsError::new(
                        if f.sender_fault {
                            AwsErrorKind::Rejected
                        } else {
                            AwsErrorKind::Transient
                        },
                        "PublishBatch",
                        Some(f.code),
                        f.message.unwrap_or_default(),
                    )
                }),
                Err(e) => Some(e),
            };
            if first_error.is_none() {
                first_error = error;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn entry(index: usize, notice: &Notice) -> Result<PublishBatchRequestEntry, AwsError> {
    let invalid = |e: aws_sdk_sns::error::BuildError| {
        AwsError::new(AwsErrorKind::Rejected, "PublishBatch", None, e.to_string())
    };
    let mut entry = PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .subject(&notice.subject)
        .message(&notice.message);
    for (name, value) in notice.attributes() {
        entry = entry.message_attributes(
            name,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(invalid)?,
        );
    }
    entry.build().map_err(invalid)
}

/// Sends `notices` for a decision already recorded: a failure is logged and counted (EMF
/// `NoticeNotPublished`), never the caller's failure (the decision stands; the owner can read it
/// in the ledger or with `spotctl`).
pub async fn announce(board: &impl Noticeboard, notices: &[Notice]) {
    // Logged and counted by `publish_counted`; nothing more a saga step can do about it.
    let _ = publish_counted(board, notices).await;
}

/// As [`announce`], returning the outcome for a run report.
pub async fn publish_counted(board: &impl Noticeboard, notices: &[Notice]) -> Result<(), AwsError> {
    if notices.is_empty() {
        return Ok(());
    }
    let result = board.publish(notices).await;
    match &result {
        Ok(()) => info!(notices = notices.len(), "owners told"),
        Err(e) => {
            warn!(error = %e, notices = notices.len(), "owners not told");
            let first = &notices[0];
            println!(
                "{}",
                metrics::count(
                    metrics::name::NOTICE_NOT_PUBLISHED,
                    notices.len() as u64,
                    &[("Kind", first.kind.as_str())],
                    &[
                        ("notice_id", serde_json::json!(first.id)),
                        ("error", serde_json::json!(e.to_string()))
                    ],
                    chrono::Utc::now(),
                )
            );
        }
    }
    result
}
