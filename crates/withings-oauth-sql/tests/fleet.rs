//! Several processes sharing one database: 4 OS processes and 200 users whose tokens all
//! expired, every process asking for every user's token at once. Each user is refreshed
//! exactly once, every process ends with the newest pair, and no rotated refresh token is used
//! again, on PostgreSQL and on SQLite; and when a process holding leases is killed, the others
//! take over once its leases expire and nothing is lost.
//!
//! The test binary re-executes itself: the ignored test `fleet_child` is the child process,
//! told what to do through `WITHINGS_SQL_FLEET_*` variables. The sandbox runs in the parent.

mod support;

use support::Database;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use withings_oauth::{Client, DEFAULT_LEASE_TTL, Expected, Session, TokenStore, UserId, testing};
use withings_oauth_sql::{DEFAULT_DATABASE_LEASE, SqlOptions, SqlStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, User,
};

const USERS: u32 = 200;
const PROCESSES: usize = 4;
/// The dead holder's lease cap in the kill test: how long the others wait for it.
const SHORT_LEASE: Duration = Duration::from_secs(3);
/// The lease of the processes that refresh everyone at once. This test counts refreshes, not
/// recovery: with the default 2 s lease a refresh request gets about 1.5 s, which a sandbox
/// starved by five processes on two cores may not meet, and a request cut off is retried (a
/// second refresh the test would count). A longer lease gives the requests the time.
const LOADED_MACHINE_LEASE: Duration = Duration::from_secs(30);

fn user_ids() -> Vec<UserId> {
    (1..=USERS)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect()
}

async fn open(url: &str, schema: &str, lease_ttl: Duration) -> SqlStore {
    let options = SqlOptions::default()
        .keys(support::keys())
        .lease_ttl(lease_ttl);
    support::open_in(url, schema, options).await
}

/// A sandbox with 200 users, and a store holding each one's already-expired pair.
async fn seeded(database: &Database) -> (Sandbox, SqlStore) {
    let sandbox = Sandbox::start(SandboxConfig::default().seed_users(USERS).rate_limit(None))
        .await
        .unwrap();
    let store = open(&database.url(), database.schema(), DEFAULT_DATABASE_LEASE).await;
    let handle = sandbox.handle();
    for user in user_ids() {
        let issued = handle
            .issue_tokens(
                user.get(),
                DEFAULT_CLIENT_ID,
                &["user.metrics"],
                Duration::ZERO,
            )
            .unwrap();
        let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        let credentials =
            testing::credentials(user, &issued.access_token, &issued.refresh_token, expired);
        store
            .save(user, &credentials, Expected::Absent)
            .await
            .unwrap();
    }
    (sandbox, store)
}

fn spawn(
    mode: &str,
    database: &Database,
    sandbox: &Sandbox,
    dir: &Path,
    index: usize,
    lease_ttl: Duration,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fleet_child", "--ignored", "--nocapture"])
        .env("WITHINGS_SQL_FLEET_MODE", mode)
        .env("WITHINGS_SQL_FLEET_URL", database.url())
        .env("WITHINGS_SQL_FLEET_SCHEMA", database.schema())
        .env("WITHINGS_SQL_FLEET_SANDBOX", sandbox.base_url().as_str())
        .env("WITHINGS_SQL_FLEET_DIR", dir)
        .env("WITHINGS_SQL_FLEET_INDEX", index.to_string())
        .env(
            "WITHINGS_SQL_FLEET_LEASE_TTL_MS",
            lease_ttl.as_millis().to_string(),
        )
        .spawn()
        .unwrap()
}

/// Each child's tokens, by user, as it wrote them.
fn tokens_of(dir: &Path, index: usize) -> BTreeMap<u64, String> {
    std::fs::read_to_string(dir.join(format!("tokens-{index}")))
        .unwrap()
        .lines()
        .map(|line| {
            let (user, token) = line.split_once(' ').unwrap();
            (user.parse().unwrap(), token.to_owned())
        })
        .collect()
}

async fn stored_tokens(store: &SqlStore) -> BTreeMap<u64, String> {
    let mut tokens = BTreeMap::new();
    for user in user_ids() {
        let entry = store.load(user).await.unwrap().unwrap();
        let credentials = entry.credentials().unwrap();
        tokens.insert(
            user.get(),
            credentials.access_token().expose_secret().to_owned(),
        );
    }
    tokens
}

