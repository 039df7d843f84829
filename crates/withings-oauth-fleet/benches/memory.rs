//! Memory per cached user: every byte allocated (and not freed) while 100,000 users are
//! restored into a fleet's cache, counted by a global allocator; and, to tell the fleet's part
//! from the session's, the same for 100,000 sessions restored into a `Vec`. Prints the
//! figures; see docs/benchmarks.md ("The fleet"). Goal: under 1 KiB a user. With
//! `WITHINGS_BENCH_RECORDER=1`, Prometheus' recorder is installed.

#![allow(missing_docs)]

use std::alloc::System;
use std::sync::Arc;

use stats_alloc::Stats;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use withings_oauth::{Session, TokenStore};
use withings_oauth_fleet::Fleet;

mod common;
use common::{USERS, client, recorder_if_asked, store, user};

fn report(what: &str, change: &Stats) {
    let held = change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64;
    let allocations = change.allocations as i64 - change.deallocations as i64;
    println!(
        "{what}: {USERS} users, {held} bytes held, {} bytes per user in {} allocations per user",
        held / USERS as i64,
        allocations / USERS as i64,
    );
}

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    recorder_if_asked();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let store = store().await;
        let shared: Arc<dyn TokenStore> = store;
        let fleet = Fleet::builder(client(), shared.clone())
            .capacity(USERS as usize)
            .build()
            .expect("a fleet");
        // The cache's shard tables exist before the first user: count them too.
        let region = Region::new(GLOBAL);
        for i in 0..USERS {
            fleet.access_token(user(i)).await.expect("a fresh token");
        }
        let change = region.change();
        assert_eq!(fleet.cached_users(), USERS as usize);
        report("fleet memory", &change);

        let client = client().build().expect("a client");
        let region = Region::new(GLOBAL);
        let mut sessions = Vec::with_capacity(USERS as usize);
        for i in 0..USERS {
            let session = Session::restore(&client, shared.clone(), user(i))
                .await
                .expect("a session");
            sessions.push(session);
        }
        report("sessions alone (in a Vec)", &region.change());
        drop(sessions);
    });
}
