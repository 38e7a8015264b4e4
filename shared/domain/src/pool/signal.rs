//! EC2 capacity signals delivered by EventBridge, parsed into a [`Signal`] or a clear error.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::Field;

pub const EC2_SOURCE: &str = "aws.ec2";

/// The signals that quarantine a pool, ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignalKind {
    /// A launch of ours was refused for lack of Spot capacity: a short hold, not an EC2 event.
    CapacityShortage,
    RebalanceRecommendation,
    InterruptionWarning,
}

impl SignalKind {
    /// The kinds EventBridge delivers.
    pub const EVENTS: [SignalKind; 2] = [Self::RebalanceRecommendation, Self::InterruptionWarning];
    pub const ALL: [SignalKind; 3] = [
        Self::CapacityShortage,
        Self::RebalanceRecommendation,
        Self::InterruptionWarning,
    ];

    /// The EventBridge `detail-type` of this signal (for a capacity shortage, the reason recorded).
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::InterruptionWarning => "EC2 Spot Instance Interruption Warning",
            Self::RebalanceRecommendation => "EC2 Instance Rebalance Recommendation",
            Self::CapacityShortage => "Spot Optimizer Capacity Shortage",
        }
    }

    /// The EC2 signal of an EventBridge `detail-type`.
    pub fn from_detail_type(detail_type: &str) -> Option<Self> {
        Self::EVENTS
            .into_iter()
            .find(|kind| kind.detail_type() == detail_type)
    }

    /// Any kind, from the reason a quarantine record stores.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.detail_type() == reason)
    }
}

/// One capacity signal about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub event_id: String,
    pub kind: SignalKind,
    pub account: String,
    pub region: String,
    pub time: DateTime<Utc>,
    pub instance_id: String,
    /// `terminate`, `stop` or `hibernate` for an interruption warning; none for a rebalance.
    pub instance_action: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("event has no `{0}`")]
    MissingField(&'static str),
    #[error("event field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("unsupported event: source `{event_source}`, detail-type `{detail_type}`")]
    Unsupported {
        event_source: String,
        detail_type: String,
    },
}

