//! Shared token buckets on SQLite and PostgreSQL: several handles (each with its own pool, as
//! processes or instances would have) taking from one bucket never get more than it holds; a
//! slowdown through one handle empties it for all; a token given back never overfills it;
//! tokens spent without it (an instance cut off from the database) are counted against it. And
//! 4 OS processes sharing a SQLite file: the test binary re-executes itself, the ignored test
//! `bucket_child` being the child, told the file through `WITHINGS_SQL_BUCKET_URL`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use withings_oauth_sql::{RateParams, SqlOptions, SqlStore};

async fn sqlite_handles(dir: &tempfile::TempDir, n: usize) -> Vec<SqlStore> {
    let url = support::sqlite_url(dir);
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(
            SqlStore::connect(&url, SqlOptions::default())
                .await
                .unwrap(),
        );
    }
    stores
}

async fn postgres_handles(schemas: &support::Schemas, n: usize) -> Vec<SqlStore> {
    let schema = schemas.fresh();
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(support::postgres_store(schemas.url(), &schema, SqlOptions::default()).await);
    }
    stores
}

const CHILD_URL: &str = "WITHINGS_SQL_BUCKET_URL";
/// What a child prints before the number of tokens it took.
const TAKEN: &str = "bucket child took ";

/// 4 takers for 2 s of the process's own time on the bucket "shared" (20 at once, 10 a
/// second) of the SQLite file the parent names; prints how many it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of sqlite_processes_sharing_a_bucket_never_take_more_than_it_holds"]
async fn bucket_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        panic!(
            "run by sqlite_processes_sharing_a_bucket_never_take_more_than_it_holds, which sets {CHILD_URL}"
        );
    };
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let bucket = store
            .rate_bucket("shared", RateParams::new(20, 10.0))
            .unwrap();
        let taken = taken.clone();
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < Duration::from_secs(2) {
                match bucket.try_take().await.unwrap() {
                    Ok(()) => {
                        taken.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(wait) => tokio::time::sleep(wait).await,
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!("{TAKEN}{}", taken.load(Ordering::SeqCst));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_sharing_a_bucket_never_take_more_than_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    // Migrated once here, so that the children only open the file.
    SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    let started = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "bucket_child", "--ignored", "--nocapture"])
                .env(CHILD_URL, &url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut taken = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(TAKEN))
            .unwrap_or_else(|| panic!("no count from a child: {stdout}"));
        taken += line.trim().parse::<usize>().unwrap();
    }
    // Every take happened between `started` and now: at most the burst, plus the refill of
    // that time, plus one for rounding.
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 20.0 + 10.0 * elapsed + 1.0;
    eprintln!("4 processes took {taken} tokens in {elapsed:.2} s (at most {bound:.0})");
    assert!(
        (taken as f64) <= bound,
        "{taken} tokens taken, at most {bound}"
    );
    assert!(taken >= 20, "the burst was not served: {taken}");
}

