//! The refresh lease on both backends: short in the database, renewed by the holder's
//! heartbeat while it lives, lost when another holder took it over, never renewed past its
//! caller's time to live; a caller that waits a second for another holder says so once; and a
//! handle takes back at once a lease it could not release.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use withings_oauth::{Expected, TokenStore, UserId, testing};
use withings_oauth_sql::{LeaseWait, SqlOptions, SqlStore};

const USER: UserId = UserId::new(4242);

/// A lease that lives 1 s (the shortest) in the database, renewed every 100 ms.
fn short(options: SqlOptions) -> SqlOptions {
    options
        .lease_ttl(Duration::from_secs(1))
        .lease_renewal(Duration::from_millis(100))
}

/// Where the two handles' tables are, for a statement of the test's own.
#[derive(Clone)]
enum Tables {
    Sqlite(String),
    Postgres(String),
}

impl Tables {
    /// Runs `sql` on the tables (`withings_leases` qualified by the schema on PostgreSQL);
    /// returns the rows it changed.
    async fn run(&self, sql: &str, user: UserId) -> u64 {
        let user = user.get() as i64;
        match self {
            Tables::Sqlite(url) => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                let done = sqlx::query(sql).bind(user).execute(&pool).await.unwrap();
                pool.close().await;
                done.rows_affected()
            }
            Tables::Postgres(schema) => {
                let pool = sqlx::PgPool::connect(&support::database_url())
                    .await
                    .unwrap();
                let sql = sql.replace("withings_leases", &format!("\"{schema}\".withings_leases"));
                let done = sqlx::query(&sql).bind(user).execute(&pool).await.unwrap();
                pool.close().await;
                done.rows_affected()
            }
        }
    }
}

/// Runs `check` with two handles (each its own pool and heartbeat) on a fresh SQLite file,
/// then on a fresh PostgreSQL schema.
async fn on_both<F, Fut>(options: impl Fn() -> SqlOptions, check: F)
where
    F: Fn(SqlStore, SqlStore, Tables) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let one = SqlStore::connect(&url, options()).await.unwrap();
    let two = SqlStore::connect(&url, options()).await.unwrap();
    check(one.clone(), two.clone(), Tables::Sqlite(url)).await;
    one.close().await;
    two.close().await;

    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let one = support::postgres_store(schemas.url(), &schema, options()).await;
    let two = support::postgres_store(schemas.url(), &schema, options()).await;
    check(one.clone(), two.clone(), Tables::Postgres(schema)).await;
    one.close().await;
    two.close().await;
    schemas.drop_all().await;
}

