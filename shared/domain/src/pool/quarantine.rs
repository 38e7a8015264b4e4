//! The quarantine of a Spot pool: what a new signal does to it, and when it ends.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use std::future::Future;

use crate::error::AwsError;
use crate::pool::PoolKey;
use crate::pool::signal::{Signal, SignalKind};

/// 15 days, the default quarantine after a signal.
pub const DEFAULT_QUARANTINE: TimeDelta = TimeDelta::seconds(1_296_000);

/// 10 minutes, the default hold on a pool that had no capacity for a launch.
pub const DEFAULT_CAPACITY_HOLD: TimeDelta = TimeDelta::seconds(600);

/// How long the latest event ids are remembered per pool to drop duplicate deliveries.
pub const DEFAULT_DEDUPE_WINDOW: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinePolicy {
    pub interruption: TimeDelta,
    pub rebalance: TimeDelta,
    /// How long a pool that refused a launch for lack of capacity is passed over.
    pub capacity: TimeDelta,
    /// How many recent event ids a record keeps. EventBridge redelivers within hours, so a pool
    /// would need this many distinct signals in between for a redelivery to slip through.
    pub dedupe_window: usize,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            interruption: DEFAULT_QUARANTINE,
            rebalance: DEFAULT_QUARANTINE,
            capacity: DEFAULT_CAPACITY_HOLD,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
        }
    }
}

impl QuarantinePolicy {
    /// The policy of a launch step: the defaults, with the capacity hold from
    /// `CAPACITY_HOLD_SECONDS` (default 600, at least 1).
    pub fn for_launches<F: Fn(&str) -> Option<String>>(
        env: &crate::config::Env<F>,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            capacity: env.duration(
                crate::config::key::CAPACITY_HOLD_SECONDS,
                DEFAULT_CAPACITY_HOLD,
                TimeDelta::seconds(1),
                1,
            )?,
            ..Self::default()
        })
    }

    pub fn duration(&self, kind: SignalKind) -> TimeDelta {
        match kind {
            SignalKind::InterruptionWarning => self.interruption,
            SignalKind::RebalanceRecommendation => self.rebalance,
            SignalKind::CapacityShortage => self.capacity,
        }
    }
}

/// One quarantined (or formerly quarantined) pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineRecord {
    pub pool: PoolKey,
    /// The strongest signal seen during this quarantine.
    pub reason: SignalKind,
    /// Signals counted during this quarantine (duplicates excluded).
    pub interruptions: u32,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub last_event_id: String,
    /// Latest event ids, newest last, to recognise a redelivery.
    pub recent_event_ids: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub source_accounts: BTreeSet<String>,
    /// Optimistic-lock counter: a write succeeds only if the stored version is unchanged.
    pub version: u64,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

impl QuarantineRecord {
    /// Whether the pool is quarantined at `now`. DynamoDB removes expired items lazily (up to days
    /// later), so an item that is still there is not proof of a quarantine.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }

    /// Ends the quarantine early. The record stays (with who and when) until TTL removes it.
    pub fn released(&self, now: DateTime<Utc>, by: &str) -> Self {
        Self {
            expires_at: now,
            released_at: Some(now),
            released_by: Some(by.to_owned()),
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// What a signal does to a pool's quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The pool was not quarantined: start a quarantine.
    Quarantine(QuarantineRecord),
    /// The pool was quarantined: count the signal and push the end out if it is later.
    Extend(QuarantineRecord),
    /// This event was already counted.
    Duplicate(QuarantineRecord),
    /// The signal is so old that its quarantine would already be over.
    Stale { would_expire: DateTime<Utc> },
}

impl Decision {
    pub fn action(&self) -> &'static str {
        match self {
            Self::Quarantine(_) => "quarantined",
            Self::Extend(_) => "extended",
            Self::Duplicate(_) => "duplicate",
            Self::Stale { .. } => "stale",
        }
    }
}

/// Applies `signal` to the pool's stored record (if any) at `now`.
pub fn decide(
    stored: Option<&QuarantineRecord>,
    pool: &PoolKey,
    signal: &Signal,
    policy: &QuarantinePolicy,
    now: DateTime<Utc>,
) -> Decision {
    if let Some(record) = stored
        && record.recent_event_ids.contains(&signal.event_id)
    {
        return Decision::Duplicate(record.clone());
    }
    let would_expire = signal.time + policy.duration(signal.kind);
    if would_expire <= now {
        return Decision::Stale { would_expire };
    }
    let mut recent_event_ids = stored.map_or_else(Vec::new, |r| r.recent_event_ids.clone());
    recent_event_ids.push(signal.event_id.clone());
    let overflow = recent_event_ids
        .len()
        .saturating_sub(policy.dedupe_window.max(1));
    recent_event_ids.drain(..overflow);
    let version = stored.map_or(1, |r| r.version + 1);

    match stored.filter(|r| r.is_active(now)) {
        Some(active) => {
            let mut source_accounts = active.source_accounts.clone();
            source_accounts.insert(signal.account.clone());
            Decision::Extend(QuarantineRecord {
                pool: pool.clone(),
                reason: active.reason.max(signal.kind),
                interruptions: active.interruptions.saturating_add(1),
                first_seen: active.first_seen.min(signal.time),
                last_seen: active.last_seen.max(signal.time),
                last_event_id: signal.event_id.clone(),
                recent_event_ids,
                expires_at: active.expires_at.max(would_expire),
                source_accounts,
                version,
                released_at: None,
                released_by: None,
            })
        }
        // Never quarantined, or the last quarantine expired or was released: a fresh one.
        None => Decision::Quarantine(QuarantineRecord {
            pool: pool.clone(),
            reason: signal.kind,
            interruptions: 1,
            first_seen: signal.time,
            last_seen: signal.time,
            last_event_id: signal.event_id.clone(),
            recent_event_ids,
            expires_at: would_expire,
            source_accounts: BTreeSet::from([signal.account.clone()]),
            version,
            released_at: None,
            released_by: None,
        }),
    }
}

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Written,
    /// Someone else changed the item since it was read; read again and decide again.
    Conflict,
}

