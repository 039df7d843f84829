//! A shared bucket after the clock stepped back: its stored time is ahead of the database's
//! clock. It counts as now: the bucket keeps its level and refills from now on, instead of
//! refusing every take, for every instance, until the clock has caught up.

mod support;

use std::time::{Duration, Instant};

use withings_oauth_sql::{RateParams, SqlBucket, SqlOptions, SqlStore};

/// 5 at once, 1000 a second.
fn params() -> RateParams {
    RateParams::new(5, 1000.0)
}

/// Takes for at most a second, waiting as told; how many were given.
async fn takes_within_a_second(bucket: &SqlBucket, wanted: usize) -> usize {
    let started = Instant::now();
    let mut taken = 0;
    while taken < wanted && started.elapsed() < Duration::from_secs(1) {
        match bucket.try_take().await.unwrap() {
            Ok(()) => taken += 1,
            Err(wait) => tokio::time::sleep(wait.min(Duration::from_millis(20))).await,
        }
    }
    taken
}

/// The statement that plants the row as a clock stepped back 10 minutes leaves it: empty, its
/// time 10 minutes ahead.
const TEN_MINUTES_AHEAD: &str = "UPDATE withings_rate_limits SET tokens = 0, updated_ms = updated_ms + 600000 WHERE name = 'stepped'";

#[tokio::test]
async fn sqlite_a_bucket_whose_time_is_ahead_refills_from_now() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    let bucket = store.rate_bucket("stepped", params()).unwrap();
    assert_eq!(bucket.try_take().await.unwrap(), Ok(()));
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(TEN_MINUTES_AHEAD).execute(&raw).await.unwrap();

    assert_eq!(takes_within_a_second(&bucket, 5).await, 5);
    let state = bucket.state().await.unwrap();
    assert!(state.tokens <= 5.0, "{state:?}");
}

#[tokio::test]
async fn postgres_a_bucket_whose_time_is_ahead_refills_from_now() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let store = support::postgres_store(schemas.url(), &schema, SqlOptions::default()).await;
    let bucket = store.rate_bucket("stepped", params()).unwrap();
    assert_eq!(bucket.try_take().await.unwrap(), Ok(()));
    let raw = sqlx::PgPool::connect(schemas.url()).await.unwrap();
    sqlx::query(&TEN_MINUTES_AHEAD.replace(
        "withings_rate_limits",
        &format!("\"{schema}\".withings_rate_limits"),
    ))
    .execute(&raw)
    .await
    .unwrap();

    let taken = takes_within_a_second(&bucket, 5).await;
    store.close().await;
    raw.close().await;
    schemas.drop_all().await;
    assert_eq!(taken, 5);
}

#[tokio::test]
async fn sqlite_a_full_bucket_whose_time_is_ahead_keeps_its_level_at_most_the_burst() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    // One a minute: no refill within the test.
    let bucket = store
        .rate_bucket("stepped", RateParams::new(3, 1.0 / 60.0))
        .unwrap();
    assert_eq!(bucket.try_take().await.unwrap(), Ok(()));
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE withings_rate_limits SET tokens = 50, updated_ms = updated_ms + 600000 WHERE name = 'stepped'",
    )
    .execute(&raw)
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(bucket.try_take().await.unwrap(), Ok(()));
    }
    let wait = bucket.try_take().await.unwrap().unwrap_err();
    assert!(wait > Duration::from_secs(50), "{wait:?}");
}
