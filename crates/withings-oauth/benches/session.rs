//! Session benchmarks; see docs/benchmarks.md for what they measure and the goals.
//!
//! - `fresh_token`: `Session::access_token` on a fresh session, against a naive cache
//!   (`Arc<RwLock<String>>`, cloning the string). Goal: ratio <= 1.0.
//! - `expired_session`: 1,000 concurrent callers (futures polled together) on an expired session
//!   (one refresh against the sandbox, a save, everyone served), against one plain refresh round
//!   trip to the sandbox. Goal: ratio <= 1.5. For information, the same with 1,000 spawned tasks,
//!   and what spawning 1,000 empty tasks, or waking 1,000 waiting futures, costs alone.
//!
//! With `WITHINGS_BENCH_RECORDER=1`, `fresh_token` runs with Prometheus' recorder installed.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use withings_oauth::{Authorized, Client, Credentials, Unauthorized, UserId};
use withings_oauth::{Clock, Session};
use withings_oauth::{Expected, MemoryStore, StoredEntry, TokenStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, LOOPBACK_CALLBACK, SEEDED_USERID,
    Sandbox, SandboxConfig,
};

const CALLERS: usize = 1000;

struct OffsetClock(TimeDelta);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn sandbox_and_login() -> (Sandbox, Client, Authorized) {
    // No rate limit: the benchmark refreshes thousands of times a minute.
    let config = SandboxConfig::default().auto_approve(true).rate_limit(None);
    let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.base_url())
        .build()
        .expect("a client");
    let authorized = login(&client).await;
    (sandbox, client, authorized)
}

/// Logs the seeded user in through the auto-approving authorize page.
async fn login(client: &Client) -> Authorized {
    let pending = Unauthorized::new(client, "user.metrics".parse().expect("a scope"))
        .begin()
        .expect("a login");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let response = http
        .get(pending.authorize_url().clone())
        .send()
        .await
        .expect("the authorize page");
    let callback = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("a Location")
        .parse()
        .expect("a callback URL");
    pending.complete(&callback).await.expect("a code exchange")
}

/// With `WITHINGS_BENCH_RECORDER` set, Prometheus' recorder takes the metrics, as in a program
/// that exports them: the fresh path records nothing, so it must cost the same.
fn recorder_if_asked() {
    if std::env::var_os("WITHINGS_BENCH_RECORDER").is_some() {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder");
    }
}

fn fresh_token(c: &mut Criterion) {
    recorder_if_asked();
    let rt = runtime();
    let (_sandbox, _client, authorized) = rt.block_on(sandbox_and_login());
    let naive = Arc::new(RwLock::new(
        authorized.access_token().expose_secret().to_owned(),
    ));
    let session = rt
        .block_on(Session::start(authorized, Arc::new(MemoryStore::new())))
        .expect("a session");

    let mut group = c.benchmark_group("fresh_token");
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
    group.bench_function("naive_rwlock_string_clone", |b| {
        b.iter(|| black_box(naive.read().expect("not poisoned").clone()))
    });
    group.finish();
}

/// One round: a new session restored from the store with an expired token (so every round pays
/// for one refresh), and `CALLERS` callers asking it for a token at once.
fn expired_round(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    store: &Arc<MemoryStore>,
    user: UserId,
    clock: Option<Arc<dyn Clock>>,
    spawned: bool,
) -> Duration {
    if clock.is_none() {
        // The system clock: store the newest pair back with an expiry in the past.
        rt.block_on(async {
            let entry = store.load(user).await.expect("a store");
            let Some((version, StoredEntry::Credentials(credentials))) =
                entry.map(|e| (e.version, e.entry))
            else {
                panic!("the store lost the login");
            };
            let mut stored = credentials.reveal_for_storage();
            stored.expires_at = Utc::now() - TimeDelta::minutes(1);
            let expired = Credentials::from_stored(stored).expect("valid credentials");
            store
                .save(user, &expired, Expected::Version(version))
                .await
                .expect("a save");
        });
    }
    rt.block_on(async {
        let session = Session::restore(client, store.clone(), user)
            .await
            .expect("a stored login");
        let session = match clock {
            Some(clock) => session.with_clock(clock),
            None => session,
        };
        let start = Instant::now();
        if spawned {
            let tasks: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let session = session.clone();
                    tokio::spawn(async move { session.access_token().await })
                })
                .collect();
            for task in tasks {
                black_box(task.await.expect("a task").expect("a token"));
            }
        } else {
            let calls = (0..CALLERS).map(|_| session.access_token());
            for token in futures_util::future::join_all(calls).await {
                black_box(token.expect("a token"));
            }
        }
        start.elapsed()
    })
}