/// The shared table of pool quarantines.
pub trait QuarantineStore: Send + Sync {
    /// A strongly consistent read of one pool's record, active or not.
    fn get(
        &self,
        pool: &PoolKey,
    ) -> impl Future<Output = Result<Option<QuarantineRecord>, AwsError>> + Send;

    /// Writes `record` only if the stored version is `record.version - 1` (absent for version 1).
    fn put(
        &self,
        record: &QuarantineRecord,
    ) -> impl Future<Output = Result<Write, AwsError>> + Send;

    /// Every record in the table, active or not.
    fn all(&self) -> impl Future<Output = Result<Vec<QuarantineRecord>, AwsError>> + Send;

    /// The records of `pools` that exist (batched reads).
    fn get_many(
        &self,
        pools: &[PoolKey],
    ) -> impl Future<Output = Result<Vec<QuarantineRecord>, AwsError>> + Send;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    pub fn pool() -> PoolKey {
        PoolKey::new("us-east-1", "use1-az4", "m5.large").unwrap()
    }

    pub fn signal(id: &str, kind: SignalKind, at: DateTime<Utc>) -> Signal {
        Signal {
            event_id: id.into(),
            kind,
            account: "123456789012".into(),
            region: "us-east-1".into(),
            time: at,
            instance_id: "i-0abc".into(),
            instance_action: None,
        }
    }

    fn record_of(decision: Decision) -> QuarantineRecord {
        match decision {
            Decision::Quarantine(r) | Decision::Extend(r) | Decision::Duplicate(r) => r,
            Decision::Stale { .. } => panic!("stale"),
        }
    }

    #[test]
    fn first_signal_quarantines_for_fifteen_days_from_the_event_time() {
        // GIVEN no record WHEN an interruption warning arrives
        let s = signal("e1", SignalKind::InterruptionWarning, t(1, 10));
        let d = decide(None, &pool(), &s, &QuarantinePolicy::default(), t(1, 10));
        // THEN a new quarantine ends exactly 1,296,000 s after the event
        assert_eq!(d.action(), "quarantined");
        let r = record_of(d);
        assert_eq!(r.expires_at.timestamp() - t(1, 10).timestamp(), 1_296_000);
        assert_eq!(r.interruptions, 1);
        assert_eq!(r.first_seen, t(1, 10));
        assert_eq!(r.last_event_id, "e1");
        assert_eq!(r.version, 1);
        assert_eq!(r.source_accounts, BTreeSet::from(["123456789012".into()]));
    }

    #[test]
    fn each_signal_kind_uses_its_own_duration() {
        let policy = QuarantinePolicy {
            rebalance: TimeDelta::hours(6),
            ..QuarantinePolicy::default()
        };
        let s = signal("e1", SignalKind::RebalanceRecommendation, t(1, 10));
        let r = record_of(decide(None, &pool(), &s, &policy, t(1, 10)));
        assert_eq!(r.expires_at, t(1, 16));
        assert_eq!(r.reason, SignalKind::RebalanceRecommendation);
    }

    #[test]
    fn a_new_signal_extends_an_active_quarantine_and_counts() {
        let policy = QuarantinePolicy::default();
        let first = record_of(decide(
            None,
            &pool(),
            &signal("e1", SignalKind::RebalanceRecommendation, t(1, 10)),
            &policy,
            t(1, 10),
        ));
        let mut second = signal("e2", SignalKind::InterruptionWarning, t(3, 10));
        second.account = "222222222222".into();
        let d = decide(Some(&first), &pool(), &second, &policy, t(3, 10));
        assert_eq!(d.action(), "extended");
        let r = record_of(d);
        assert_eq!(r.interruptions, 2);
        assert_eq!(r.expires_at, t(3, 10) + DEFAULT_QUARANTINE);
        assert_eq!(r.first_seen, t(1, 10));
        assert_eq!(r.last_seen, t(3, 10));
        assert_eq!(r.reason, SignalKind::InterruptionWarning);
        assert_eq!(r.version, 2);
        assert_eq!(r.recent_event_ids, vec!["e1", "e2"]);
        assert_eq!(r.source_accounts.len(), 2);
    }

