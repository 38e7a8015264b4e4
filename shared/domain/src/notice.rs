//! Owner notices: one message per decision a resource's owner should know about (waste flagged or
//! scheduled for deletion, an instance flagged by the enforcer, a saga finished or rolled back),
//! with the attributes subscribers filter on (account, region, kind, event).
//!
//! A notice is sent after its decision is recorded, never before: it never announces what did not
//! happen. Its `id` is the same for every delivery of one decision (a retried saga step may send
//! it twice; subscribers deduplicate on the `notice_id` attribute).

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::AwsError;
use crate::governance::enforcement::{AuthStatus, EnforcementRecord};
use crate::governance::mode::Mode;
use crate::governance::waste::{WasteKind, WasteRecord, WasteStatus};
use crate::tags::EXEMPT_TAG;

/// What the notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Waste,
    Enforcement,
    Switch,
    Swap,
    Failover,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waste => "waste",
            Self::Enforcement => "enforcement",
            Self::Switch => "switch",
            Self::Swap => "swap",
            Self::Failover => "failover",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Waste => "Waste",
            Self::Enforcement => "Unauthorised instance",
            Self::Switch => "Switch to Spot",
            Self::Swap => "Auto Scaling group swap to Spot",
            Self::Failover => "Spot failover",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Flagged,
    ScheduledDelete,
    Deleted,
    /// The enforcer terminated or stopped the instance.
    Enforced,
    Finished,
    RolledBack,
    /// Rolled back as far as was safe; something is left for a person (the message says what).
    RollbackIncomplete,
    /// An operator switched a switch back (`spotctl switch revert`).
    Reverted,
    /// The circuit breaker paused an account.
    Paused,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flagged => "flagged",
            Self::ScheduledDelete => "scheduled_delete",
            Self::Deleted => "deleted",
            Self::Enforced => "enforced",
            Self::Finished => "finished",
            Self::RolledBack => "rolled_back",
            Self::RollbackIncomplete => "rollback_incomplete",
            Self::Reverted => "reverted",
            Self::Paused => "paused",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Flagged => "flagged",
            Self::ScheduledDelete => "scheduled for deletion",
            Self::Deleted => "deleted",
            Self::Enforced => "enforced",
            Self::Finished => "finished",
            Self::RolledBack => "rolled back",
            Self::RollbackIncomplete => "rolled back incompletely",
            Self::Reverted => "reverted",
            Self::Paused => "paused by the circuit breaker",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The same for every delivery of one decision.
    pub id: String,
    pub kind: Kind,
    pub event: Event,
    pub account: String,
    pub region: String,
    pub resource_id: String,
    /// `audit`, `live` or `shadow`: what the function was allowed to do.
    pub mode: String,
    /// When something will happen unless the owner acts (a deletion, a termination).
    pub deadline: Option<DateTime<Utc>>,
    pub subject: String,
    pub message: String,
}

/// SNS subjects are at most 100 characters.
const SUBJECT_LIMIT: usize = 100;

