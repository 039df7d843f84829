//! SQL store benchmarks; see docs/benchmarks.md for the figures and the goals.
//!
//! - `cas_save`: a compare-and-swap save through the store (tokens sealed with
//!   XChaCha20-Poly1305, SQLite in `BEGIN IMMEDIATE`), against a bare `UPDATE` of the same row
//!   with sqlx on a pool with the same settings, in the same run. Goal: ratio <= 1.5, on SQLite
//!   and on PostgreSQL.
//! - `fresh_token_10k_users`: a fresh token of one of 10,000 stored users, read through a
//!   session backed by the SQL store and through one backed by a `MemoryStore`. The store
//!   under the SQL sessions counts its calls: the hot path must make none.
//!
//! PostgreSQL comes from `WITHINGS_TEST_DATABASE_URL` (`source .ci/postgres.sh`); each run
//! uses its own schema, dropped at the end.

#![allow(missing_docs)]

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use withings_oauth::{
    Client, Credentials, Expected, Lease, MemoryStore, Session, StoreFuture, TokenStore, UserId,
    Version, VersionedEntry, testing,
};
use withings_oauth_sql::testing::Schemas;
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FLEET: u64 = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn options() -> SqlOptions {
    SqlOptions::default().keys(Keyring::parse(KEYS).expect("a key"))
}

fn fresh(user: UserId, i: u64) -> Credentials {
    testing::credentials(
        user,
        &format!("access-token-{i:08}-abcdefghijklmnopqrstuvwxyz0123"),
        &format!("refresh-token-{i:08}-abcdefghijklmnopqrstuvwxyz012"),
        chrono::Utc::now() + chrono::TimeDelta::hours(3),
    )
}

/// Where a run keeps its tables.
struct Target {
    name: &'static str,
    url: String,
    schema: Option<String>,
    schemas: Option<Schemas>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Target {
            name: "sqlite",
            url: format!("sqlite://{}", dir.path().join("bench.db").display()),
            schema: None,
            schemas: None,
            _dir: Some(dir),
        }
    }

    fn postgres() -> Self {
        let schemas = Schemas::new();
        Target {
            name: "postgres",
            url: schemas.url().to_owned(),
            schema: Some(schemas.fresh()),
            schemas: Some(schemas),
            _dir: None,
        }
    }

    async fn open(&self) -> SqlStore {
        let mut options = options();
        if let Some(schema) = &self.schema {
            options = options.postgres_schema(schema);
        }
        SqlStore::connect(&self.url, options)
            .await
            .expect("the store opens")
    }

    async fn drop_schema(&self) {
        if let Some(schemas) = &self.schemas {
            schemas.drop_all().await;
        }
    }
}

/// A bare `UPDATE` of one row, with sqlx, on a pool configured as the store's.
enum Bare {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const BARE_UPDATE: &str = "UPDATE withings_credentials SET access_token = $2, \
    refresh_token = $3, expires_at = $4 WHERE user_id = $1";

impl Bare {
    async fn open(target: &Target) -> Bare {
        match &target.schema {
            None => {
                use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
                let path = target.url.trim_start_matches("sqlite://");
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
                    .expect("options")
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30));
                Bare::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(options)
                        .await
                        .expect("a pool"),
                )
            }
            Some(schema) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(&target.url)
                    .expect("options")
                    .options([("search_path", schema.as_str())]);
                Bare::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(10)
                        .connect_with(options)
                        .await
                        .expect("a pool"),
                )
            }
        }
    }

    async fn update(&self, user: i64, access: &[u8], refresh: &[u8], expires: i64) {
        let rows = match self {
            Bare::Sqlite(pool) => sqlx::query(BARE_UPDATE)
                .bind(user)
                .bind(access)
                .bind(refresh)
                .bind(expires)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Bare::Postgres(pool) => sqlx::query(BARE_UPDATE)
                .bind(user)
                .bind(access)
                .bind(refresh)
                .bind(expires)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        };
        assert_eq!(rows.expect("the update"), 1);
    }
}