    #[test]
    fn a_late_older_signal_counts_but_never_shortens_the_quarantine() {
        let policy = QuarantinePolicy::default();
        let newer = record_of(decide(
            None,
            &pool(),
            &signal("new", SignalKind::InterruptionWarning, t(5, 0)),
            &policy,
            t(5, 0),
        ));
        let older = signal("old", SignalKind::RebalanceRecommendation, t(4, 0));
        let r = record_of(decide(Some(&newer), &pool(), &older, &policy, t(5, 1)));
        assert_eq!(r.interruptions, 2);
        assert_eq!(r.expires_at, newer.expires_at);
        assert_eq!(r.last_seen, t(5, 0));
        assert_eq!(r.first_seen, t(4, 0));
        assert_eq!(r.reason, SignalKind::InterruptionWarning);
    }

    #[test]
    fn a_redelivered_event_is_a_duplicate_even_after_other_events() {
        let policy = QuarantinePolicy::default();
        let s1 = signal("e1", SignalKind::InterruptionWarning, t(1, 0));
        let r1 = record_of(decide(None, &pool(), &s1, &policy, t(1, 0)));
        let r2 = record_of(decide(
            Some(&r1),
            &pool(),
            &signal("e2", SignalKind::InterruptionWarning, t(1, 1)),
            &policy,
            t(1, 1),
        ));
        let d = decide(Some(&r2), &pool(), &s1, &policy, t(1, 2));
        assert_eq!(d.action(), "duplicate");
        assert_eq!(record_of(d), r2, "a duplicate changes nothing");
    }

    #[test]
    fn the_dedupe_window_keeps_the_newest_ids() {
        let policy = QuarantinePolicy {
            dedupe_window: 2,
            ..QuarantinePolicy::default()
        };
        let mut record = None;
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let s = signal(id, SignalKind::InterruptionWarning, t(1, i as u32));
            record = Some(record_of(decide(
                record.as_ref(),
                &pool(),
                &s,
                &policy,
                t(1, i as u32),
            )));
        }
        assert_eq!(record.unwrap().recent_event_ids, vec!["b", "c"]);
    }

    #[test]
    fn an_expired_record_still_in_the_table_starts_a_fresh_quarantine() {
        let policy = QuarantinePolicy::default();
        let old = record_of(decide(
            None,
            &pool(),
            &signal("e1", SignalKind::InterruptionWarning, t(1, 0)),
            &policy,
            t(1, 0),
        ));
        // 16 days later, DynamoDB has not yet deleted the item.
        let later = old.expires_at + TimeDelta::days(1);
        let d = decide(
            Some(&old),
            &pool(),
            &signal("e2", SignalKind::RebalanceRecommendation, later),
            &policy,
            later,
        );
        assert_eq!(d.action(), "quarantined");
        let r = record_of(d);
        assert_eq!(r.interruptions, 1);
        assert_eq!(r.first_seen, later);
        assert_eq!(r.reason, SignalKind::RebalanceRecommendation);
        assert_eq!(
            r.version,
            old.version + 1,
            "the write must replace the old item"
        );
        assert_eq!(r.recent_event_ids, vec!["e1", "e2"]);
    }

    #[test]
    fn a_released_pool_is_quarantined_again_by_a_new_signal_but_not_by_a_redelivery() {
        let policy = QuarantinePolicy::default();
        let s1 = signal("e1", SignalKind::InterruptionWarning, t(1, 0));
        let released =
            record_of(decide(None, &pool(), &s1, &policy, t(1, 0))).released(t(2, 0), "ops");
        assert!(!released.is_active(t(2, 0)));
        assert_eq!(
            decide(Some(&released), &pool(), &s1, &policy, t(2, 1)).action(),
            "duplicate"
        );
        let s2 = signal("e2", SignalKind::InterruptionWarning, t(2, 1));
        let r = record_of(decide(Some(&released), &pool(), &s2, &policy, t(2, 1)));
        assert_eq!(r.released_at, None);
        assert!(r.is_active(t(2, 1)));
    }

    #[test]
    fn a_signal_whose_quarantine_would_be_over_is_stale() {
        let policy = QuarantinePolicy::default();
        let s = signal("e1", SignalKind::InterruptionWarning, t(1, 0));
        let now = t(1, 0) + DEFAULT_QUARANTINE;
        assert!(matches!(
            decide(None, &pool(), &s, &policy, now),
            Decision::Stale { .. }
        ));
        let just_before = now - TimeDelta::seconds(1);
        assert_eq!(
            decide(None, &pool(), &s, &policy, just_before).action(),
            "quarantined"
        );
    }

    #[test]
    fn active_means_strictly_before_expiry() {
        let r = record_of(decide(
            None,
            &pool(),
            &signal("e1", SignalKind::InterruptionWarning, t(1, 0)),
            &QuarantinePolicy::default(),
            t(1, 0),
        ));
        assert!(r.is_active(r.expires_at - TimeDelta::seconds(1)));
        assert!(!r.is_active(r.expires_at));
        assert!(!r.is_active(r.expires_at + TimeDelta::seconds(1)));
    }
}