/// 4 handles, 4 eager takers each, for 2 s, on a bucket of 20 refilled at 10 a second: the
/// takes counted within the 2 s are at most 20 + 10 × 2 (and one for rounding).
async fn never_more_than_the_bucket_holds(stores: Vec<SqlStore>) {
    let params = RateParams::new(20, 10.0);
    let taken = Arc::new(AtomicUsize::new(0));
    let run_for = Duration::from_secs(2);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..4 {
            let bucket = store.rate_bucket("shared", params).unwrap();
            let taken = taken.clone();
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < run_for {
                    match bucket.try_take().await.unwrap() {
                        Ok(()) if started.elapsed() < run_for => {
                            taken.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(()) => {}
                        Err(wait) => tokio::time::sleep(wait).await,
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let taken = taken.load(Ordering::SeqCst);
    eprintln!("{taken} tokens taken in {run_for:?} (at most 41)");
    assert!(taken <= 41, "{taken} tokens taken");
    assert!(taken >= 20, "the burst was not served: {taken}");
    for store in stores {
        store.close().await;
    }
}

async fn a_slowdown_through_one_handle_empties_the_bucket_for_all(stores: Vec<SqlStore>) {
    // 5 at once, 100 a second; 1 a second while slowed.
    let params = RateParams::new(5, 100.0).slowed_refill(1.0);
    let a = stores[0].rate_bucket("shared", params).unwrap();
    let b = stores[1].rate_bucket("shared", params).unwrap();
    assert_eq!(b.state().await.unwrap().tokens, 5.0, "a new bucket is full");
    assert_eq!(b.try_take().await.unwrap(), Ok(()));
    a.slow_down(Duration::from_secs(60)).await.unwrap();
    let state = b.state().await.unwrap();
    assert!(state.tokens < 0.5, "{state:?}");
    assert!(
        state
            .slowed_for
            .is_some_and(|d| d > Duration::from_secs(55)),
        "{state:?}"
    );
    let wait = b.try_take().await.unwrap().unwrap_err();
    assert!(wait > Duration::from_millis(400), "{wait:?}");
    // Given back: one token, never more than the burst.
    for _ in 0..10 {
        b.give_back().await.unwrap();
    }
    assert!(b.state().await.unwrap().tokens <= 5.0);
    for store in stores {
        store.close().await;
    }
}

async fn tokens_spent_without_the_bucket_are_counted_against_it(stores: Vec<SqlStore>) {
    // 10 at once, 1 a second: the level moves by little while the test runs.
    let params = RateParams::new(10, 1.0);
    let a = stores[0].rate_bucket("shared", params).unwrap();
    let b = stores[1].rate_bucket("shared", params).unwrap();
    // A new bucket: full, less what was spent.
    a.spend(3).await.unwrap();
    let level = b.state().await.unwrap().tokens;
    assert!((7.0..7.5).contains(&level), "{level}");
    b.spend(6).await.unwrap();
    let level = a.state().await.unwrap().tokens;
    assert!((1.0..2.0).contains(&level), "{level}");
    // More than it holds: empty, not in debt for minutes.
    a.spend(1000).await.unwrap();
    let level = b.state().await.unwrap().tokens;
    assert!((0.0..0.5).contains(&level), "{level}");
    let wait = b.try_take().await.unwrap().unwrap_err();
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    for store in stores {
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tokens_spent_without_the_bucket_count_for_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    tokens_spent_without_the_bucket_are_counted_against_it(sqlite_handles(&dir, 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tokens_spent_without_the_bucket_count_for_every_handle() {
    let schemas = support::Schemas::new();
    tokens_spent_without_the_bucket_are_counted_against_it(postgres_handles(&schemas, 2).await)
        .await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_handles_sharing_a_bucket_never_take_more_than_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    never_more_than_the_bucket_holds(sqlite_handles(&dir, 4).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_handles_sharing_a_bucket_never_take_more_than_it_holds() {
    let schemas = support::Schemas::new();
    never_more_than_the_bucket_holds(postgres_handles(&schemas, 4).await).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_slowdown_reaches_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    a_slowdown_through_one_handle_empties_the_bucket_for_all(sqlite_handles(&dir, 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slowdown_reaches_every_handle() {
    let schemas = support::Schemas::new();
    a_slowdown_through_one_handle_empties_the_bucket_for_all(postgres_handles(&schemas, 2).await)
        .await;
    schemas.drop_all().await;
}

#[tokio::test]
async fn a_bucket_name_must_be_sensible() {
    let dir = tempfile::tempdir().unwrap();
    let store = &sqlite_handles(&dir, 1).await[0];
    let params = RateParams::new(1, 1.0);
    assert!(store.rate_bucket("", params).is_err());
    assert!(store.rate_bucket(&"x".repeat(201), params).is_err());
    assert!(store.rate_bucket("withings", params).is_ok());
}
