//! Security enforcement: running instances without an authorising tag are flagged, and only
//! terminated (or stopped) after a grace period, in live mode.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::governance::mode::Mode;
use crate::tags::{EXEMPT_TAG, Tags};

pub use crate::tags::UNAUTHORIZED_TAG;

/// One authorising rule: a tag key with a given value, or a tag key with any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagRule {
    KeyValue(String, String),
    Key(String),
}

impl fmt::Display for TagRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyValue(k, v) => write!(f, "{k}={v}"),
            Self::Key(k) => f.write_str(k),
        }
    }
}

/// The authorising tags (env `AUTHORIZED_TAGS`): an instance carrying any of them is authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedTags(pub Vec<TagRule>);

impl Default for AuthorizedTags {
    fn default() -> Self {
        "ManagedBy=SpotOptimizer,aws:autoscaling:groupName,eks:cluster-name"
            .parse()
            .unwrap_or(Self(Vec::new()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("AUTHORIZED_TAGS: `{0}` is not `key` or `key=value`")]
pub struct TagRuleError(pub String);

impl FromStr for AuthorizedTags {
    type Err = TagRuleError;

    /// `ManagedBy=SpotOptimizer,aws:autoscaling:groupName,eks:cluster-name`
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rules = s
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|rule| match rule.split_once('=') {
                Some((k, _)) if k.trim().is_empty() => Err(TagRuleError(rule.to_owned())),
                Some((k, v)) => Ok(TagRule::KeyValue(k.trim().to_owned(), v.trim().to_owned())),
                None => Ok(TagRule::Key(rule.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err(TagRuleError(s.to_owned()));
        }
        Ok(Self(rules))
    }
}

impl AuthorizedTags {
    /// The first rule `tags` satisfy.
    pub fn authorising(&self, tags: &Tags) -> Option<&TagRule> {
        self.0.iter().find(|rule| match rule {
            TagRule::KeyValue(k, v) => tags.get(k) == Some(v),
            TagRule::Key(k) => tags.contains_key(k),
        })
    }
}

/// A running or pending instance, as the adapter reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub instance_id: String,
    pub state: String,
    pub instance_type: String,
    pub launch_time: Option<DateTime<Utc>>,
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthStatus {
    /// Carries an authorising tag (or is exempt) after having been flagged.
    Authorized,
    /// Unauthorised, but its termination (or stop) protection forbids enforcement: reported, never forced.
    Unauthorized,
    /// Unauthorised, tagged with its deadline.
    Flagged,
    Terminated,
    Stopped,
}

impl AuthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "AUTHORIZED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Flagged => "FLAGGED",
            Self::Terminated => "TERMINATED",
            Self::Stopped => "STOPPED",
        }
    }
}

/// What enforcement does at the deadline (env `ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforceAction {
    #[default]
    Terminate,
    Stop,
}

impl FromStr for EnforceAction {
    type Err = TagRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "terminate" => Ok(Self::Terminate),
            "stop" => Ok(Self::Stop),
            _ => Err(TagRuleError(format!("ACTION={s} (terminate or stop)"))),
        }
    }
}

impl EnforceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminate => "terminate",
            Self::Stop => "stop",
        }
    }

    pub fn status(self) -> AuthStatus {
        match self {
            Self::Terminate => AuthStatus::Terminated,
            Self::Stop => AuthStatus::Stopped,
        }
    }
}

/// One instance in the enforcement table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnforcementRecord {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub auth_status: AuthStatus,
    pub flagged_at: Option<DateTime<Utc>>,
    pub terminate_after: Option<DateTime<Utc>>,
    /// The mode in which the deadline was set: a deadline announced in audit mode is not enforced.
    pub deadline_mode: Mode,
    pub reason: String,
    /// The instance's tags when this decision was taken.
    pub tags: Tags,
    pub decided_at: DateTime<Utc>,
    pub version: u64,
}

impl EnforcementRecord {
    pub fn key(&self) -> String {
        crate::governance::waste::record_key(&self.account, &self.region, &self.instance_id)
    }