impl Notice {
    /// The SNS message attributes (all strings, none empty), for subscription filter policies.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            ("account", self.account.clone()),
            ("region", self.region.clone()),
            ("kind", self.kind.as_str().to_owned()),
            ("event", self.event.as_str().to_owned()),
            ("mode", self.mode.clone()),
            ("resource_id", self.resource_id.clone()),
            ("notice_id", self.id.clone()),
        ];
        if let Some(at) = self.deadline {
            attributes.push(("deadline", stamp(at)));
        }
        // SNS refuses an attribute with an empty value.
        attributes.retain(|(_, value)| !value.is_empty());
        attributes
    }

    /// A saga's end: `lines` say what it did or undid.
    #[allow(clippy::too_many_arguments)]
    pub fn saga(
        kind: Kind,
        event: Event,
        saga_id: &str,
        account: &str,
        region: &str,
        resource_id: &str,
        mode: &str,
        lines: &[String],
    ) -> Self {
        let mut message = format!(
            "{} of {resource_id} in account {account}, {region}, {} (execution {saga_id}).\n",
            kind.title(),
            event.title()
        );
        for line in lines {
            message.push_str("- ");
            message.push_str(line);
            message.push('\n');
        }
        Self {
            id: format!("{}#{saga_id}#{}", kind.as_str(), event.as_str()),
            kind,
            event,
            account: account.into(),
            region: region.into(),
            resource_id: resource_id.into(),
            mode: mode.into(),
            deadline: None,
            subject: subject(&format!(
                "{} {}: {resource_id} ({account}, {region})",
                kind.title(),
                event.title()
            )),
            message,
        }
    }

    /// The circuit breaker paused an account after the live saga `saga_id` of `kind` failed.
    pub fn breaker(kind: Kind, pause: &crate::guard::Pause, saga_id: &str, region: &str) -> Self {
        let account = match &pause.scope {
            crate::guard::Scope::Account(id) => id.clone(),
            other => other.to_string(),
        };
        let mut message = format!(
            "The circuit breaker paused account {account}: {}.\nNo new live saga starts there and \
             nothing in it changes until an operator resumes it (`spotctl accounts resume \
             {account} --by NAME --reason WHY`); shadow runs go on.\nFailures:\n",
            pause.reason
        );
        for f in &pause.failures {
            message.push_str(&format!(
                "- {} at {}: {}\n",
                f.saga_id,
                stamp(f.at),
                f.error
            ));
        }
        Self {
            id: format!("breaker#{account}#{}", stamp(pause.at)),
            kind,
            event: Event::Paused,
            account: account.clone(),
            region: region.into(),
            resource_id: account.clone(),
            mode: "live".into(),
            deadline: None,
            subject: subject(&format!(
                "Circuit breaker paused account {account} (after {saga_id})"
            )),
            message,
        }
    }

    /// What the owner of a waste resource is told when its record moves from `before` to
    /// `after`: flagged, scheduled for deletion (with the date) or deleted. Nothing otherwise, so
    /// a re-run that changes no status tells nobody again.
    pub fn waste(before: Option<&WasteRecord>, after: &WasteRecord, mode: Mode) -> Option<Self> {
        if before.is_some_and(|b| b.status == after.status) {
            return None;
        }
        let event = match after.status {
            WasteStatus::Flagged => Event::Flagged,
            WasteStatus::ScheduledDelete => Event::ScheduledDelete,
            WasteStatus::Deleted => Event::Deleted,
            WasteStatus::Detected | WasteStatus::Resolved => return None,
        };
        let what = format!("{} {}", kind_name(after.kind), after.resource_id);
        let mut message = format!(
            "{what} in account {}, {}, is {} as waste: {}.\nIt costs ${:.2} a month.\n",
            after.account,
            after.region,
            event.title(),
            after.reason,
            after.monthly_cost_usd,
        );
        match (event, after.delete_after) {
            (Event::ScheduledDelete, Some(at)) => message.push_str(&format!(
                "It will be deleted after {} unless it is used by then or tagged {EXEMPT_TAG}.\n",
                stamp(at)
            )),
            (Event::Flagged, _) => message.push_str(&format!(
                "Nothing will be deleted while the scanner runs in {mode} mode for this account; \
                 tag it {EXEMPT_TAG} to keep it out of the report.\n"
            )),
            (Event::Deleted, _) => {
                if let Some(backup) = &after.backup_snapshot_id {
                    message.push_str(&format!("Its data is kept in snapshot {backup}.\n"));
                }
            }
            _ => {}
        }
        // One deadline, one notice: a deletion rescheduled later is a new decision.
        let at = after
            .delete_after
            .filter(|_| event != Event::Flagged)
            .map_or(0, |t| t.timestamp());
        Some(Self {
            id: format!("waste#{}#{}#{at}", after.key(), event.as_str()),
            kind: Kind::Waste,
            event,
            account: after.account.clone(),
            region: after.region.clone(),
            resource_id: after.resource_id.clone(),
            mode: mode.as_str().into(),
            deadline: after
                .delete_after
                .filter(|_| event == Event::ScheduledDelete),
            subject: subject(&format!(
                "Waste {}: {what} ({}, {})",
                event.title(),
                after.account,
                after.region
            )),
            message,
        })
    }

    /// What the owner of an instance is told when the enforcer flags it (with the deadline) or
    /// terminates or stops it. Nothing for a status that did not change.
    pub fn enforcement(
        before: Option<&EnforcementRecord>,
        after: &EnforcementRecord,
    ) -> Option<Self> {
        if before.is_some_and(|b| b.auth_status == after.auth_status) {
            return None;
        }
        let event = match after.auth_status {
            AuthStatus::Flagged => Event::Flagged,
            AuthStatus::Terminated | AuthStatus::Stopped => Event::Enforced,
            AuthStatus::Authorized | AuthStatus::Unauthorized => return None,
        };
        let id = &after.instance_id;
        let mut message = format!(
            "Instance {id} in account {}, {}, runs without an authorising tag: {}.\n",
            after.account, after.region, after.reason
        );
        let deadline = after
            .terminate_after
            .filter(|_| event == Event::Flagged && after.deadline_mode == Mode::Live);
        match event {
            Event::Flagged => match deadline {
                Some(at) => message.push_str(&format!(
                    "It will be enforced after {} unless it gets an authorising tag (or {EXEMPT_TAG}) by then.\n",
                    stamp(at)
                )),
                None => message.push_str(
                    "Nothing will be done to it while the enforcer runs in audit mode for this account.\n",
                ),
            },
            _ => message.push_str(&format!(
                "It was {} after its deadline.\n",
                after.auth_status.as_str().to_lowercase()
            )),
        }
        Some(Self {
            id: format!(
                "enforcement#{}#{}#{}",
                after.key(),
                event.as_str(),
                after.terminate_after.map_or(0, |t| t.timestamp())
            ),
            kind: Kind::Enforcement,
            event,
            account: after.account.clone(),
            region: after.region.clone(),
            resource_id: id.clone(),
            mode: after.deadline_mode.as_str().into(),
            deadline,
            subject: subject(&format!(
                "Unauthorised instance {}: {id} ({}, {})",
                event.title(),
                after.account,
                after.region
            )),
            message,
        })
    }
}

