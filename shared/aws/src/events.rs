//! EventBridge adapter: the optimizer's decisions published on its bus (source `spot-optimizer`),
//! and the interruption handler's reactions (failovers started on Step Functions, decisions
//! published) behind the domain's [`Reactions`] port.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;
use spot_domain::AwsError;
use spot_domain::saga::failover::{EVENT_SOURCE, FailoverRequest, Reactions};

use crate::error::{classify, invalid_data};
use crate::sfn::{Started, StateMachines};

/// PutEvents takes at most ten entries per call.
const MAX_ENTRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct EventBus {
    client: Client,
    bus: String,
}

impl EventBus {
    /// `bus`: the bus name or ARN (`default` for the account's default bus).
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// Publishes `events` (detail-type, detail); an entry EventBridge refuses fails the call
    /// with its code (PutEvents answers 200 with per-entry failures).
    pub async fn publish(&self, events: &[(String, Value)]) -> Result<(), AwsError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let entries = chunk
                .iter()
                .map(|(detail_type, detail)| {
                    PutEventsRequestEntry::builder()
                        .source(EVENT_SOURCE)
                        .detail_type(detail_type)
                        .detail(detail.to_string())
                        .event_bus_name(&self.bus)
                        .build()
                })
                .collect();
            let answer = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("PutEvents", e))?;
            if answer.failed_entry_count() > 0 {
                let reasons: Vec<String> = answer
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        Some(format!(
                            "{}: {}",
                            e.error_code()?,
                            e.error_message().unwrap_or_default()
                        ))
                    })
                    .collect();
                return Err(invalid_data(
                    "PutEvents",
                    format!(
                        "{} of {} events refused: {}",
                        answer.failed_entry_count(),
                        chunk.len(),
                        reasons.join("; ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The interruption handler's [`Reactions`]: failovers on `failover_machine`, decisions on `bus`
/// (none: not published).
#[derive(Debug, Clone)]
pub struct SignalReactions {
    pub machines: StateMachines,
    pub failover_machine: Option<String>,
    pub bus: Option<EventBus>,
}

impl Reactions for SignalReactions {
    async fn start_failover(
        &self,
        name: &str,
        request: &FailoverRequest,
    ) -> Result<bool, AwsError> {
        let Some(machine) = &self.failover_machine else {
            return Ok(false);
        };
        let input = serde_json::to_value(request)
            .map_err(|e| invalid_data("StartExecution", e.to_string()))?;
        Ok(matches!(
            self.machines.start_at_once(machine, name, &input).await?,
            Started::New(_)
        ))
    }

    async fn publish(&self, events: &[(String, Value)]) -> Result<(), AwsError> {
        match &self.bus {
            Some(bus) => bus.publish(events).await,
            None => Ok(()),
        }
    }
}