/// Runs the refreshing children `indexes` at once and checks the outcome.
async fn refresh_everyone_at_once(
    database: &Database,
    sandbox: &Sandbox,
    store: &SqlStore,
    dir: &Path,
    indexes: std::ops::Range<usize>,
    lease_ttl: Duration,
) {
    let mut children: Vec<Child> = indexes
        .clone()
        .map(|i| spawn("refresh", database, sandbox, dir, i, lease_ttl))
        .collect();
    for (i, child) in indexes.clone().zip(&mut children) {
        let ready = dir.join(format!("ready-{i}"));
        testing::wait_for_file(&ready, child, Duration::from_secs(60)).await;
    }
    std::fs::write(dir.join("go"), b"").unwrap();
    for child in children {
        testing::wait_for_success(child).await;
    }

    let counters = sandbox.handle().counters();
    assert_eq!(
        counters.refresh_granted,
        u64::from(USERS),
        "one refresh per user, whatever the number of processes"
    );
    assert_eq!(
        counters.refresh_in_grace, 0,
        "no rotated refresh token was used again"
    );
    assert_eq!(counters.refresh_dead_token, 0, "no rotated pair was lost");
    for user in user_ids() {
        assert_eq!(counters.user(user.get()).refresh_granted, 1, "user {user}");
    }
    let stored = stored_tokens(store).await;
    for i in indexes {
        assert_eq!(
            tokens_of(dir, i),
            stored,
            "process {i} ended with every user's newest pair"
        );
    }
}

async fn four_processes_refresh_each_user_once(database: Database) {
    let (sandbox, store) = seeded(&database).await;
    let dir = tempfile::tempdir().unwrap();
    refresh_everyone_at_once(
        &database,
        &sandbox,
        &store,
        dir.path(),
        0..PROCESSES,
        LOADED_MACHINE_LEASE,
    )
    .await;
    store.close().await;
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_postgres_refresh_each_of_200_users_once() {
    four_processes_refresh_each_user_once(Database::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_one_sqlite_file_refresh_each_of_200_users_once() {
    four_processes_refresh_each_user_once(Database::sqlite()).await;
}

async fn a_killed_lease_holder_is_taken_over(database: Database) {
    let (sandbox, store) = seeded(&database).await;
    let dir = tempfile::tempdir().unwrap();
    // A process takes every user's lease, as if about to refresh them all, and dies.
    let mut holder = spawn("hold", &database, &sandbox, dir.path(), 9, SHORT_LEASE);
    testing::wait_for_file(
        &dir.path().join("ready-9"),
        &mut holder,
        Duration::from_secs(60),
    )
    .await;
    holder.kill().unwrap(); // SIGKILL: no destructor runs, no lease is released
    holder.wait().unwrap();
    let killed = Instant::now();

    refresh_everyone_at_once(
        &database,
        &sandbox,
        &store,
        dir.path(),
        0..PROCESSES - 1,
        // The survivors' own leases only bound their requests' time, as in the test above.
        LOADED_MACHINE_LEASE,
    )
    .await;
    assert!(
        killed.elapsed() >= SHORT_LEASE - Duration::from_millis(500),
        "the others waited for the dead holder's leases to expire ({:?})",
        killed.elapsed()
    );
    store.close().await;
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_holding_leases_on_postgres_is_taken_over() {
    a_killed_lease_holder_is_taken_over(Database::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_holding_leases_on_sqlite_is_taken_over() {
    a_killed_lease_holder_is_taken_over(Database::sqlite()).await;
}

fn var(name: &str) -> String {
    std::env::var(format!("WITHINGS_SQL_FLEET_{name}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the fleet tests"]
async fn fleet_child() {
    let Ok(mode) = std::env::var("WITHINGS_SQL_FLEET_MODE") else {
        panic!("run by the fleet tests, which set WITHINGS_SQL_FLEET_MODE");
    };
    let dir = PathBuf::from(var("DIR"));
    let index = var("INDEX");
    let lease_ttl = Duration::from_millis(var("LEASE_TTL_MS").parse().unwrap());
    let store = open(&var("URL"), &var("SCHEMA"), lease_ttl).await;

    if mode == "hold" {
        let mut leases = Vec::new();
        for user in user_ids() {
            leases.push(store.lease(user, DEFAULT_LEASE_TTL).await.unwrap());
        }
        std::fs::write(dir.join(format!("ready-{index}")), b"").unwrap();
        // Holds them until killed.
        tokio::time::sleep(Duration::from_secs(600)).await;
        unreachable!("the holder is killed long before");
    }

    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(var("SANDBOX").parse().unwrap())
        .build()
        .unwrap();
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let mut sessions = Vec::new();
    for user in user_ids() {
        sessions.push(
            Session::restore(&client, shared.clone(), user)
                .await
                .unwrap(),
        );
    }
    std::fs::write(dir.join(format!("ready-{index}")), b"").unwrap();
    while !dir.join("go").exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| tokio::spawn(async move { session.access_token().await }))
        .collect();
    let mut lines = String::new();
    for (user, task) in user_ids().into_iter().zip(tasks) {
        let token = task.await.unwrap().unwrap();
        lines.push_str(&format!("{} {}\n", user.get(), token.expose_secret()));
    }
    std::fs::write(dir.join(format!("tokens-{index}")), lines).unwrap();
    // Releases this process's last leases before it exits.
    store.close().await;
}
