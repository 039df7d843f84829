//! Refresh throughput: many users whose tokens all expired, refreshed by fleets in several
//! processes sharing one SQL store, against the sandbox on the same machine, with no rate
//! limit. Prints refreshes per second. `benches/load.sh` runs it next to `pgbench`; see
//! docs/benchmarks.md ("The fleet under load").
//!
//! ```sh
//! source .ci/postgres.sh   # for --backend postgres: WITHINGS_TEST_DATABASE_URL
//! cargo run --release -p withings-oauth-fleet --example load -- \
//!     --backend postgres --users 10000 --instances 4
//! cargo run --release -p withings-oauth-fleet --example load -- \
//!     --backend sqlite --users 10000 --instances 1
//! ```
//!
//! Options: `--users N` (10,000), `--instances N` (4), `--connections N` (each instance's pool,
//! all opened before the start; the store's default if absent), `--concurrent-refreshes N` (each fleet's, its default if
//! absent), `--all` (every instance asks for every user, instead of each for its share),
//! `--backend postgres|sqlite` (postgres). With `--backend sqlite` it also measures a loop of
//! one-row durable updates on a SQLite file of the same settings, the bound to compare with.
//!
//! The process runs the sandbox, seeds the store in a schema (or file) of its own, starts the
//! instances as child processes of itself (`load child ...`), and drops the schema at the end.

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use withings_oauth::{BoxFuture, Client, Expected, TokenStore, UserId, testing};
use withings_oauth_fleet::{Fleet, RateLimiter};
use withings_oauth_sql::testing::{DATABASE_URL_VAR, Schemas};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore, sqlx};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, User,
};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Clone, Debug)]
struct Options {
    backend: String,
    users: u32,
    instances: usize,
    connections: Option<u32>,
    concurrent_refreshes: Option<usize>,
    all: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: load [--backend postgres|sqlite] [--users N] [--instances N] [--connections N] [--concurrent-refreshes N] [--all]"
    );
    std::process::exit(2)
}

fn parse(args: &mut impl Iterator<Item = String>) -> Options {
    let mut options = Options {
        backend: "postgres".into(),
        users: 10_000,
        instances: 4,
        connections: None,
        concurrent_refreshes: None,
        all: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let number = |name: &str, text: String| -> u64 {
            text.parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage(&format!("{name} takes a positive number")))
        };
        match arg.as_str() {
            "--backend" => options.backend = value("--backend"),
            "--users" => options.users = number("--users", value("--users")) as u32,
            "--instances" => {
                options.instances = number("--instances", value("--instances")) as usize
            }
            "--connections" => {
                options.connections = Some(number("--connections", value("--connections")) as u32)
            }
            "--concurrent-refreshes" => {
                options.concurrent_refreshes =
                    Some(number("--concurrent-refreshes", value("--concurrent-refreshes")) as usize)
            }
            "--all" => options.all = true,
            other => usage(&format!("unknown option {other}")),
        }
    }
    if !matches!(options.backend.as_str(), "postgres" | "sqlite") {
        usage("--backend is postgres or sqlite");
    }
    options
}

fn to_args(options: &Options) -> Vec<String> {
    let mut args = vec![
        "--backend".into(),
        options.backend.clone(),
        "--users".into(),
        options.users.to_string(),
        "--instances".into(),
        options.instances.to_string(),
    ];
    if let Some(n) = options.connections {
        args.extend(["--connections".into(), n.to_string()]);
    }
    if let Some(n) = options.concurrent_refreshes {
        args.extend(["--concurrent-refreshes".into(), n.to_string()]);
    }
    if options.all {
        args.push("--all".into());
    }
    args
}

fn user(i: u32) -> UserId {
    UserId::new(User::numbered(i).userid)
}

/// Where the store is: a URL and, on PostgreSQL, a schema.
struct Place {
    url: String,
    schema: Option<String>,
}

async fn open(place: &Place, options: &Options) -> SqlStore {
    let mut sql = SqlOptions::default().keys(Keyring::parse(KEYS).expect("a key"));
    if let Some(n) = options.connections {
        // Opened before the start, as pgbench's are: the measure is refreshes, not
        // connection set-ups.
        sql = sql.max_connections(n).min_connections(n);
    }
    if let Some(schema) = &place.schema {
        sql = sql.postgres_schema(schema);
    }
    SqlStore::connect(&place.url, sql)
        .await
        .unwrap_or_else(|e| panic!("could not open the store: {e}"))
}

/// No limit: the measure is the store's and the fleet's, not Withings' budget.
struct Unlimited;

