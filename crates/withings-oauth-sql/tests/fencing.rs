//! Fencing: a lease holder stopped (SIGSTOP) between taking its lease and sending its refresh
//! request, past its lease, while another process takes the lease over and refreshes, sends
//! nothing once resumed: it finds its lease ended, takes it again, and adopts what the other
//! stored. The sandbox runs with strict rotation, so a rotated refresh token presented again
//! would be counted and would end the login; on PostgreSQL and on SQLite.
//!
//! The test binary re-executes itself: the ignored test `fencing_child` is the holder, told
//! what to do through `WITHINGS_SQL_FENCING_*` variables. The sandbox runs in the parent.

#![cfg(unix)]

mod support;

use support::Database;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use withings_oauth::{AuthMethod, Client, Expected, Session, TokenStore, UserId, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, LOOPBACK_CALLBACK, SEEDED_USERID,
    Sandbox, SandboxConfig,
};

const USER: UserId = UserId::new(SEEDED_USERID);

impl Database {
    /// The owner of the user's lease row, if there is one.
    async fn lease_owner(&self) -> Option<String> {
        const SQL: &str = "SELECT owner FROM withings_leases WHERE user_id = $1";
        let user = USER.get() as i64;
        match self {
            Database::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                let owner = sqlx::query_scalar(SQL)
                    .bind(user)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                owner
            }
            Database::Postgres(schemas, schema) => {
                let pool = sqlx::PgPool::connect(schemas.url()).await.unwrap();
                let sql = SQL.replace("withings_leases", &format!("\"{schema}\".withings_leases"));
                let owner = sqlx::query_scalar(&sql)
                    .bind(user)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                owner
            }
        }
    }
}

async fn open(url: &str, schema: &str) -> SqlStore {
    support::open_in(url, schema, SqlOptions::default().keys(support::keys())).await
}

/// A client that signs its token calls: each refresh asks for a nonce first, which the test
/// slows down to stop the holder between its lease and its refresh request.
fn client(base: &str) -> Client {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(base.parse().unwrap())
        .auth_method(AuthMethod::Signature)
        .build()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

async fn a_holder_paused_past_its_lease_sends_nothing(database: Database) {
    let sandbox = Sandbox::start(SandboxConfig::default().strict_rotation(true))
        .await
        .unwrap();
    let handle = sandbox.handle();
    let store = open(&database.url(), database.schema()).await;
    let issued = handle
        .issue_tokens(
            SEEDED_USERID,
            DEFAULT_CLIENT_ID,
            &["user.metrics"],
            Duration::ZERO,
        )
        .unwrap();
    let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let login = testing::credentials(USER, &issued.access_token, &issued.refresh_token, expired);
    store.save(USER, &login, Expected::Absent).await.unwrap();
    // The holder's nonce comes a second late: it is stopped while waiting for it, lease held.
    handle.inject_fault(Endpoint::Signature, Fault::Delay(Duration::from_secs(1)), 1);

    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fencing_child", "--ignored", "--nocapture"])
        .env("WITHINGS_SQL_FENCING_URL", database.url())
        .env("WITHINGS_SQL_FENCING_SCHEMA", database.schema())
        .env("WITHINGS_SQL_FENCING_SANDBOX", sandbox.base_url().as_str())
        .env("WITHINGS_SQL_FENCING_DIR", dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner = loop {
        if let Some(owner) = database.lease_owner().await {
            break owner;
        }
        assert!(Instant::now() < deadline, "the holder never took the lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        owner.starts_with(&format!("pid{}-", holder.id())),
        "{owner}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&holder, "-STOP");

    // Another process (here, the test) takes the lease over once it expired, and refreshes.
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let client = client(sandbox.base_url().as_str());
    let session = Session::restore(&client, shared, USER).await.unwrap();
    let token = tokio::time::timeout(Duration::from_secs(30), session.access_token())
        .await
        .expect("the stopped holder's lease was never taken over")
        .unwrap();
    assert_eq!(handle.counters().refresh_granted, 1);

    signal(&holder, "-CONT");
    let status = tokio::task::spawn_blocking(move || holder.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the holder failed: {status}");

    let counters = handle.counters();
    assert_eq!(
        counters.rotated_refresh_reused, 0,
        "the resumed holder presented the rotated refresh token"
    );
    assert_eq!(counters.chains_killed, 0, "the login's chain was killed");
    assert_eq!(
        counters.refresh_granted, 1,
        "the resumed holder refreshed again"
    );
    let stored = store.load(USER).await.unwrap().unwrap();
    let stored = stored.credentials().expect("the login is kept");
    assert_eq!(stored.access_token().expose_secret(), token.expose_secret());
    assert_eq!(
        read(&dir.path().join("token")),
        token.expose_secret(),
        "the resumed holder adopted the stored login"
    );
    store.close().await;
    database.drop().await;
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stopped_past_its_lease_on_postgres_presents_no_rotated_token() {
    a_holder_paused_past_its_lease_sends_nothing(Database::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stopped_past_its_lease_on_sqlite_presents_no_rotated_token() {
    a_holder_paused_past_its_lease_sends_nothing(Database::sqlite()).await;
}

fn var(name: &str) -> String {
    std::env::var(format!("WITHINGS_SQL_FENCING_{name}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the fencing tests"]
async fn fencing_child() {
    let Ok(url) = std::env::var("WITHINGS_SQL_FENCING_URL") else {
        panic!("run by the fencing tests, which set WITHINGS_SQL_FENCING_URL");
    };
    let store = open(&url, &var("SCHEMA")).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let session = Session::restore(&client(&var("SANDBOX")), shared, USER)
        .await
        .unwrap();
    let token = session.access_token().await.unwrap();
    std::fs::write(
        PathBuf::from(var("DIR")).join("token"),
        token.expose_secret(),
    )
    .unwrap();
    store.close().await;
}