fn cas_save(c: &mut Criterion) {
    let rt = runtime();
    for target in [Target::sqlite(), Target::postgres()] {
        let (store, bare, version) = rt.block_on(async {
            let store = target.open().await;
            let user = UserId::new(1);
            let version = store
                .save(user, &fresh(user, 0), Expected::Absent)
                .await
                .expect("saved");
            let bare = Bare::open(&target).await;
            (store, bare, version)
        });
        let mut group = c.benchmark_group(format!("cas_save/{}", target.name));
        group.sample_size(30);
        group.measurement_time(Duration::from_secs(8));
        let version = AtomicU64::new(version.get());
        let user = UserId::new(1);
        let credentials = fresh(user, 1);
        group.bench_function("store_save_encrypted", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let expected =
                            Expected::Version(Version::new(version.load(Ordering::Relaxed)));
                        let next = store
                            .save(user, &credentials, expected)
                            .await
                            .expect("the compare-and-swap succeeds");
                        version.store(next.get(), Ordering::Relaxed);
                    }
                    start.elapsed()
                })
            })
        });
        // Same sizes as the sealed tokens: 1 + 1 + 2 (key id) + 24 (nonce) + 16 (tag) + text.
        let access = vec![7u8; 44 + 52];
        let refresh = vec![9u8; 44 + 52];
        group.bench_function("bare_update", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        bare.update(1, &access, &refresh, i as i64).await;
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();
        rt.block_on(async {
            store.close().await;
            target.drop_schema().await;
        });
    }
}

/// Counts every call the sessions make to the store underneath.
struct Counting<S> {
    inner: S,
    calls: AtomicUsize,
}

impl<S: TokenStore> TokenStore for Counting<S> {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.load(user)
    }
    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.save(user, credentials, expected)
    }
    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.mark_login_required(user, expected)
    }
    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(user, expected)
    }
    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.users()
    }
    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.lease(user, ttl)
    }
}

async fn sessions_over(client: &Client, store: Arc<dyn TokenStore>) -> Vec<Session> {
    for i in 0..FLEET {
        let user = UserId::new(1_000_000 + i);
        store
            .save(user, &fresh(user, i), Expected::Absent)
            .await
            .expect("saved");
    }
    let mut sessions = Vec::with_capacity(FLEET as usize);
    for i in 0..FLEET {
        let user = UserId::new(1_000_000 + i);
        sessions.push(
            Session::restore(client, store.clone(), user)
                .await
                .expect("a session"),
        );
    }
    sessions
}

fn fresh_token_10k_users(c: &mut Criterion) {
    let rt = runtime();
    let client = Client::builder()
        .client_id("bench")
        .client_secret("bench-secret")
        .redirect_uri("https://app.example.com/callback")
        .base_url("http://127.0.0.1:9/".parse().expect("a URL"))
        .build()
        .expect("a client");
    let mut group = c.benchmark_group("fresh_token_10k_users");
    group.sample_size(50);
    let memory = rt.block_on(sessions_over(&client, Arc::new(MemoryStore::new())));
    let next = AtomicUsize::new(0);
    let bench = |b: &mut criterion::Bencher<'_>, sessions: &[Session]| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let i = next.fetch_add(7919, Ordering::Relaxed) % sessions.len();
                    black_box(sessions[i].access_token().await.expect("a fresh token"));
                }
                start.elapsed()
            })
        })
    };
    group.bench_function("memory_store_session", |b| bench(b, &memory));
    for target in [Target::sqlite(), Target::postgres()] {
        let (store, sessions) = rt.block_on(async {
            let store = Arc::new(Counting {
                inner: target.open().await,
                calls: AtomicUsize::new(0),
            });
            let sessions = sessions_over(&client, store.clone()).await;
            (store, sessions)
        });
        let before = store.calls.load(Ordering::Relaxed);
        group.bench_function(format!("{}_store_session", target.name), |b| {
            bench(b, &sessions)
        });
        let during = store.calls.load(Ordering::Relaxed) - before;
        eprintln!(
            "fresh_token_10k_users/{}: {during} store calls while measuring",
            target.name
        );
        assert_eq!(during, 0, "the fast path touched the store");
        rt.block_on(async {
            store.inner.close().await;
            target.drop_schema().await;
        });
    }
    group.finish();
}

criterion_group!(benches, cas_save, fresh_token_10k_users);
criterion_main!(benches);
