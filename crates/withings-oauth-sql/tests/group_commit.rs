//! Calls in flight together share a statement (PostgreSQL) or a transaction (SQLite): each
//! caller still gets its own answer, a conflict stays the caller's own, and leases stay
//! exclusive, on both backends.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use withings_oauth::{Expected, StoreError, TokenStore, UserId, Version, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};

const USERS: u64 = 120;

/// A test of `$scenario` on each backend, with two handles (two pools, as two processes would
/// have) on one database.
macro_rules! on_two_handles {
    ($scenario:ident, $postgres:ident, $sqlite:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let schemas = support::Schemas::new();
            let schema = schemas.fresh();
            let a = support::postgres_store(schemas.url(), &schema, SqlOptions::default()).await;
            let b = support::postgres_store(schemas.url(), &schema, SqlOptions::default()).await;
            $scenario(a, b).await;
            schemas.drop_all().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            let url = support::sqlite_url(&dir);
            let a = SqlStore::connect(&url, SqlOptions::default())
                .await
                .unwrap();
            let b = SqlStore::connect(&url, SqlOptions::default())
                .await
                .unwrap();
            $scenario(a, b).await;
        }
    };
}

fn user(i: u64) -> UserId {
    UserId::new(5_000 + i)
}

/// Every user saved once (version 1), then, all at once: two saves of each user expecting
/// version 1 (one must win, the other conflict), and for every third user a third save
/// expecting a version that never was.
async fn saves_in_flight_together(store: SqlStore) {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    for i in 0..USERS {
        let first = testing::credentials(user(i), &format!("a{i}"), &format!("r{i}"), expires);
        store.save(user(i), &first, Expected::Absent).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..USERS {
        let stale = (i % 3 == 0).then_some(Version::new(7));
        for (n, expected) in [Some(Version::FIRST), Some(Version::FIRST), stale]
            .into_iter()
            .enumerate()
        {
            let Some(expected) = expected else { continue };
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let new = testing::credentials(
                    user(i),
                    &format!("a{i}-{n}"),
                    &format!("r{i}-{n}"),
                    expires,
                );
                let result = store.save(user(i), &new, Expected::Version(expected)).await;
                (i, n, result)
            }));
        }
    }
    let mut winners: HashMap<u64, usize> = HashMap::new();
    for task in tasks {
        let (i, n, result) = task.await.unwrap();
        match result {
            Ok(version) => {
                assert_eq!(version, Version::new(2), "user {i}, save {n}");
                assert!(n < 2, "user {i}: the save expecting version 7 was written");
                assert!(
                    winners.insert(i, n).is_none(),
                    "user {i}: two saves expecting version 1 were both written"
                );
            }
            Err(StoreError::Conflict(conflict)) => {
                assert_eq!(conflict.user, user(i));
                let current = conflict.current_version().expect("the user's entry");
                assert!(current >= Version::FIRST, "user {i}: {current}");
            }
            Err(other) => panic!("user {i}, save {n}: {other}"),
        }
    }
    assert_eq!(
        winners.len(),
        USERS as usize,
        "a user's saves were all refused"
    );
    for (i, n) in winners {
        let stored = store.load(user(i)).await.unwrap().unwrap();
        assert_eq!(stored.version, Version::new(2));
        let credentials = stored.credentials().unwrap();
        assert_eq!(
            credentials.access_token().expose_secret(),
            format!("a{i}-{n}"),
            "user {i}: the stored login is not the save that was told it won"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_in_flight_together_on_postgres_each_get_their_own_answer() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let options = SqlOptions::default().keys(support::keys());
    saves_in_flight_together(support::postgres_store(schemas.url(), &schema, options).await).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_in_flight_together_on_sqlite_each_get_their_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqlOptions::default().keys(support::keys());
    saves_in_flight_together(
        SqlStore::connect(&support::sqlite_url(&dir), options)
            .await
            .unwrap(),
    )
    .await;
}

/// Two handles (two pools, as two processes), three tasks each per user, every task taking
/// the user's lease at once: never two holders of one user, and every task gets the lease
/// soon (each release reaches the database, none waits for an expiry).
async fn leases_in_flight_together(a: SqlStore, b: SqlStore) {
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..40).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        for store in [&a, &b, &a, &b, &a, &b] {
            let (store, holders) = (store.clone(), holders.clone());
            tasks.push(tokio::spawn(async move {
                let lease = store.lease(user(i), Duration::from_secs(60)).await.unwrap();
                let before = holders[i as usize].fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "user {i} had two lease holders at once");
                tokio::time::sleep(Duration::from_millis(2)).await;
                holders[i as usize].fetch_sub(1, Ordering::SeqCst);
                drop(lease);
            }));
        }
    }
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(40), all)
        .await
        .expect("a lease waited for its expiry: a release was lost");
}

/// A caller that gives up while its claim is in flight leaves no lease behind: another
/// process gets the user's lease at once, not after the minute the claim asked for.
async fn abandoned_claims_leave_no_lease(a: SqlStore, b: SqlStore) {
    for round in 0..20u64 {
        let target = user(1_000 + round);
        // Give up at once, or a little later: some claims are abandoned before they are
        // sent, some while the database runs them, some after.
        let patience = Duration::from_micros(200 * round);
        let _ = tokio::time::timeout(patience, a.lease(target, Duration::from_secs(60))).await;
        let taken = tokio::time::timeout(
            Duration::from_secs(10),
            b.lease(target, Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: an abandoned claim kept the lease"));
        drop(taken.unwrap());
    }
}

/// A save written under a lease releases the lease with it (in the same statement or
/// transaction): another process gets the lease at once, while the first still holds its
/// guard. A refused save keeps the lease held.
async fn a_written_save_releases_its_lease(a: SqlStore, b: SqlStore) {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let target = user(2_000);
    let first = testing::credentials(target, "a0", "r0", expires);
    let v1 = a.save(target, &first, Expected::Absent).await.unwrap();

    let held = a.lease(target, Duration::from_secs(60)).await.unwrap();
    let refused = testing::credentials(target, "a-stale", "r-stale", expires);
    let stale = a
        .save(target, &refused, Expected::Version(Version::new(9)))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        b.lease(target, Duration::from_secs(60)),
    )
    .await;
    assert!(waited.is_err(), "a refused save released the lease");

    let next = testing::credentials(target, "a1", "r1", expires);
    a.save(target, &next, Expected::Version(v1)).await.unwrap();
    let taken = tokio::time::timeout(
        Duration::from_secs(5),
        b.lease(target, Duration::from_secs(60)),
    )
    .await
    .expect("the written save did not release the lease")
    .unwrap();
    // The first holder's guard, dropped now, leaves the second holder's lease alone.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::time::timeout(
        Duration::from_millis(500),
        a.lease(target, Duration::from_secs(60)),
    )
    .await;
    assert!(
        third.is_err(),
        "an old guard released the new holder's lease"
    );
    drop(taken);
}

on_two_handles!(
    leases_in_flight_together,
    leases_in_flight_together_on_postgres_stay_exclusive,
    leases_in_flight_together_on_sqlite_stay_exclusive
);
on_two_handles!(
    abandoned_claims_leave_no_lease,
    abandoned_claims_on_postgres_leave_no_lease,
    abandoned_claims_on_sqlite_leave_no_lease
);
on_two_handles!(
    a_written_save_releases_its_lease,
    a_written_save_on_postgres_releases_its_lease,
    a_written_save_on_sqlite_releases_its_lease
);