impl RateLimiter for Unlimited {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn rate_limited(&self) {}
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let child = args.peek().is_some_and(|a| a == "child");
    if child {
        args.next();
        let dir = PathBuf::from(args.next().expect("the directory"));
        let index: usize = args.next().expect("the index").parse().expect("an index");
        let url = args.next().expect("the URL");
        let schema = args.next().expect("the schema");
        let sandbox = args.next().expect("the sandbox");
        let options = parse(&mut args);
        let place = Place {
            url,
            schema: (!schema.is_empty()).then_some(schema),
        };
        runtime().block_on(instance(&dir, index, &place, &sandbox, &options));
    } else {
        let options = parse(&mut args);
        runtime().block_on(run(&options));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn run(options: &Options) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // On PostgreSQL, a schema of the run's own, dropped at the end.
    let schemas = (options.backend == "postgres").then(|| {
        if std::env::var(DATABASE_URL_VAR).is_ok_and(|u| !u.trim().is_empty()) {
            Schemas::new()
        } else {
            usage(&format!(
                "{} is not set: `source .ci/postgres.sh` first",
                DATABASE_URL_VAR
            ))
        }
    });
    let place = match &schemas {
        Some(schemas) => Place {
            url: schemas.url().to_owned(),
            schema: Some(schemas.fresh()),
        },
        None => Place {
            url: format!("sqlite://{}", dir.path().join("tokens.db").display()),
            schema: None,
        },
    };
    let sandbox = Sandbox::start(
        SandboxConfig::default()
            .seed_users(options.users)
            .rate_limit(None),
    )
    .await
    .expect("the sandbox");
    let store = open(&place, options).await;
    seed(&sandbox, &store, options.users).await;

    let children: Vec<Child> = (0..options.instances)
        .map(|i| spawn(dir.path(), i, &place, &sandbox, options))
        .collect();
    for i in 0..options.instances {
        wait_for_file(&dir.path().join(format!("ready-{i}"))).await;
    }
    let start = Instant::now();
    std::fs::write(dir.path().join("go"), b"").expect("the go file");
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("a join")
            .expect("a child");
        assert!(status.success(), "an instance failed: {status}");
    }
    let elapsed = start.elapsed();

    let counters = sandbox.handle().counters();
    assert_eq!(
        counters.refresh_granted,
        u64::from(options.users),
        "one refresh per user"
    );
    assert_eq!(counters.refresh_in_grace + counters.refresh_dead_token, 0);
    let rate = f64::from(options.users) / elapsed.as_secs_f64();
    let connections = options
        .connections
        .unwrap_or(if options.backend == "postgres" { 10 } else { 4 });
    println!(
        "backend={} users={} instances={} connections_per_instance={} total_connections={} all={} elapsed_s={:.3} refreshes_per_s={:.0}",
        options.backend,
        options.users,
        options.instances,
        connections,
        connections as usize * options.instances,
        options.all,
        elapsed.as_secs_f64(),
        rate,
    );

    store.close().await;
    match &schemas {
        Some(schemas) => schemas.drop_all().await,
        None => bare_sqlite_updates(&dir.path().join("bare.db"), options.users).await,
    }
}

/// `users` expired pairs, saved 16 at a time.
async fn seed(sandbox: &Sandbox, store: &SqlStore, users: u32) {
    let handle = sandbox.handle();
    let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let logins: Vec<_> = (1..=users)
        .map(|i| {
            let issued = handle
                .issue_tokens(
                    user(i).get(),
                    DEFAULT_CLIENT_ID,
                    &["user.metrics"],
                    Duration::ZERO,
                )
                .expect("issued tokens");
            testing::credentials(
                user(i),
                &issued.access_token,
                &issued.refresh_token,
                expired,
            )
        })
        .collect();
    for chunk in logins.chunks(16) {
        let saves = chunk.iter().map(|login| {
            let store = store.clone();
            async move {
                store
                    .save(login.user_id(), login, Expected::Absent)
                    .await
                    .expect("saved")
            }
        });
        futures_util::future::join_all(saves).await;
    }
}

fn spawn(dir: &Path, index: usize, place: &Place, sandbox: &Sandbox, options: &Options) -> Child {
    Command::new(std::env::current_exe().expect("this program"))
        .arg("child")
        .arg(dir)
        .arg(index.to_string())
        .arg(&place.url)
        .arg(place.schema.as_deref().unwrap_or(""))
        .arg(sandbox.base_url().as_str())
        .args(to_args(options))
        .spawn()
        .expect("an instance")
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One instance: a fleet over its own pool, asking for its users (or all) at once.
async fn instance(dir: &Path, index: usize, place: &Place, sandbox: &str, options: &Options) {
    let store = open(place, options).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.parse().expect("the sandbox's URL"));
    let mut builder = Fleet::builder(client, shared)
        .capacity(options.users as usize)
        .limiter(Arc::new(Unlimited));
    if let Some(n) = options.concurrent_refreshes {
        builder = builder.concurrent_refreshes(n);
    }
    let fleet = builder.build().expect("a fleet");
    let mine: Vec<UserId> = (1..=options.users)
        .filter(|i| options.all || (*i as usize) % options.instances == index)
        .map(user)
        .collect();
    if let Some(n) = options.connections {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while store.open_connections() < n && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    std::fs::write(dir.join(format!("ready-{index}")), b"").expect("the ready file");
    wait_for_file(&dir.join("go")).await;
    let tasks: Vec<_> = mine
        .into_iter()
        .map(|user| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.access_token(user).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a join").expect("a token");
    }
    store.close().await;
}

/// The bound on SQLite: one-row durable updates (WAL, `synchronous = FULL`, as the store opens
/// its file), one after another on one connection, of a table of 1,000 rows.
async fn bare_sqlite_updates(path: &Path, updates: u32) {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .expect("a SQLite file");
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("a table");
    sqlx::query("WITH RECURSIVE ids(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM ids WHERE id < 1000) INSERT INTO rows SELECT id, 0 FROM ids")
        .execute(&mut connection)
        .await
        .expect("rows");
    let start = Instant::now();
    for i in 0..updates {
        sqlx::query("UPDATE rows SET n = n + 1 WHERE id = ?")
            .bind(i64::from(i % 1000) + 1)
            .execute(&mut connection)
            .await
            .expect("an update");
    }
    let elapsed = start.elapsed();
    println!(
        "bare_sqlite_updates={} elapsed_s={:.3} updates_per_s={:.0}",
        updates,
        elapsed.as_secs_f64(),
        f64::from(updates) / elapsed.as_secs_f64()
    );
}