    /// The value of [`UNAUTHORIZED_TAG`] while flagged.
    pub fn tag_value(&self, action: EnforceAction) -> String {
        let deadline = self
            .terminate_after
            .map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string())
            .unwrap_or_default();
        match self.deadline_mode {
            Mode::Live => format!(
                "no authorising tag; will {} after {deadline} unless tagged (or tagged {EXEMPT_TAG})",
                action.as_str()
            ),
            Mode::Audit => format!(
                "no authorising tag; audit mode, nothing will be done (deadline would be {deadline})"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    Tag(String),
    Untag,
    /// Terminate or stop (audit item first); the step's record says which and is written after.
    Enforce(EnforceAction),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub record: Option<EnforcementRecord>,
    pub effect: Effect,
}

#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub mode: Mode,
    pub authorized: &'a AuthorizedTags,
    pub grace: TimeDelta,
    pub action: EnforceAction,
    pub now: DateTime<Utc>,
}

/// One running or pending instance in one run.
pub fn step(stored: Option<&EnforcementRecord>, instance: &Instance, scope: &Scope<'_>) -> Step {
    let now = scope.now;
    let flagged = stored.filter(|r| {
        matches!(
            r.auth_status,
            AuthStatus::Flagged | AuthStatus::Unauthorized
        )
    });
    let allowed = if instance.tags.contains_key(EXEMPT_TAG) {
        Some(format!("exempt ({EXEMPT_TAG})"))
    } else if let Some(tag) = crate::tags::cluster_tag(&instance.tags) {
        // The same rule the router and the switch apply: a cluster's autoscaler owns it.
        Some(format!("managed by a Kubernetes cluster (tag {tag})"))
    } else {
        scope
            .authorized
            .authorising(&instance.tags)
            .map(|rule| format!("authorised by tag {rule}"))
    };
    let record =
        |status, reason: String, flagged_at, terminate_after, deadline_mode| EnforcementRecord {
            account: scope.account.to_owned(),
            region: scope.region.to_owned(),
            instance_id: instance.instance_id.clone(),
            auth_status: status,
            flagged_at,
            terminate_after,
            deadline_mode,
            reason,
            tags: instance.tags.clone(),
            decided_at: now,
            version: stored.map_or(1, |r| r.version + 1),
        };

    match (allowed, flagged) {
        // Authorised since it was flagged: clear the flag.
        (Some(reason), Some(_)) => Step {
            record: Some(record(
                AuthStatus::Authorized,
                reason,
                None,
                None,
                scope.mode,
            )),
            effect: Effect::Untag,
        },
        (Some(_), None) => Step {
            record: None,
            effect: Effect::None,
        },
        (None, None) => {
            let r = record(
                AuthStatus::Flagged,
                format!("no authorising tag ({})", describe(scope.authorized)),
                Some(now),
                Some(now + scope.grace),
                scope.mode,
            );
            let tag = r.tag_value(scope.action);
            Step {
                record: Some(r),
                effect: Effect::Tag(tag),
            }
        }
        // No deadline on record (an item this version did not write), or enforcement was refused
        // because the instance was protected: announce again, with a full grace, so the owner
        // always has one between the notice and the action (never fail open).
        (None, Some(r))
            if r.terminate_after.is_none() || r.auth_status == AuthStatus::Unauthorized =>
        {
            let r = record(
                AuthStatus::Flagged,
                format!("no authorising tag ({})", describe(scope.authorized)),
                r.flagged_at.or(Some(now)),
                Some(now + scope.grace),
                scope.mode,
            );
            let tag = r.tag_value(scope.action);
            Step {
                record: Some(r),
                effect: Effect::Tag(tag),
            }
        }
        (None, Some(r)) => {
            let deadline = r.terminate_after.unwrap_or(now + scope.grace);
            match scope.mode {
                // A deadline announced in audit mode is announced again, with a full grace.
                Mode::Live if r.deadline_mode == Mode::Audit => {
                    let r = record(
                        AuthStatus::Flagged,
                        r.reason.clone(),
                        r.flagged_at,
                        Some(now + scope.grace),
                        Mode::Live,
                    );
                    let tag = r.tag_value(scope.action);
                    Step {
                        record: Some(r),
                        effect: Effect::Tag(tag),
                    }
                }
                Mode::Live if deadline <= now => Step {
                    record: Some(record(
                        scope.action.status(),
                        format!(
                            "{}: no authorising tag at the deadline {}",
                            scope.action.status().as_str().to_lowercase(),
                            deadline.format("%Y-%m-%dT%H:%MZ")
                        ),
                        r.flagged_at,
                        r.terminate_after,
                        Mode::Live,
                    )),
                    effect: Effect::Enforce(scope.action),
                },
                Mode::Audit if r.deadline_mode == Mode::Live => {
                    let r = record(
                        AuthStatus::Flagged,
                        r.reason.clone(),
                        r.flagged_at,
                        r.terminate_after,
                        Mode::Audit,
                    );
                    let tag = r.tag_value(scope.action);
                    Step {
                        record: Some(r),
                        effect: Effect::Tag(tag),
                    }
                }
                _ => Step {
                    record: None,
                    effect: Effect::None,
                },
            }
        }
    }
}

/// The record after enforcement was refused because the instance is protected.
pub fn protected(record: &EnforcementRecord, why: &str) -> EnforcementRecord {
    EnforcementRecord {
        auth_status: AuthStatus::Unauthorized,
        reason: format!("not enforced: {why}"),
        ..record.clone()
    }
}

fn describe(tags: &AuthorizedTags) -> String {
    tags.0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn instance(tags: &[(&str, &str)]) -> Instance {
        Instance {
            instance_id: "i-0abc".into(),
            state: "running".into(),
            instance_type: "m5.large".into(),
            launch_time: Some(now()),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    fn scope(mode: Mode, at: DateTime<Utc>, authorized: &AuthorizedTags) -> Scope<'_> {
        Scope {
            account: "111111111111",
            region: "us-east-1",
            mode,
            authorized,
            grace: TimeDelta::hours(24),
            action: EnforceAction::Terminate,
            now: at,
        }
    }

    #[test]
    fn default_authorising_tags_match_key_value_or_key() {
        let tags = AuthorizedTags::default();
        assert!(
            tags.authorising(&instance(&[("ManagedBy", "SpotOptimizer")]).tags)
                .is_some()
        );
        assert!(
            tags.authorising(&instance(&[("ManagedBy", "Terraform")]).tags)
                .is_none()
        );
        assert!(
            tags.authorising(&instance(&[("aws:autoscaling:groupName", "web")]).tags)
                .is_some()
        );
        assert!(
            tags.authorising(&instance(&[("eks:cluster-name", "prod")]).tags)
                .is_some()
        );
        assert!(tags.authorising(&instance(&[("Name", "x")]).tags).is_none());
        assert!("".parse::<AuthorizedTags>().is_err());
        assert!("=x".parse::<AuthorizedTags>().is_err());
        assert_eq!(
            "Owner, Team=core".parse::<AuthorizedTags>().unwrap(),
            AuthorizedTags(vec![
                TagRule::Key("Owner".into()),
                TagRule::KeyValue("Team".into(), "core".into())
            ])
        );
    }

    #[test]
    fn an_unauthorised_instance_is_flagged_with_a_deadline_tag() {
        let tags = AuthorizedTags::default();
        let s = step(
            None,
            &instance(&[("Name", "rogue")]),
            &scope(Mode::Live, now(), &tags),
        );
        let r = s.record.unwrap();
        assert_eq!(r.auth_status, AuthStatus::Flagged);
        assert_eq!(r.terminate_after, Some(now() + TimeDelta::hours(24)));
        assert!(
            matches!(s.effect, Effect::Tag(v) if v.contains("will terminate after 2026-11-23T12:00Z"))
        );
    }

    #[test]
    fn enforcement_waits_for_the_full_grace_23_vs_25_hours() {
        let tags = AuthorizedTags::default();
        let i = instance(&[]);
        let flagged = step(None, &i, &scope(Mode::Live, now(), &tags))
            .record
            .unwrap();
        let at_23 = step(
            Some(&flagged),
            &i,
            &scope(Mode::Live, now() + TimeDelta::hours(23), &tags),
        );
        assert_eq!(at_23.effect, Effect::None);
        assert_eq!(at_23.record, None);
        let at_25 = step(
            Some(&flagged),
            &i,
            &scope(Mode::Live, now() + TimeDelta::hours(25), &tags),
        );
        assert_eq!(at_25.effect, Effect::Enforce(EnforceAction::Terminate));
        assert_eq!(at_25.record.unwrap().auth_status, AuthStatus::Terminated);
    }

    #[test]
    fn audit_mode_never_enforces_and_a_later_live_mode_restarts_the_grace() {
        let tags = AuthorizedTags::default();
        let i = instance(&[]);
        let flagged = step(None, &i, &scope(Mode::Audit, now(), &tags))
            .record
            .unwrap();
        let later = now() + TimeDelta::hours(100);
        assert_eq!(
            step(Some(&flagged), &i, &scope(Mode::Audit, later, &tags)).effect,
            Effect::None
        );
        let live = step(Some(&flagged), &i, &scope(Mode::Live, later, &tags));
        let r = live.record.unwrap();
        assert_eq!(r.terminate_after, Some(later + TimeDelta::hours(24)));
        assert_eq!(r.deadline_mode, Mode::Live);
        assert!(matches!(live.effect, Effect::Tag(_)));
    }

    #[test]
    fn adding_an_authorising_tag_or_the_exemption_clears_the_flag() {
        let tags = AuthorizedTags::default();
        let flagged = step(None, &instance(&[]), &scope(Mode::Live, now(), &tags))
            .record
            .unwrap();
        for fixed in [
            instance(&[("ManagedBy", "SpotOptimizer")]),
            instance(&[(EXEMPT_TAG, "")]),
        ] {
            let s = step(
                Some(&flagged),
                &fixed,
                &scope(Mode::Live, now() + TimeDelta::hours(30), &tags),
            );
            assert_eq!(s.effect, Effect::Untag);
            assert_eq!(s.record.unwrap().auth_status, AuthStatus::Authorized);
        }
    }

    #[test]
    fn authorised_and_exempt_instances_never_flagged_nor_stored() {
        let tags = AuthorizedTags::default();
        for i in [
            instance(&[("eks:cluster-name", "c")]),
            instance(&[(EXEMPT_TAG, "yes")]),
        ] {
            let s = step(None, &i, &scope(Mode::Live, now(), &tags));
            assert_eq!((s.record, s.effect), (None, Effect::None));
        }
    }

    #[test]
    fn stop_action_records_stopped() {
        let tags = AuthorizedTags::default();
        let mut sc = scope(Mode::Live, now(), &tags);
        sc.action = EnforceAction::Stop;
        let i = instance(&[]);
        let flagged = step(None, &i, &sc).record.unwrap();
        sc.now = now() + TimeDelta::hours(25);
        let s = step(Some(&flagged), &i, &sc);
        assert_eq!(s.effect, Effect::Enforce(EnforceAction::Stop));
        assert_eq!(s.record.unwrap().auth_status, AuthStatus::Stopped);
    }

    #[test]
    fn a_protected_instance_is_reported_and_announced_again_never_forced() {
        let tags = AuthorizedTags::default();
        let i = instance(&[]);
        let flagged = step(None, &i, &scope(Mode::Live, now(), &tags))
            .record
            .unwrap();
        let refused = protected(&flagged, "termination protection");
        assert_eq!(refused.auth_status, AuthStatus::Unauthorized);
        let next = step(
            Some(&refused),
            &i,
            &scope(Mode::Live, now() + TimeDelta::hours(26), &tags),
        );
        // Its protection may be lifted at any time: it gets a full grace from now, announced.
        assert!(matches!(next.effect, Effect::Tag(_)), "{:?}", next.effect);
        assert_eq!(next.record.unwrap().auth_status, AuthStatus::Flagged);
    }

    #[test]
    fn a_missing_deadline_or_a_lifted_protection_gets_a_fresh_grace_never_enforcement() {
        let authorized = AuthorizedTags::default();
        let bare = instance(&[]);
        let hours = |h: i64| now() + TimeDelta::hours(h);
        let live = scope(Mode::Live, now(), &authorized);
        let mut flagged = step(None, &bare, &live).record.unwrap();
        // An item without a deadline, past any grace: announced again, not enforced.
        flagged.terminate_after = None;
        let later = scope(Mode::Live, hours(100), &authorized);
        let again = step(Some(&flagged), &bare, &later);
        assert!(matches!(again.effect, Effect::Tag(_)), "{:?}", again.effect);
        let r = again.record.unwrap();
        assert_eq!(r.terminate_after, Some(hours(124)));
        // Enforcement refused for protection; the protection is lifted a week later: a new
        // deadline, announced, not an immediate termination.
        let refused = protected(&r, "termination protection");
        let lifted = scope(Mode::Live, hours(300), &authorized);
        let next = step(Some(&refused), &bare, &lifted);
        assert!(matches!(next.effect, Effect::Tag(_)), "{:?}", next.effect);
        assert_eq!(next.record.unwrap().terminate_after, Some(hours(324)));
    }

    #[test]
    fn kubernetes_nodes_are_authorised_by_the_same_rule_the_router_applies() {
        let authorized = AuthorizedTags::default();
        for tag in [
            "karpenter.sh/nodepool",
            "kubernetes.io/cluster/prod",
            "eks:cluster-name",
        ] {
            let node = instance(&[(tag, "owned")]);
            let decided = step(None, &node, &scope(Mode::Live, now(), &authorized));
            assert_eq!(decided.effect, Effect::None, "{tag}");
            assert!(decided.record.is_none(), "{tag}");
        }
    }
}
