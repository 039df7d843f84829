//! The pool's size: connections kept open when asked for, never more than the maximum.

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
