//! SNS adapter: telling operators that a switch waits for their approval.

use aws_sdk_sns::Client;
use spot_domain::AwsError;

use crate::error::classify;

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