/// The 1,000-caller herd against one plain refresh, on a sandbox answering at once
/// (`expired_session`) and one holding each token answer for 10 ms, as a network would
/// (`expired_session_10ms_network`).
fn expired_session(c: &mut Criterion) {
    herd_group(c, "expired_session", None);
    herd_group(
        c,
        "expired_session_10ms_network",
        Some(Duration::from_millis(10)),
    );
}

fn herd_group(c: &mut Criterion, name: &str, latency: Option<Duration>) {
    let rt = runtime();
    let (sandbox, client, authorized) = rt.block_on(sandbox_and_login());
    if let Some(latency) = latency {
        sandbox
            .handle()
            .inject_fault(Endpoint::Token, Fault::Delay(latency), u32::MAX);
    }
    let store = Arc::new(MemoryStore::new());
    let user = UserId::new(SEEDED_USERID);
    rt.block_on(Session::start(authorized, store.clone()))
        .expect("a session");

    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    let mut round = 0i64;
    let variants: &[(&str, bool, bool)] = if latency.is_some() {
        &[("session_1000_concurrent_callers", false, false)]
    } else {
        &[
            ("session_1000_concurrent_callers", false, false),
            (
                "session_1000_concurrent_callers_injected_clock",
                true,
                false,
            ),
            ("session_1000_spawned_tasks", false, true),
        ]
    };
    for &(name, injected_clock, spawned) in variants {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        // Each round's clock is far enough ahead to find the last round's
                        // token expired.
                        round += 1;
                        let clock = injected_clock.then(|| {
                            Arc::new(OffsetClock(TimeDelta::hours(4 * round))) as Arc<dyn Clock>
                        });
                        expired_round(&rt, &client, &store, user, clock, spawned)
                    })
                    .sum()
            })
        });
    }

    if latency.is_none() {
        // What the same 1,000 callers cost when the token is fresh: the floor of the harness.
        let fresh = rt
            .block_on(async {
                let session = Session::restore(&client, store.clone(), user).await?;
                session.refresh().await.map(|()| session)
            })
            .expect("a fresh session");
        group.bench_function("fresh_session_1000_concurrent_callers", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let calls = (0..CALLERS).map(|_| fresh.access_token());
                        for token in futures_util::future::join_all(calls).await {
                            black_box(token.expect("a token"));
                        }
                    }
                    start.elapsed()
                })
            })
        });
        // What waking 1,000 waiting futures costs alone: each registers with a tokio `Notify`
        // (as the session's waiters do), and a task on a worker, told by the last one to
        // register, wakes them all; they are polled again. The herd without the refresh.
        group.bench_function("wake_1000_waiting_futures", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let notify = Arc::new(tokio::sync::Notify::new());
                        let all_in = Arc::new(tokio::sync::Notify::new());
                        let registered = Arc::new(AtomicUsize::new(0));
                        let start = Instant::now();
                        let waker = tokio::spawn({
                            let (notify, all_in) = (notify.clone(), all_in.clone());
                            async move {
                                all_in.notified().await;
                                notify.notify_waiters();
                            }
                        });
                        let waiters = (0..CALLERS).map(|_| {
                            let (notify, all_in) = (notify.clone(), all_in.clone());
                            let registered = registered.clone();
                            async move {
                                let notified = notify.notified();
                                tokio::pin!(notified);
                                notified.as_mut().enable();
                                if registered.fetch_add(1, Ordering::AcqRel) + 1 == CALLERS {
                                    all_in.notify_one();
                                }
                                notified.await;
                            }
                        });
                        futures_util::future::join_all(waiters).await;
                        total += start.elapsed();
                        waker.await.expect("the waker task");
                    }
                    total
                })
            })
        });
        group.bench_function("spawn_1000_empty_tasks", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(async {})).collect();
                        for task in tasks {
                            task.await.expect("a task");
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }

    // The baseline: one refresh round trip, with a login of its own on the same sandbox.
    let authorized = rt.block_on(login(&client));
    let mut current = Some(authorized);
    group.bench_function("plain_refresh_round_trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let authorized = current.take().expect("a login");
                    let start = Instant::now();
                    let fresh = authorized.refresh().await.expect("a refresh");
                    total += start.elapsed();
                    current = Some(fresh);
                }
                total
            })
        })
    });
    group.finish();
    drop(sandbox);
}

criterion_group!(benches, fresh_token, expired_session);
criterion_main!(benches);