/// Whether `store` hands out the user's lease within `within`.
async fn free_within(store: &SqlStore, within: Duration) -> bool {
    free_within_for(store, USER, within).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_its_lease_past_the_database_ttl_and_its_term_follows() {
    on_both(
        || short(SqlOptions::default()),
        |one, two, _| async move {
            let lease = one.lease(USER, Duration::from_secs(30)).await.unwrap();
            let first_end = lease.term().end().unwrap();
            assert!(
                !free_within(&two, Duration::from_millis(2500)).await,
                "a lease its live holder renews was taken over"
            );
            let left = lease.term().left().unwrap();
            assert!(
                left > Duration::ZERO && lease.term().end().unwrap() > first_end,
                "the holder's term did not follow the renewals ({left:?} left)"
            );
            assert!(!lease.term().is_lost());
            drop(lease);
            assert!(
                free_within(&two, Duration::from_secs(5)).await,
                "a dropped lease is released"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_renewed_no_longer_than_its_caller_asked() {
    on_both(
        || short(SqlOptions::default()),
        |one, two, _| async move {
            // Longer than the database's 1 s: renewed, up to 1.8 s.
            let hung = one.lease(USER, Duration::from_millis(1800)).await.unwrap();
            let asked = Instant::now();
            assert!(
                free_within(&two, Duration::from_secs(5)).await,
                "a lease past its caller's time to live was kept"
            );
            assert!(
                asked.elapsed() >= Duration::from_millis(1500),
                "taken over before its caller's time to live ({:?})",
                asked.elapsed()
            );
            assert!(hung.is_expired(), "the hung holder can tell");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_finds_the_lease_taken_over_marks_it_lost() {
    on_both(
        || short(SqlOptions::default()),
        |one, _, tables| async move {
            let lease = one.lease(USER, Duration::from_secs(30)).await.unwrap();
            // Another owner in the row, as after a takeover the holder did not see (it was
            // paused past its lease).
            let taken = tables
                .run(
                    "UPDATE withings_leases SET owner = 'someone-else' WHERE user_id = $1",
                    USER,
                )
                .await;
            assert_eq!(taken, 1, "no lease row");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !lease.term().is_lost() {
                assert!(
                    Instant::now() < deadline,
                    "no renewal found the lease taken over"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(lease.term().left(), Some(Duration::ZERO));
            assert!(lease.is_expired());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_waits_a_second_for_another_holder_says_so_once() {
    let told: Arc<Mutex<Vec<LeaseWait>>> = Arc::default();
    let options = {
        let told = told.clone();
        move || {
            let told = told.clone();
            short(SqlOptions::default()).on_lease_wait(Arc::new(move |wait: &LeaseWait| {
                told.lock().unwrap().push(wait.clone())
            }))
        }
    };
    on_both(options, |one, two, _| {
        let told = told.clone();
        async move {
            told.lock().unwrap().clear();
            let held = one.lease(USER, Duration::from_secs(30)).await.unwrap();
            let waiter = tokio::spawn(async move {
                let lease = two.lease(USER, Duration::from_secs(30)).await;
                (lease.map(drop), two)
            });
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(told.lock().unwrap().is_empty(), "told before a second");
            tokio::time::sleep(Duration::from_millis(2100)).await;
            drop(held);
            let (taken, _two) = waiter.await.unwrap();
            taken.unwrap();
            let told = told.lock().unwrap();
            assert_eq!(told.len(), 1, "told once: {told:?}");
            let wait = &told[0];
            assert_eq!(wait.user, USER);
            assert_eq!(wait.holder_pid, Some(std::process::id()));
            assert!(
                wait.at_most > Duration::from_secs(20) && wait.at_most <= Duration::from_secs(30),
                "at most the holder's time to live: {:?}",
                wait.at_most
            );
            let text = wait.to_string();
            assert!(
                text.contains("user 4242") && text.contains("at most"),
                "{text}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_takes_back_at_once_a_lease_it_could_not_release_and_no_other_handle_can() {
    // As after a save that failed with the database unreachable: the holder's release never
    // reached the database, and the row, the handle's own, lives on for 20 s. The handle is
    // the one holding the pair it could not save; it must find its lease again before another
    // instance takes it and spends the rotated refresh token.
    const LEFT: UserId = UserId::new(4242 + 1000);
    on_both(
        || short(SqlOptions::default()),
        |one, two, tables| async move {
            let lease = one.lease(USER, Duration::from_secs(30)).await.unwrap();
            let moved = tables
                .run(
                    "UPDATE withings_leases SET user_id = $1 + 1000, until_ms = until_ms + 20000 \
                     WHERE user_id = $1",
                    USER,
                )
                .await;
            assert_eq!(moved, 1, "no lease row");
            drop(lease);
            assert!(
                !free_within_for(&two, LEFT, Duration::from_millis(1500)).await,
                "another handle took a lease that had not expired"
            );
            let taken = tokio::time::timeout(
                Duration::from_secs(1),
                one.lease(LEFT, Duration::from_secs(30)),
            )
            .await
            .expect("the handle did not take its own unreleased lease back at once")
            .unwrap();
            assert!(!taken.is_expired());
            assert!(
                !free_within_for(&two, LEFT, Duration::from_millis(1500)).await,
                "the lease taken back is held, renewed, against other handles"
            );
            drop(taken);
            assert!(free_within_for(&two, LEFT, Duration::from_secs(5)).await);
        },
    )
    .await;
}

/// Whether `store` hands out `user`'s lease within `within`.
async fn free_within_for(store: &SqlStore, user: UserId, within: Duration) -> bool {
    let taken = tokio::time::timeout(within, store.lease(user, Duration::from_secs(30))).await;
    matches!(taken, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_reads_the_entry_after_the_last_holders_late_save() {
    // Found by the fault campaign: a holder refreshed, then its save waited behind a database
    // locked by a stopped process while its lease ran out; when the lock went, another
    // instance took the lease over and read the entry before that save landed, and spent the
    // refresh token just rotated.
    const LATE: UserId = UserId::new(4242 + 2000);
    on_both(
        || short(SqlOptions::default()),
        |one, two, tables| async move {
            let first = testing::credentials(LATE, "a1", "r1", chrono::Utc::now());
            let v1 = one.save(LATE, &first, Expected::Absent).await.unwrap();
            // The last holder's lease row, run out and left in place.
            let left = tables
                .run(
                    "INSERT INTO withings_leases (user_id, owner, until_ms) \
                     VALUES ($1, 'pid1-00000000000000ff.0000000000000001-cap0', 0)",
                    LATE,
                )
                .await;
            assert_eq!(left, 1);
            let taking = tokio::spawn(async move {
                let taken = two.lease_and_load(LATE, Duration::from_secs(30)).await;
                (taken.map(|(lease, entry)| (lease.is_expired(), entry)), two)
            });
            // The last holder's save lands just after the takeover.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let second = testing::credentials(LATE, "a2", "r2", chrono::Utc::now());
            let v2 = one
                .save(LATE, &second, Expected::Version(v1))
                .await
                .expect("the last holder's save: nobody wrote meanwhile");
            let (taken, _two) = taking.await.unwrap();
            let (expired, entry) = taken.unwrap();
            assert!(!expired);
            let entry = entry.expect("an entry");
            assert_eq!(
                entry.version, v2,
                "the new holder read the entry before the late save"
            );
        },
    )
    .await;
}
