//! Calls in flight together share a statement (PostgreSQL) or a transaction (SQLite): each
//! caller still gets its own answer, a conflict stays the caller's own, and leases stay
//! exclusive, on both backends.

mod support;

use std::collections::HashMap;
use std::future::Future;
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

/// Stores a first login for `target` (access `a0`, refresh `r0`); its version.
async fn seed(store: &SqlStore, target: UserId) -> Version {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let first = testing::credentials(target, "a0", "r0", expires);
    store.save(target, &first, Expected::Absent).await.unwrap()
}

/// Every user saved once, then, all at once: two saves of each user expecting that first
/// version (one must win, the other conflict), and for every third user a third save
/// expecting a version that never was.
async fn saves_in_flight_together(store: SqlStore) {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let mut firsts = HashMap::new();
    for i in 0..USERS {
        let first = testing::credentials(user(i), &format!("a{i}"), &format!("r{i}"), expires);
        let v1 = store.save(user(i), &first, Expected::Absent).await.unwrap();
        firsts.insert(i, v1);
    }
    let mut tasks = Vec::new();
    for i in 0..USERS {
        let v1 = firsts[&i];
        let stale = (i % 3 == 0).then_some(Version::new(v1.get() + 7));
        for (n, expected) in [Some(v1), Some(v1), stale].into_iter().enumerate() {
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
                assert_eq!(version, firsts[&i].next(), "user {i}, save {n}");
                assert!(n < 2, "user {i}: the save expecting version 7 was written");
                assert!(
                    winners.insert(i, n).is_none(),
                    "user {i}: two saves expecting version 1 were both written"
                );
            }
            Err(StoreError::Conflict(conflict)) => {
                assert_eq!(conflict.user, user(i));
                let current = conflict.current_version().expect("the user's entry");
                assert!(current >= firsts[&i], "user {i}: {current}");
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
        assert_eq!(stored.version, firsts[&i].next());
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

/// Six refreshers per user on two handles, all at once, each as a session refreshes: the
/// lease and the read under it ([`TokenStore::lease_and_load`]), then the save and the end of
/// the lease ([`TokenStore::save_and_release`]). Each reads the save of the one before it
/// (no save is refused), never two hold a user's lease at once, and no lease waits for its
/// expiry.
async fn refreshes_in_flight_together(a: SqlStore, b: SqlStore) {
    const REFRESHERS: u64 = 6;
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let mut seeded = Vec::new();
    for i in 0..40u64 {
        seeded.push(seed(&a, user(i)).await);
    }
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..40).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        for n in 0..REFRESHERS {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            let holders = holders.clone();
            tasks.push(tokio::spawn(async move {
                let (lease, read) = store
                    .lease_and_load(user(i), Duration::from_secs(60))
                    .await
                    .unwrap();
                let before = holders[i as usize].fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "user {i} had two lease holders at once");
                let read = read.expect("the user's entry");
                let new =
                    testing::credentials(user(i), &format!("a{n}"), &format!("r{n}"), expires);
                holders[i as usize].fetch_sub(1, Ordering::SeqCst);
                let saved = store
                    .save_and_release(user(i), &new, Expected::Version(read.version), lease)
                    .await
                    .unwrap_or_else(|e| panic!("user {i}, refresher {n}: {e}"));
                assert_eq!(saved, Version::new(read.version.get() + 1));
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
        .expect("a lease waited for its expiry: a save did not end it");
    for i in 0..40u64 {
        let stored = a.load(user(i)).await.unwrap().unwrap();
        let expected = Version::new(seeded[i as usize].get() + REFRESHERS);
        assert_eq!(stored.version, expected, "user {i}");
    }
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

/// A save never ends a lease its caller does not hold: neither a save made without the lease
/// (a new login) while a session refreshes under it, nor the late save of a holder whose lease
/// expired and was taken over. Only the holder's guard ends its lease.
async fn saves_leave_the_leases_alone(a: SqlStore, b: SqlStore) {
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let lease_of = |store: &SqlStore, target, ttl| {
        let store = store.clone();
        async move { tokio::time::timeout(Duration::from_millis(500), store.lease(target, ttl)).await }
    };

    // A login saved while a session holds the lease.
    let target = user(3_000);
    let v1 = seed(&a, target).await;
    let held = a.lease(target, Duration::from_secs(60)).await.unwrap();
    let login = testing::credentials(target, "a-login", "r-login", expires);
    a.save(target, &login, Expected::Version(v1)).await.unwrap();
    assert!(
        lease_of(&b, target, Duration::from_secs(60)).await.is_err(),
        "a save without the lease ended the holder's lease"
    );
    drop(held);
    let taken = tokio::time::timeout(
        Duration::from_secs(5),
        b.lease(target, Duration::from_secs(60)),
    )
    .await
    .expect("the holder's guard did not end its lease");
    drop(taken.unwrap());

    // A holder whose lease expired and was taken over saves late.
    let target = user(3_001);
    let v1 = seed(&a, target).await;
    let old = a.lease(target, Duration::from_millis(300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(old.is_expired());
    let new = tokio::time::timeout(
        Duration::from_secs(5),
        a.lease(target, Duration::from_secs(60)),
    )
    .await
    .expect("the expired lease was not taken over")
    .unwrap();
    let late = testing::credentials(target, "a-late", "r-late", expires);
    a.save(target, &late, Expected::Version(v1)).await.unwrap();
    assert!(
        lease_of(&b, target, Duration::from_secs(60)).await.is_err(),
        "a late save ended the new holder's lease"
    );
    // The old holder's guard leaves the new holder's lease alone too.
    drop(old);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        lease_of(&b, target, Duration::from_secs(60)).await.is_err(),
        "an old guard ended the new holder's lease"
    );
    drop(new);
}

/// A claim with a time to live past what the database can count, gathered with ordinary
/// ones: the ordinary ones are taken, as they would be without it.
async fn a_bad_claim_fails_alone(a: SqlStore, _b: SqlStore) {
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let ttl = if i % 8 == 0 {
                Duration::MAX
            } else {
                Duration::from_secs(60)
            };
            (i, a.lease(user(4_000 + i), ttl).await.map(drop))
        }));
    }
    for task in tasks {
        let (i, result) = task.await.unwrap();
        // The longest lease is capped (a year), so even the odd ones are taken today; were
        // one refused, the others must not fail with it.
        if i % 8 != 0 {
            assert!(result.is_ok(), "claim {i} failed: {}", result.unwrap_err());
        }
    }
}

on_two_handles!(
    leases_in_flight_together,
    leases_in_flight_together_on_postgres_stay_exclusive,
    leases_in_flight_together_on_sqlite_stay_exclusive
);
on_two_handles!(
    refreshes_in_flight_together,
    refreshes_in_flight_together_on_postgres_read_and_end_their_leases,
    refreshes_in_flight_together_on_sqlite_read_and_end_their_leases
);
on_two_handles!(
    abandoned_claims_leave_no_lease,
    abandoned_claims_on_postgres_leave_no_lease,
    abandoned_claims_on_sqlite_leave_no_lease
);
on_two_handles!(
    saves_leave_the_leases_alone,
    saves_on_postgres_leave_the_leases_alone,
    saves_on_sqlite_leave_the_leases_alone
);
on_two_handles!(
    a_bad_claim_fails_alone,
    a_bad_claim_on_postgres_fails_alone,
    a_bad_claim_on_sqlite_fails_alone
);

/// A SQLite store opened on a runtime of its own (one worker), for tests that use it from
/// other runtimes or threads too.
fn sqlite_store_on_its_runtime() -> (tempfile::TempDir, tokio::runtime::Runtime, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(SqlStore::connect(
            &support::sqlite_url(&dir),
            SqlOptions::default(),
        ))
        .unwrap();
    (dir, runtime, store)
}

/// A flush task dropped before it ever ran (its runtime shut down first) does not leave its
/// queue stuck: a later call on another runtime is answered.
#[test]
fn a_flush_task_dropped_before_it_ran_leaves_no_call_stuck() {
    let (_dir, main, store) = sqlite_store_on_its_runtime();
    let short = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shared = store.clone();
    short.block_on(async move {
        let mut load = std::pin::pin!(shared.load(user(5_000)));
        // One poll queues the load and spawns the flush task, which never runs.
        std::future::poll_fn(|cx| {
            assert!(load.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
    });
    drop(short);
    let later = main.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), store.load(user(5_000))).await
    });
    assert!(
        later
            .expect("a later load waited forever")
            .unwrap()
            .is_none()
    );
}

/// Outside a tokio runtime a call fails with an error saying so, and leaves nothing stuck.
#[test]
fn a_call_outside_a_runtime_fails_and_leaves_no_call_stuck() {
    let (_dir, runtime, store) = sqlite_store_on_its_runtime();
    let shared = store.clone();
    let outside = std::thread::spawn(move || {
        let mut load = std::pin::pin!(shared.load(user(5_001)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match load.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(e)) => e.to_string(),
            other => panic!("expected an error at once, got {other:?}"),
        }
    })
    .join()
    .unwrap();
    assert!(outside.contains("tokio runtime"), "{outside}");
    let later = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), store.load(user(5_001))).await
    });
    assert!(
        later
            .expect("a later load waited forever")
            .unwrap()
            .is_none()
    );
}
