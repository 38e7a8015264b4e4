//! The approval gate both sagas pause on: what the state machine hands the approval step, and the
//! pending request an operator answers (`APPROVALS_TABLE`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::saga::step::Risk;

/// Which saga asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Saga {
    AtomicSwitch,
    AsgSwap,
}

impl fmt::Display for Saga {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AtomicSwitch => "AtomicSwitch",
            Self::AsgSwap => "AsgSwap",
        })
    }
}

/// What the approval step is given: built by the state machine's `Parameters`, so every saga
/// shares one approval function and table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// The execution name (the switch or swap id).
    pub execution: String,
    pub token: String,
    pub saga: Saga,
    pub account_id: String,
    pub region: String,
    /// What would change: an instance id, or `asg/<name>`.
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub summary: String,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    /// Nobody answered before the timeout.
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Expired => "EXPIRED",
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("approval status `{s}` is unknown"))
    }
}

/// A pending approval (`APPROVALS_TABLE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The execution name (the switch or swap id).
    pub saga_id: String,
    pub saga: Saga,
    pub task_token: String,
    pub account_id: String,
    pub region: String,
    pub target: String,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// One line: from → to, saving.
    pub summary: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: ApprovalStatus,
    pub answered_by: Option<String>,
    /// Why it was answered so (an operator's reason, or `timed out`).
    #[serde(default)]
    pub answer_note: Option<String>,
    /// The SHA-256 digests of the approve and reject links' tokens (the tokens themselves are
    /// only in the operators' notice): a link is good only if its token hashes to these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_digests: Option<LinkDigests>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDigests {
    pub approve: String,
    pub reject: String,
}

/// What an approval link asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(Self::Approve),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    pub fn status(self) -> ApprovalStatus {
        match self {
            Self::Approve => ApprovalStatus::Approved,
            Self::Reject => ApprovalStatus::Rejected,
        }
    }
}

/// A link token: 32 random bytes, hex. Only its digest is stored.
pub fn token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a link may do, judged on the stored request before anything is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Good: answer the saga so.
    Answer(ApprovalStatus),
    /// No such request, no links for it, or a token that is not its own: nothing changes.
    Forged,
    /// The request's time is over: nothing changes (the timeout rejects it).
    Expired,
    /// Answered already (by a link or an operator): a replay changes nothing.
    Answered(ApprovalStatus),
}

pub fn judge(
    request: Option<&ApprovalRequest>,
    decision: Decision,
    token: &str,
    now: DateTime<Utc>,
) -> LinkVerdict {
    let Some(request) = request else {
        return LinkVerdict::Forged;
    };
    let Some(digests) = &request.link_digests else {
        return LinkVerdict::Forged;
    };
    let expected = match decision {
        Decision::Approve => &digests.approve,
        Decision::Reject => &digests.reject,
    };
    let well_formed = token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit());
    // Digests compared, never the token: no timing tells how much of a guess was right.
    if !well_formed || token_digest(token) != *expected {
        return LinkVerdict::Forged;
    }
    if request.status != ApprovalStatus::Pending {
        return LinkVerdict::Answered(request.status);
    }
    if request.expires_at <= now {
        return LinkVerdict::Expired;
    }
    LinkVerdict::Answer(decision.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn pending(approve: &str, reject: &str) -> ApprovalRequest {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        ApprovalRequest {
            saga_id: "sw-1".into(),
            saga: Saga::AtomicSwitch,
            task_token: "task".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            target: "i-0abc".into(),
            risk: Risk::High,
            reasons: vec![],
            summary: String::new(),
            requested_at: now,
            expires_at: now + TimeDelta::hours(1),
            status: ApprovalStatus::Pending,
            answered_by: None,
            answer_note: None,
            link_digests: Some(LinkDigests {
                approve: token_digest(approve),
                reject: token_digest(reject),
            }),
        }
    }

    #[test]
    fn a_link_answers_only_with_its_own_token_once_and_in_time() {
        let (a, r) = ("a".repeat(64), "b".repeat(64));
        let request = pending(&a, &r);
        let now = request.requested_at + TimeDelta::minutes(5);
        let verdict = |req: Option<&ApprovalRequest>, d, t: &str, at| judge(req, d, t, at);
        assert_eq!(
            verdict(Some(&request), Decision::Approve, &a, now),
            LinkVerdict::Answer(ApprovalStatus::Approved)
        );
        assert_eq!(
            verdict(Some(&request), Decision::Reject, &r, now),
            LinkVerdict::Answer(ApprovalStatus::Rejected)
        );
        // The reject token does not approve, nor a made-up one, nor any for an unknown saga.
        assert_eq!(
            verdict(Some(&request), Decision::Approve, &r, now),
            LinkVerdict::Forged
        );
        assert_eq!(
            verdict(Some(&request), Decision::Approve, "c", now),
            LinkVerdict::Forged
        );
        assert_eq!(
            verdict(None, Decision::Approve, &a, now),
            LinkVerdict::Forged
        );
        let late = request.expires_at;
        assert_eq!(
            verdict(Some(&request), Decision::Approve, &a, late),
            LinkVerdict::Expired
        );
        let mut answered = request.clone();
        answered.status = ApprovalStatus::Rejected;
        assert_eq!(
            verdict(Some(&answered), Decision::Approve, &a, now),
            LinkVerdict::Answered(ApprovalStatus::Rejected)
        );
        let mut linkless = request;
        linkless.link_digests = None;
        assert_eq!(
            verdict(Some(&linkless), Decision::Approve, &a, now),
            LinkVerdict::Forged
        );
    }
}
