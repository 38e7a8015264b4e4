//! The gatekeeper: every launch path asks it whether a pool is quarantined before launching there.

use chrono::{DateTime, Utc};

use crate::error::AwsError;
use crate::pool::PoolKey;
use crate::pool::quarantine::{QuarantineRecord, QuarantineStore, Write};

/// The gatekeeper's answer for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    Quarantined(Box<QuarantineRecord>),
}

impl Gate {
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open)
    }
}

/// Is `pool` quarantined at `now`? A record whose `expires_at` is at or before `now` is not a
/// quarantine, even though DynamoDB may keep the item for days after its TTL.
pub async fn check(
    store: &impl QuarantineStore,
    pool: &PoolKey,
    now: DateTime<Utc>,
) -> Result<Gate, AwsError> {
    Ok(match store.get(pool).await? {
        Some(record) if record.is_active(now) => Gate::Quarantined(Box::new(record)),
        _ => Gate::Open,
    })
}

/// Which of `pools` are quarantined at `now` (one batch read), with their records.
pub async fn quarantined_among(
    store: &impl QuarantineStore,
    pools: &[PoolKey],
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<PoolKey, QuarantineRecord>, AwsError> {
    Ok(store
        .get_many(pools)
        .await?
        .into_iter()
        .filter(|r| r.is_active(now))
        .map(|r| (r.pool.clone(), r))
        .collect())
}

/// Held pools, split by why: capacity holds (a short pass-over after a launch found no capacity)
/// and quarantines (an interruption or rebalance signal). Plans rank around both, and name only
/// the second `PoolQuarantined`.
pub fn split_holds(
    held: &std::collections::BTreeMap<PoolKey, QuarantineRecord>,
) -> (
    std::collections::BTreeSet<PoolKey>,
    std::collections::BTreeSet<PoolKey>,
) {
    let (short, long): (Vec<_>, Vec<_>) = held
        .values()
        .partition(|r| r.reason == crate::pool::signal::SignalKind::CapacityShortage);
    (
        short.iter().map(|r| r.pool.clone()).collect(),
        long.iter().map(|r| r.pool.clone()).collect(),
    )
}

/// Pools quarantined at `now`, soonest expiry first.
pub async fn active(
    store: &impl QuarantineStore,
    now: DateTime<Utc>,
) -> Result<Vec<QuarantineRecord>, AwsError> {
    let mut records: Vec<_> = store
        .all()
        .await?
        .into_iter()
        .filter(|r| r.is_active(now))
        .collect();
    records.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.pool.cmp(&b.pool)));
    Ok(records)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Released(Box<QuarantineRecord>),
    NotQuarantined,
}

/// Ends a pool's quarantine early, keeping the record (who, when) until its TTL removes it.
pub async fn release(
    store: &impl QuarantineStore,
    pool: &PoolKey,
    now: DateTime<Utc>,
    by: &str,
) -> Result<Release, AwsError> {
    // A signal may land between the read and the write; the version check catches it.
    for _ in 0..crate::MAX_WRITE_ATTEMPTS {
        let Gate::Quarantined(record) = check(store, pool, now).await? else {
            return Ok(Release::NotQuarantined);
        };
        let released = record.released(now, by);
        if store.put(&released).await? == Write::Written {
            return Ok(Release::Released(Box::new(released)));
        }
    }
    Err(crate::concurrent_update("release", pool))
}

/// Marks `pool` short of capacity for `policy.capacity` (a launch was just refused there), so
/// every launch path passes over it meanwhile. `event_id` makes a retried step's hold count once.
/// Best effort: returns whether the hold was written; a launch goes on to its next pool either way.
pub async fn hold_capacity(
    store: &impl QuarantineStore,
    pool: &PoolKey,
    event_id: String,
    (account, region, instance_id): (&str, &str, &str),
    policy: &crate::pool::quarantine::QuarantinePolicy,
    now: DateTime<Utc>,
) -> Result<bool, AwsError> {
    use crate::pool::quarantine::{Decision, decide};
    let signal = crate::pool::signal::Signal {
        event_id,
        kind: crate::pool::signal::SignalKind::CapacityShortage,
        account: account.to_owned(),
        region: region.to_owned(),
        time: now,
        instance_id: instance_id.to_owned(),
        instance_action: None,
    };
    for _ in 0..crate::MAX_WRITE_ATTEMPTS {
        let stored = store.get(pool).await?;
        let record = match decide(stored.as_ref(), pool, &signal, policy, now) {
            Decision::Quarantine(r) | Decision::Extend(r) => r,
            Decision::Duplicate(_) | Decision::Stale { .. } => return Ok(false),
        };
        match store.put(&record).await? {
            Write::Written => return Ok(true),
            Write::Conflict => continue,
        }
    }
    Err(crate::concurrent_update("PutItem", pool))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::quarantine::tests::{pool, signal, t};
    use crate::pool::quarantine::{Decision, QuarantinePolicy, decide};
    use crate::pool::signal::SignalKind;
    use crate::testing::MemoryStore;
    use chrono::TimeDelta;

    async fn quarantined_store() -> (MemoryStore, QuarantineRecord) {
        let store = MemoryStore::default();
        let s = signal("e1", SignalKind::InterruptionWarning, t(1, 0));
        let Decision::Quarantine(record) =
            decide(None, &pool(), &s, &QuarantinePolicy::default(), t(1, 0))
        else {
            panic!()
        };
        assert_eq!(store.put(&record).await.unwrap(), Write::Written);
        (store, record)
    }

    #[tokio::test]
    async fn quarantined_until_the_second_of_expiry() {
        let (store, record) = quarantined_store().await;
        let before = record.expires_at - TimeDelta::seconds(1);
        assert!(!check(&store, &pool(), before).await.unwrap().is_open());
        assert!(
            check(&store, &pool(), record.expires_at)
                .await
                .unwrap()
                .is_open()
        );
        let other = PoolKey::new("us-east-1", "use1-az1", "m5.large").unwrap();
        assert!(check(&store, &other, before).await.unwrap().is_open());
    }
}
