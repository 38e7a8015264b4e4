//! The gatekeeper and early release, over the DynamoDB adapter against the bed.

use anyhow::Result;
use chrono::{TimeDelta, TimeZone, Utc};
use spot_aws::QuarantineTable;
use spot_domain::pool::gatekeeper::{self, Gate, Release};
use spot_domain::pool::quarantine::decide;
use spot_domain::pool::quarantine::{QuarantineStore, Write};
use spot_domain::{Decision, PoolKey, QuarantinePolicy, QuarantineRecord, Signal, SignalKind};
use testbed::Bed;

async fn store(label: &str) -> Result<QuarantineTable> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables(label).await?;
    Ok(QuarantineTable::new(
        bed.dynamodb(),
        tables.name("QuarantineTable"),
    ))
}

fn signal(id: &str, at: chrono::DateTime<Utc>) -> Signal {
    Signal {
        event_id: id.into(),
        kind: SignalKind::InterruptionWarning,
        account: "123456789012".into(),
        region: "us-east-1".into(),
        time: at,
        instance_id: "i-0123456789abcdef0".into(),
        instance_action: Some("terminate".into()),
    }
}

async fn quarantine(
    store: &QuarantineTable,
    pool: &PoolKey,
    at: chrono::DateTime<Utc>,
) -> Result<QuarantineRecord> {
    let stored = store.get(pool).await?;
    let (Decision::Quarantine(record) | Decision::Extend(record)) = decide(
        stored.as_ref(),
        pool,
        &signal(&format!("e-{at}"), at),
        &QuarantinePolicy::default(),
        at,
    ) else {
        anyhow::bail!("not a quarantine");
    };
    assert_eq!(store.put(&record).await?, Write::Written);
    Ok(record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_quarantined_until_the_second_it_expires_even_if_the_item_remains() -> Result<()>
{
    let store = store("gate").await?;
    let pool = PoolKey::new("us-east-1", "use1-az4", "m5.large")?;
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let record = quarantine(&store, &pool, at).await?;
    let expiry = record.expires_at;

    assert!(matches!(
        gatekeeper::check(&store, &pool, expiry - TimeDelta::seconds(1)).await?,
        Gate::Quarantined(_)
    ));
    assert_eq!(gatekeeper::check(&store, &pool, expiry).await?, Gate::Open);
    assert_eq!(
        gatekeeper::check(&store, &pool, expiry + TimeDelta::days(3)).await?,
        Gate::Open
    );
    // The emulator, like DynamoDB for days after the TTL, still holds the item.
    assert!(store.get(&pool).await?.is_some());

    let other = PoolKey::new("us-east-1", "use1-az1", "m5.large")?;
    assert_eq!(gatekeeper::check(&store, &other, at).await?, Gate::Open);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_ends_a_quarantine_early_and_keeps_who_did_it() -> Result<()> {
    let store = store("release").await?;
    let pool = PoolKey::new("us-east-1", "use1-az2", "c5.large")?;
    let at = Utc::now() - TimeDelta::hours(1);
    quarantine(&store, &pool, at).await?;
    let now = Utc::now();

    let Release::Released(released) = gatekeeper::release(&store, &pool, now, "alice").await?
    else {
        panic!("expected a release");
    };

    assert_eq!(released.released_by.as_deref(), Some("alice"));
    assert_eq!(gatekeeper::check(&store, &pool, now).await?, Gate::Open);
    let stored = store.get(&pool).await?.expect("record kept");
    assert_eq!(stored.released_by.as_deref(), Some("alice"));
    assert_eq!(stored.expires_at.timestamp(), now.timestamp());
    assert_eq!(
        gatekeeper::release(&store, &pool, now, "bob").await?,
        Release::NotQuarantined
    );

    // A new signal after the release quarantines again.
    quarantine(&store, &pool, now + TimeDelta::seconds(5)).await?;
    assert!(
        !gatekeeper::check(&store, &pool, now + TimeDelta::seconds(6))
            .await?
            .is_open()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_lists_only_unexpired_pools() -> Result<()> {
    let store = store("active").await?;
    let now = Utc::now();
    let live = PoolKey::new("us-east-1", "use1-az6", "m5.large")?;
    let old = PoolKey::new("us-east-1", "use1-az6", "m4.large")?;
    quarantine(&store, &live, now - TimeDelta::days(1)).await?;
    quarantine(&store, &old, now - TimeDelta::days(20)).await?;

    let active = gatekeeper::active(&store, now).await?;

    assert_eq!(
        active.iter().map(|r| r.pool.clone()).collect::<Vec<_>>(),
        vec![live]
    );
    assert_eq!(store.all().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_cannot_overwrite_a_newer_record() -> Result<()> {
    let store = store("optimistic").await?;
    let pool = PoolKey::new("us-east-1", "use1-az3", "m5.large")?;
    let at = Utc::now();
    let first = quarantine(&store, &pool, at).await?;
    quarantine(&store, &pool, at + TimeDelta::seconds(1)).await?;

    // A writer that read `first` and decided before the second write lost the race.
    let Decision::Extend(late) = decide(
        Some(&first),
        &pool,
        &signal("late", at),
        &QuarantinePolicy::default(),
        at,
    ) else {
        panic!()
    };
    assert_eq!(store.put(&late).await?, Write::Conflict);
    // And a second "first" write of a pool that exists is refused too.
    assert_eq!(store.put(&first).await?, Write::Conflict);
    Ok(())
}
