//! How long a user's token is out of reach after the process refreshing it is killed.
//!
//! For each backend, 20 times: a child process (this program, `child` mode) takes the user's
//! lease and sends its refresh request to the sandbox, which holds the answer back (a
//! `Fault::Delay`); once the sandbox has the request, the child is killed (SIGKILL: nothing
//! is released), and this process, another instance on the same database, asks for the
//! user's token. Prints the time from the kill to the token, median and worst.
//!
//! ```sh
//! source .ci/postgres.sh   # WITHINGS_TEST_DATABASE_URL, for the PostgreSQL half
//! cargo run --release -p withings-oauth-sql --example recovery
//! cargo run --release -p withings-oauth-sql --example recovery -- sqlite 5   # one backend, 5 kills
//! ```

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use withings_oauth::{Client, Expected, Session, TokenStore, UserId, testing};
use withings_oauth_sql::testing::Schemas;
use withings_oauth_sql::{Backend, Keyring, SqlOptions, SqlStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, LOOPBACK_CALLBACK, SEEDED_USERID,
    Sandbox, SandboxConfig,
};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const USER: UserId = UserId::new(SEEDED_USERID);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if args.first().map(String::as_str) == Some("child") {
        return runtime.block_on(child(&args[1], &args[2], &args[3]));
    }
    let backends: Vec<Backend> = match args.first().map(String::as_str) {
        None | Some("both") => vec![Backend::Sqlite, Backend::Postgres],
        Some("sqlite") => vec![Backend::Sqlite],
        Some("postgres") => vec![Backend::Postgres],
        Some(other) => panic!("unknown backend {other}: sqlite, postgres or both"),
    };
    let kills: usize = args
        .get(1)
        .map_or(20, |n| n.parse().expect("a number of kills"));
    for backend in backends {
        let times = runtime.block_on(measure(backend, kills));
        report(backend, &times);
    }
}

/// The store this program opens, in `schema` on PostgreSQL.
async fn open(url: &str, schema: &str) -> SqlStore {
    let mut options = SqlOptions::default().keys(Keyring::parse(KEYS).unwrap());
    if !schema.is_empty() {
        options = options.postgres_schema(schema);
    }
    SqlStore::connect(url, options)
        .await
        .unwrap_or_else(|e| panic!("could not open {url}: {e}"))
}

fn client(base: &str) -> Client {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(base.parse().unwrap())
        .build()
        .unwrap()
}

/// The times from each kill to the token, on `backend`.
async fn measure(backend: Backend, kills: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    // On PostgreSQL, a schema of the run's own (`recovery sqlite` needs no database).
    let schemas = (backend != Backend::Sqlite).then(Schemas::new);
    let (url, schema) = match &schemas {
        None => (
            format!("sqlite://{}", dir.path().join("tokens.db").display()),
            String::new(),
        ),
        Some(schemas) => (schemas.url().to_owned(), schemas.fresh()),
    };
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let handle = sandbox.handle();
    let store = open(&url, &schema).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let client = client(sandbox.base_url().as_str());
    let mut times = Vec::with_capacity(kills);
    for _ in 0..kills {
        // An expired login, as stored by the last refresh with its token run out.
        let issued = handle
            .issue_tokens(
                SEEDED_USERID,
                DEFAULT_CLIENT_ID,
                &["user.metrics"],
                Duration::ZERO,
            )
            .unwrap();
        let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        let login =
            testing::credentials(USER, &issued.access_token, &issued.refresh_token, expired);
        let expected = match store.load(USER).await.unwrap() {
            Some(entry) => Expected::Version(entry.version),
            None => Expected::Absent,
        };
        store.save(USER, &login, expected).await.unwrap();
        // The child's refresh reaches the sandbox, is processed, and its answer held back.
        handle.inject_fault(Endpoint::Token, Fault::Delay(Duration::from_secs(30)), 1);
        let refreshes = handle.counters().token_refresh;

        let mut child = spawn(&url, &schema, sandbox.base_url().as_str());
        let deadline = Instant::now() + Duration::from_secs(60);
        while handle.counters().token_refresh == refreshes {
            assert!(
                Instant::now() < deadline,
                "the child never sent its refresh"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the child ended early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap(); // SIGKILL: nothing is released
        let killed = Instant::now();
        child.wait().unwrap();

        let session = Session::restore(&client, shared.clone(), USER)
            .await
            .unwrap();
        session.access_token().await.unwrap();
        times.push(killed.elapsed());
    }
    store.close().await;
    if let Some(schemas) = schemas {
        schemas.drop_all().await;
    }
    times
}

fn spawn(url: &str, schema: &str, sandbox: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", url, schema, sandbox])
        .spawn()
        .unwrap()
}

/// The child: asks for the user's expired token, which takes the lease and refreshes.
async fn child(url: &str, schema: &str, sandbox: &str) {
    let store = open(url, schema).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store);
    let session = Session::restore(&client(sandbox), shared, USER)
        .await
        .unwrap();
    let _ = session.access_token().await;
    // Killed long before, while its refresh waits for the sandbox.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn report(backend: Backend, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2
    };
    let worst = sorted.last().copied().unwrap_or_default();
    let all: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect();
    println!(
        "{backend:?}: {} kills, from the kill to the token: median {:.2} s, worst {:.2} s ({} s)",
        times.len(),
        median.as_secs_f64(),
        worst.as_secs_f64(),
        all.join(", ")
    );
}
