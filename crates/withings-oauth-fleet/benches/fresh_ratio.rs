//! The fleet's fresh path over a single session's, measured in alternating rounds in one
//! process, so that load from other programs hits both sides alike: 60 rounds of 200,000 calls
//! of `Session::access_token` then of `Fleet::access_token` for one of 100,000 cached users
//! (as `fleet_one_user` in `benches/fleet.rs`). Prints the fastest round of each, their ratio
//! and the median of the rounds' ratios. Goal: at most 1.5; see docs/benchmarks.md
//! ("The fleet"). With `WITHINGS_BENCH_RECORDER=1`, Prometheus' recorder is installed.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use withings_oauth::{Session, TokenStore};
use withings_oauth_fleet::Fleet;

mod common;
use common::{USERS, client, recorder_if_asked, store, user};

const ROUNDS: usize = 60;
const CALLS: u32 = 200_000;

fn main() {
    recorder_if_asked();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (fleet, session) = rt.block_on(async {
        let store = store().await;
        let shared: Arc<dyn TokenStore> = store;
        let fleet = Fleet::builder(client(), shared.clone())
            .capacity(USERS as usize)
            .build()
            .expect("a fleet");
        for i in 0..USERS {
            fleet.access_token(user(i)).await.expect("a fresh token");
        }
        let client = client().build().expect("a client");
        let session = Session::restore(&client, shared, user(0))
            .await
            .expect("a session");
        (fleet, session)
    });
    let per_call = |elapsed: std::time::Duration| elapsed.as_nanos() as f64 / f64::from(CALLS);
    let (mut best_session, mut best_fleet) = (f64::MAX, f64::MAX);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let session_ns = per_call(rt.block_on(async {
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(session.access_token().await.expect("a token"));
            }
            start.elapsed()
        }));
        let fleet_ns = per_call(rt.block_on(async {
            let one = user(0);
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(fleet.access_token(one).await.expect("a token"));
            }
            start.elapsed()
        }));
        best_session = best_session.min(session_ns);
        best_fleet = best_fleet.min(fleet_ns);
        ratios.push(fleet_ns / session_ns);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "session {best_session:.1} ns, fleet (one of {USERS}) {best_fleet:.1} ns: ratio {:.2} (fastest rounds), {:.2} (median of {ROUNDS} rounds)",
        best_fleet / best_session,
        ratios[ROUNDS / 2],
    );
}