/// Where notices go (SNS in production). Sending is best effort for the caller: a decision is
/// already recorded when its notice is sent, and a failed send is reported, never undoes it.
pub trait Noticeboard: Send + Sync {
    fn publish(&self, notices: &[Notice]) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// No topic configured: nobody is told.
impl<N: Noticeboard> Noticeboard for Option<N> {
    async fn publish(&self, notices: &[Notice]) -> Result<(), AwsError> {
        match self {
            Some(board) => board.publish(notices).await,
            None => Ok(()),
        }
    }
}

fn kind_name(kind: WasteKind) -> &'static str {
    match kind {
        WasteKind::ElasticIp => "Elastic IP",
        WasteKind::EbsVolume => "EBS volume",
        WasteKind::EbsSnapshot => "EBS snapshot",
        WasteKind::Ami => "AMI",
        WasteKind::SwitchSource => "stopped switch source",
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%MZ").to_string()
}

fn subject(text: &str) -> String {
    text.chars().take(SUBJECT_LIMIT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
    }

    fn volume(status: WasteStatus) -> WasteRecord {
        WasteRecord {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            resource_id: "vol-0abc".into(),
            kind: WasteKind::EbsVolume,
            status,
            monthly_cost_usd: 8.0,
            size_gb: Some(100),
            reason: "unattached for 40 days".into(),
            first_seen: now() - TimeDelta::days(40),
            last_seen: now(),
            flagged_at: Some(now()),
            delete_after: (status == WasteStatus::ScheduledDelete)
                .then(|| now() + TimeDelta::days(7)),
            closed_at: None,
            backup_snapshot_id: None,
            version: 2,
        }
    }

    #[test]
    fn a_waste_status_change_tells_the_owner_once_with_the_date() {
        let detected = volume(WasteStatus::Detected);
        let scheduled = volume(WasteStatus::ScheduledDelete);
        let n = Notice::waste(Some(&detected), &scheduled, Mode::Live).unwrap();
        assert_eq!(n.event, Event::ScheduledDelete);
        assert!(
            n.message.contains("deleted after 2026-12-13T12:00Z"),
            "{}",
            n.message
        );
        assert!(n.message.contains("$8.00 a month"), "{}", n.message);
        assert!(n.subject.contains("vol-0abc") && n.subject.len() <= SUBJECT_LIMIT);
        let attributes = n.attributes();
        assert!(attributes.contains(&("account", "111122223333".into())));
        assert!(attributes.contains(&("kind", "waste".into())));
        assert!(attributes.contains(&("event", "scheduled_delete".into())));
        assert!(attributes.contains(&("deadline", "2026-12-13T12:00Z".into())));
        // The same status again (a re-run): nobody is told twice.
        assert_eq!(
            Notice::waste(Some(&scheduled), &scheduled, Mode::Live),
            None
        );
        // Detected and resolved are the scanner's business, not the owner's.
        assert_eq!(Notice::waste(None, &detected, Mode::Live), None);
        assert_eq!(
            Notice::waste(Some(&scheduled), &volume(WasteStatus::Resolved), Mode::Live),
            None
        );
    }

    #[test]
    fn a_flag_in_audit_mode_says_nothing_will_be_deleted() {
        let n = Notice::waste(None, &volume(WasteStatus::Flagged), Mode::Audit).unwrap();
        assert_eq!(n.event, Event::Flagged);
        assert_eq!(n.deadline, None);
        assert!(
            n.message.contains("Nothing will be deleted"),
            "{}",
            n.message
        );
        assert_eq!(n.mode, "audit");
    }

    #[test]
    fn a_deletion_names_the_backup() {
        let mut deleted = volume(WasteStatus::Deleted);
        deleted.backup_snapshot_id = Some("snap-0backup".into());
        let n = Notice::waste(
            Some(&volume(WasteStatus::ScheduledDelete)),
            &deleted,
            Mode::Live,
        )
        .unwrap();
        assert_eq!(n.event, Event::Deleted);
        assert!(n.message.contains("snap-0backup"), "{}", n.message);
    }

    fn instance(status: AuthStatus, mode: Mode) -> EnforcementRecord {
        EnforcementRecord {
            account: "111122223333".into(),
            region: "us-east-1".into(),
            instance_id: "i-0abc".into(),
            auth_status: status,
            flagged_at: Some(now()),
            terminate_after: Some(now() + TimeDelta::hours(24)),
            deadline_mode: mode,
            reason: "no CostCenter tag".into(),
            tags: Default::default(),
            decided_at: now(),
            version: 1,
        }
    }

    #[test]
    fn an_enforcement_flag_carries_its_deadline_in_live_mode_only() {
        let live = Notice::enforcement(None, &instance(AuthStatus::Flagged, Mode::Live)).unwrap();
        assert_eq!(live.deadline, Some(now() + TimeDelta::hours(24)));
        assert!(
            live.message.contains("after 2026-12-07T12:00Z"),
            "{}",
            live.message
        );
        let audit = Notice::enforcement(None, &instance(AuthStatus::Flagged, Mode::Audit)).unwrap();
        assert_eq!(audit.deadline, None);
        assert!(audit.message.contains("audit mode"), "{}", audit.message);
        let flagged = instance(AuthStatus::Flagged, Mode::Live);
        let done = Notice::enforcement(
            Some(&flagged),
            &instance(AuthStatus::Terminated, Mode::Live),
        )
        .unwrap();
        assert_eq!(done.event, Event::Enforced);
        assert!(done.message.contains("terminated"), "{}", done.message);
        assert_eq!(Notice::enforcement(Some(&flagged), &flagged), None);
        assert_eq!(
            Notice::enforcement(
                Some(&flagged),
                &instance(AuthStatus::Authorized, Mode::Live)
            ),
            None
        );
    }

    #[test]
    fn a_saga_notice_is_the_same_for_every_delivery() {
        let lines = vec!["moved 3.3.3.3 back to i-0src".to_owned()];
        let a = Notice::saga(
            Kind::Switch,
            Event::RolledBack,
            "switch-1",
            "111122223333",
            "us-east-1",
            "i-0src",
            "live",
            &lines,
        );
        let b = a.clone();
        assert_eq!(a.id, "switch#switch-1#rolled_back");
        assert_eq!(a, b);
        assert!(a.message.contains("- moved 3.3.3.3 back"), "{}", a.message);
        assert!(a.subject.starts_with("Switch to Spot rolled back: i-0src"));
    }
}
