//! The pool: its size (connections kept open when asked for, never more than the maximum), and
//! connections the server closed while they sat idle, replaced before use.

mod support;

use std::time::{Duration, Instant};

use withings_oauth::{TokenStore, UserId};
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

/// A connection the server closed while it sat idle in the pool (a database restart, a proxy's
/// idle timeout) is found out when it is next handed out: the call gets a new connection
/// instead of an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_connection_closed_while_idle_is_replaced_before_use() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let name = format!("withings_idle_{}", support::random_suffix());
    let separator = if schemas.url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{separator}application_name={name}", schemas.url());
    let options = SqlOptions::default().max_connections(2).min_connections(2);
    let store = support::postgres_store(&url, &schema, options).await;
    assert_eq!(opens(&store, 2).await, 2);
    assert!(store.load(UserId::new(1)).await.unwrap().is_none());

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let admin = sqlx::PgPool::connect(schemas.url()).await.unwrap();
    let closed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(
        closed,
        [true, true],
        "the store's connections were not closed"
    );
    admin.close().await;

    for user in 1..=4 {
        let read = store.load(UserId::new(user)).await;
        assert!(read.is_ok(), "a closed connection was used: {read:?}");
    }
    store.close().await;
    schemas.drop_all().await;
}
