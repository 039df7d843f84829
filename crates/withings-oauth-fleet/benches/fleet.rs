//! The fleet's fresh path; see docs/benchmarks.md ("The fleet") for the goals.
//!
//! - `session_access_token`: one `Session`'s fresh path, the baseline.
//! - `fleet_one_user`: `Fleet::access_token` for one user of 100,000 cached, asked again and
//!   again (its shard and entry stay in the CPU caches). Goal: at most 1.5 times the baseline.
//! - `fleet_100k_users`: the same, each call for another of the 100,000 users, in a scattered
//!   order (every call misses the CPU caches, as in a backend serving many users).
//!
//! With `WITHINGS_BENCH_RECORDER=1`, they run with Prometheus' recorder installed.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use withings_oauth::{Session, TokenStore};
use withings_oauth_fleet::Fleet;

mod common;
use common::{USERS, client, recorder_if_asked, store, user};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn fresh_path(c: &mut Criterion) {
    recorder_if_asked();
    let rt = runtime();
    let (fleet, session) = rt.block_on(async {
        let store = store().await;
        let shared: Arc<dyn TokenStore> = store.clone();
        let fleet = Fleet::builder(client(), shared.clone())
            .capacity(USERS as usize)
            .build()
            .expect("a fleet");
        for i in 0..USERS {
            fleet.access_token(user(i)).await.expect("a fresh token");
        }
        assert_eq!(fleet.cached_users(), USERS as usize);
        let client = client().build().expect("a client");
        let session = Session::restore(&client, shared, user(0))
            .await
            .expect("a session");
        (fleet, session)
    });

    let mut group = c.benchmark_group("fleet_fresh_token");
    group.bench_function("session_access_token", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(session.access_token().await.expect("a token"));
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("fleet_one_user", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let one = user(0);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(fleet.access_token(one).await.expect("a token"));
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("fleet_100k_users", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                // A stride coprime with USERS visits every user in a scattered order.
                let mut i = 0u64;
                let start = Instant::now();
                for _ in 0..iters {
                    i = (i + 48_271) % USERS;
                    black_box(fleet.access_token(user(i)).await.expect("a token"));
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, fresh_path);
criterion_main!(benches);
