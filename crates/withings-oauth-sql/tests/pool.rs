//! The pool: its size (connections kept open when asked for, never more than the maximum), and
//! connections the server closed while they sat idle, replaced before use.

mod support;

use std::time::{Duration, Instant};

use withings_oauth::{Expected, TokenStore, UserId, Version, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};

/// Waits up to 10 s for the pool to have `n` connections open.
async fn opens(store: &SqlStore, n: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.open_connections() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.open_connections()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_pool_keeps_its_minimum_open_and_stays_within_its_maximum() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let options = SqlOptions::default().max_connections(3).min_connections(3);
    let warm = support::postgres_store(schemas.url(), &schema, options).await;
    assert_eq!(opens(&warm, 3).await, 3, "the minimum was not opened");
    // Asking for more than the maximum opens the maximum.
    let options = SqlOptions::default().max_connections(2).min_connections(5);
    let capped = support::postgres_store(schemas.url(), &schema, options).await;
    assert_eq!(opens(&capped, 2).await, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        capped.open_connections(),
        2,
        "more than the maximum was opened"
    );
    assert!(capped.load(UserId::new(1)).await.unwrap().is_none());
    warm.close().await;
    capped.close().await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_pool_keeps_its_minimum_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqlOptions::default().min_connections(3);
    let store = SqlStore::connect(&support::sqlite_url(&dir), options)
        .await
        .unwrap();
    assert_eq!(opens(&store, 3).await, 3, "the minimum was not opened");
    assert!(store.load(UserId::new(1)).await.unwrap().is_none());
}

/// A PostgreSQL store whose connections carry an application name of their own, and a way to
/// close them all from the server's side (a restart, a failover, an administrator).
struct Closable {
    schemas: support::Schemas,
    store: SqlStore,
    name: String,
}

impl Closable {
    async fn open() -> Self {
        let schemas = support::Schemas::new();
        let schema = schemas.fresh();
        let name = format!("withings_closed_{}", support::random_suffix());
        let separator = if schemas.url().contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}application_name={name}", schemas.url());
        // One connection: the call after it was closed can only be handed that one.
        let options = SqlOptions::default().max_connections(1).min_connections(1);
        let store = support::postgres_store(&url, &schema, options).await;
        assert_eq!(opens(&store, 1).await, 1);
        Self {
            schemas,
            store,
            name,
        }
    }

    /// Closes the store's connection from the server's side, a moment after its last use and
    /// past the time every connection is checked after one was found closed: the next call is
    /// handed it unchecked.
    async fn close_used_connection(&self) {
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(self.store.load(UserId::new(1)).await.is_ok());
        self.close_connections().await;
    }

    /// Closes every connection of the store from the server's side.
    async fn close_connections(&self) {
        let admin = sqlx::PgPool::connect(self.schemas.url()).await.unwrap();
        let closed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&self.name)
        .fetch_all(&admin)
        .await
        .unwrap();
        assert_eq!(closed, [true], "the store's connection was not closed");
        admin.close().await;
    }

    async fn finish(self) {
        self.store.close().await;
        self.schemas.drop_all().await;
    }
}

/// A connection the server closed while it sat idle in the pool (a database restart, a proxy's
/// idle timeout) is found out when it is next handed out: the call gets a new connection
/// instead of an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_connection_closed_while_idle_is_replaced_before_use() {
    let db = Closable::open().await;
    assert!(db.store.load(UserId::new(1)).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    db.close_connections().await;
    for user in 1..=4 {
        let read = db.store.load(UserId::new(user)).await;
        assert!(read.is_ok(), "a closed connection was used: {read:?}");
    }
    db.finish().await;
}

/// Connections closed by the server a moment after their last use (not checked before use):
/// a refresh's calls (reads, the lease with its read, the save that ends it) go again on a new
/// connection instead of failing, and the save is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_connection_was_just_closed_goes_again_on_another() {
    let db = Closable::open().await;
    let user = UserId::new(9);
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let login = testing::credentials(user, "a0", "r0", expires);
    let v1 = db.store.save(user, &login, Expected::Absent).await.unwrap();
    assert!(db.store.load(user).await.unwrap().is_some());

    db.close_used_connection().await;
    let read = db.store.load(user).await;
    assert_eq!(
        read.unwrap().map(|e| e.version),
        Some(v1),
        "the read failed"
    );

    db.close_used_connection().await;
    let taken = db.store.lease_and_load(user, Duration::from_secs(60)).await;
    let (lease, read) = taken.expect("the lease and its read failed");
    assert_eq!(read.map(|e| e.version), Some(v1));

    db.close_used_connection().await;
    let refreshed = testing::credentials(user, "a1", "r1", expires);
    let saved = db
        .store
        .save_and_release(user, &refreshed, Expected::Version(v1), lease)
        .await;
    assert_eq!(saved.expect("the save failed"), Version::new(v1.get() + 1));
    let stored = db.store.load(user).await.unwrap().unwrap();
    assert_eq!(stored.version, Version::new(v1.get() + 1));
    assert_eq!(
        stored.credentials().unwrap().access_token().expose_secret(),
        "a1"
    );
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        db.store.lease(user, Duration::from_secs(60)),
    )
    .await;
    assert!(matches!(again, Ok(Ok(_))), "the save did not end the lease");
    db.finish().await;
}