impl SignalError {
    /// Stable error name reported to Lambda (and to a state machine's `ErrorEquals`).
    pub fn error_name(&self) -> crate::ErrorName {
        match self {
            Self::Unsupported { .. } => crate::ErrorName::UnsupportedEvent,
            _ => crate::ErrorName::InvalidEvent,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Detail {
    #[serde(rename = "instance-id")]
    instance_id: Option<String>,
    #[serde(rename = "instance-action")]
    instance_action: Option<String>,
}

impl Signal {
    /// Parses an EventBridge event. Anything but a well-formed `aws.ec2` interruption warning or
    /// rebalance recommendation is an error; nothing is guessed.
    pub fn parse(event: Value) -> Result<Self, SignalError> {
        let event: EventBridgeEvent<Value> =
            serde_json::from_value(event).map_err(|e| SignalError::Malformed(e.to_string()))?;
        let kind = SignalKind::from_detail_type(&event.detail_type)
            .filter(|_| event.source == EC2_SOURCE)
            .ok_or_else(|| SignalError::Unsupported {
                event_source: event.source.clone(),
                detail_type: event.detail_type.clone(),
            })?;
        let detail: Detail = serde_json::from_value(event.detail)
            .map_err(|e| SignalError::Malformed(format!("detail: {e}")))?;

        let event_id = required(event.id, "id")?;
        check("id", Field::EventId, &event_id)?;
        let account = required(event.account, "account")?;
        check("account", Field::AccountId, &account)?;
        let region = required(event.region, "region")?;
        check("region", Field::Region, &region)?;
        let time = event.time.ok_or(SignalError::MissingField("time"))?;
        let instance_id = required(detail.instance_id, "detail.instance-id")?;
        check("detail.instance-id", Field::InstanceId, &instance_id)?;
        let instance_action = match kind {
            SignalKind::InterruptionWarning => {
                let action = required(detail.instance_action, "detail.instance-action")?;
                if !INSTANCE_ACTIONS.contains(&action.as_str()) {
                    return Err(SignalError::InvalidField {
                        field: "detail.instance-action",
                        reason: format!(
                            "`{}` is none of {}",
                            action.chars().take(40).collect::<String>(),
                            INSTANCE_ACTIONS.join(", ")
                        ),
                    });
                }
                Some(action)
            }
            SignalKind::RebalanceRecommendation | SignalKind::CapacityShortage => None,
        };
        Ok(Self {
            event_id,
            kind,
            account,
            region,
            time,
            instance_id,
            instance_action,
        })
    }
}

/// What an interruption warning says EC2 will do.
pub const INSTANCE_ACTIONS: [&str; 3] = ["terminate", "stop", "hibernate"];

impl Signal {
    /// The signal as received at `now`: one dated more than `skew` later is refused (no EC2 event
    /// comes from the future; a forged or broken one would quarantine its pool for longer than the
    /// rule says), and one dated within `skew` counts from `now`, so a quarantine never ends later
    /// than receipt plus its length.
    pub fn received(mut self, now: DateTime<Utc>, skew: TimeDelta) -> Result<Self, SignalError> {
        if self.time > now + skew {
            return Err(SignalError::InvalidField {
                field: "time",
                reason: format!(
                    "{} is after its receipt ({now}) by more than {} s",
                    self.time,
                    skew.num_seconds()
                ),
            });
        }
        self.time = self.time.min(now);
        Ok(self)
    }
}

fn check(name: &'static str, kind: Field, value: &str) -> Result<(), SignalError> {
    kind.check(value).map_err(|e| SignalError::InvalidField {
        field: name,
        reason: e.to_string(),
    })
}

fn required(value: Option<String>, field: &'static str) -> Result<String, SignalError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or(SignalError::MissingField(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interruption() -> Value {
        json!({
            "version": "0",
            "id": "1e5527d7-bb36-4607-3370-4164db56a40e",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2026-11-20T10:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0"],
            "detail": {"instance-id": "i-1234567890abcdef0", "instance-action": "terminate"}
        })
    }

    fn without(mut event: Value, path: &[&str]) -> Value {
        let (last, parents) = path.split_last().unwrap();
        let mut node = &mut event;
        for p in parents {
            node = node.get_mut(*p).unwrap();
        }
        node.as_object_mut().unwrap().remove(*last);
        event
    }

    #[test]
    fn parses_an_interruption_warning() {
        let signal = Signal::parse(interruption()).unwrap();
        assert_eq!(signal.kind, SignalKind::InterruptionWarning);
        assert_eq!(signal.event_id, "1e5527d7-bb36-4607-3370-4164db56a40e");
        assert_eq!(signal.account, "123456789012");
        assert_eq!(signal.region, "us-east-1");
        assert_eq!(signal.instance_id, "i-1234567890abcdef0");
        assert_eq!(signal.instance_action.as_deref(), Some("terminate"));
        assert_eq!(signal.time.to_rfc3339(), "2026-11-20T10:00:00+00:00");
    }

    #[test]
    fn parses_a_rebalance_recommendation_without_action() {
        let mut event = without(interruption(), &["detail", "instance-action"]);
        event["detail-type"] = json!("EC2 Instance Rebalance Recommendation");
        let signal = Signal::parse(event).unwrap();
        assert_eq!(signal.kind, SignalKind::RebalanceRecommendation);
        assert_eq!(signal.instance_action, None);
    }

    #[test]
    fn interruption_signal_is_stronger_than_rebalance() {
        assert!(SignalKind::InterruptionWarning > SignalKind::RebalanceRecommendation);
    }

    #[test]
    fn missing_fields_are_named() {
        for (path, field) in [
            (&["id"][..], "id"),
            (&["account"][..], "account"),
            (&["region"][..], "region"),
            (&["time"][..], "time"),
            (&["detail", "instance-id"][..], "detail.instance-id"),
            (&["detail", "instance-action"][..], "detail.instance-action"),
        ] {
            let err = Signal::parse(without(interruption(), path)).unwrap_err();
            assert_eq!(err, SignalError::MissingField(field), "removing {path:?}");
            assert_eq!(err.error_name(), crate::ErrorName::InvalidEvent);
        }
    }

    #[test]
    fn unknown_detail_type_or_source_is_unsupported() {
        let mut event = interruption();
        event["detail-type"] = json!("EC2 Instance State-change Notification");
        let err = Signal::parse(event).unwrap_err();
        assert_eq!(err.error_name(), crate::ErrorName::UnsupportedEvent);

        // The optimizer's own capacity-shortage reason is never taken from an event.
        let mut event = interruption();
        event["detail-type"] = json!(SignalKind::CapacityShortage.detail_type());
        assert_eq!(
            Signal::parse(event).unwrap_err().error_name(),
            crate::ErrorName::UnsupportedEvent
        );

        let mut event = interruption();
        event["source"] = json!("custom.spoof");
        assert_eq!(
            Signal::parse(event).unwrap_err().error_name(),
            crate::ErrorName::UnsupportedEvent
        );
    }

    #[test]
    fn malformed_shapes_are_invalid() {
        for bad in [
            json!("just a string"),
            json!({}),
            json!({"detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2"}),
            {
                let mut e = interruption();
                e["detail"] = json!("i-1234567890abcdef0");
                e
            },
            {
                let mut e = interruption();
                e["time"] = json!("yesterday");
                e
            },
        ] {
            let err = Signal::parse(bad.clone()).unwrap_err();
            assert_eq!(
                err.error_name(),
                crate::ErrorName::InvalidEvent,
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_account_and_instance_ids() {
        let mut event = interruption();
        event["account"] = json!("12345");
        assert!(matches!(
            Signal::parse(event),
            Err(SignalError::InvalidField {
                field: "account",
                ..
            })
        ));
        let mut event = interruption();
        event["region"] = json!("us-east-1#evil");
        assert!(matches!(
            Signal::parse(event),
            Err(SignalError::InvalidField {
                field: "region",
                ..
            })
        ));
        for id in ["vol-0123", "i-", "i-xyz", "   "] {
            let mut event = interruption();
            event["detail"]["instance-id"] = json!(id);
            assert!(Signal::parse(event).is_err(), "accepted `{id}`");
        }
    }
}
