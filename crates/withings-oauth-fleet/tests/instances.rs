//! Fleets in several processes sharing one PostgreSQL database, against the sandbox.
//!
//! - 4 instances and 1,000 users whose tokens all expired, every instance asking for every
//!   user at once: each user is refreshed exactly once, no rotated refresh token is used again,
//!   and every instance ends with every user's newest token.
//! - An instance killed in the middle of a sweep, holding leases: nothing is lost, and another
//!   instance's sweep renews the rest once the dead instance's leases expire.
//!
//! The test binary re-executes itself: the ignored test `instance_child` is the child process,
//! told what to do through `WITHINGS_FLEET_TEST_*` variables. The sandbox runs in the parent.
//! Needs `WITHINGS_TEST_DATABASE_URL` (`source .ci/postgres.sh`); fails without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use withings_oauth::{BoxFuture, Client, ClientBuilder, Expected, TokenStore, UserId, testing};
use withings_oauth_fleet::{Fleet, FleetEvent, RateLimiter};
use withings_oauth_sql::testing::{Schemas, postgres_store};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore, sqlx};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, TokenKind,
    User,
};

const PROCESSES: usize = 4;
/// The cap on every lease of the kill test: how long the others wait for a dead holder.
const SHORT_LEASE: Duration = Duration::from_secs(3);
/// The lease of the instances that refresh everyone at once. That test counts refreshes, not
/// recovery: with a short lease a refresh request gets little time, which a sandbox starved by
/// five processes on two cores may not meet, and a request cut off is retried (a second
/// refresh the test would count). A longer lease gives the requests the time.
const LOADED_MACHINE_LEASE: Duration = Duration::from_secs(30);
/// The killed instance's sweeps running at once: each holds a lease when it is killed. One:
/// two sweeps of one instance may pick the same user in the moment between a sweep's claim and
/// its session's lease, and the second then waits for that lease, which its live holder keeps
/// renewing, so it never reaches the limiter that tells the test it is held.
const SWEEPS: usize = 1;
/// Refreshes the killed instance gets through before it stops, holding leases.
const SWEPT_BEFORE_KILL: usize = 60;

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn user_ids(users: u32) -> Vec<UserId> {
    (1..=users)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect()
}

/// A schema of the test database for one test, dropped at the end.
struct Schema {
    schemas: Schemas,
    url: String,
    name: String,
}

impl Schema {
    fn new() -> Self {
        let schemas = Schemas::new();
        let name = schemas.fresh();
        Self {
            url: schemas.url().to_owned(),
            name,
            schemas,
        }
    }

    async fn drop(self) {
        self.schemas.drop_all().await;
    }
}

async fn open(url: &str, schema: &str, lease_ttl: Duration) -> SqlStore {
    let options = SqlOptions::default()
        .keys(Keyring::parse(KEYS).unwrap())
        .lease_ttl(lease_ttl);
    postgres_store(url, schema, options).await
}

/// A sandbox with `users` users, and a store holding each one's already-expired pair.
async fn seeded(schema: &Schema, users: u32) -> (Sandbox, SqlStore) {
    let sandbox = Sandbox::start(SandboxConfig::default().seed_users(users).rate_limit(None))
        .await
        .unwrap();
    let store = open(&schema.url, &schema.name, SHORT_LEASE).await;
    let handle = sandbox.handle();
    let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    for user in user_ids(users) {
        let issued = handle
            .issue_tokens(
                user.get(),
                DEFAULT_CLIENT_ID,
                &["user.metrics"],
                Duration::ZERO,
            )
            .unwrap();
        let credentials =
            testing::credentials(user, &issued.access_token, &issued.refresh_token, expired);
        store
            .save(user, &credentials, Expected::Absent)
            .await
            .unwrap();
    }
    (sandbox, store)
}

/// No limit: the sandbox's rate limit is off, and these tests count refreshes, not pace them.
struct Unlimited;

impl RateLimiter for Unlimited {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn rate_limited(&self) {}
}

/// Lets `allowed` requests through, then holds every further one forever, and creates `file`
/// once `holding` requests are held.
struct Stopper {
    allowed: usize,
    holding: usize,
    passed: AtomicUsize,
    held: AtomicUsize,
    file: PathBuf,
}

impl RateLimiter for Stopper {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.passed.fetch_add(1, Ordering::SeqCst) < self.allowed {
                return;
            }
            if self.held.fetch_add(1, Ordering::SeqCst) + 1 == self.holding {
                std::fs::write(&self.file, b"").unwrap();
            }
            std::future::pending::<()>().await;
        })
    }
    fn rate_limited(&self) {}
}

fn client(sandbox: &str) -> ClientBuilder {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.parse().unwrap())
}

struct Spawn<'a> {
    mode: &'a str,
    schema: &'a Schema,
    sandbox: &'a Sandbox,
    dir: &'a Path,
    users: u32,
}

impl Spawn<'_> {
    fn child(&self, index: usize) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "instance_child", "--ignored", "--nocapture"])
            .env("WITHINGS_FLEET_TEST_MODE", self.mode)
            .env("WITHINGS_FLEET_TEST_URL", &self.schema.url)
            .env("WITHINGS_FLEET_TEST_SCHEMA", &self.schema.name)
            .env(
                "WITHINGS_FLEET_TEST_SANDBOX",
                self.sandbox.base_url().as_str(),
            )
            .env("WITHINGS_FLEET_TEST_DIR", self.dir)
            .env("WITHINGS_FLEET_TEST_INDEX", index.to_string())
            .env("WITHINGS_FLEET_TEST_USERS", self.users.to_string())
            .spawn()
            .unwrap()
    }
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

/// Every user's stored pair: (access token, refresh token).
async fn stored_pairs(store: &SqlStore, users: u32) -> BTreeMap<u64, (String, String)> {
    let mut pairs = BTreeMap::new();
    for user in user_ids(users) {
        let entry = store.load(user).await.unwrap().unwrap();
        let stored = entry.credentials().unwrap().reveal_for_storage();
        pairs.insert(user.get(), (stored.access_token, stored.refresh_token));
    }
    pairs
}

/// What the sandbox says about the store's pairs and its refreshes: each user refreshed exactly
/// once, no rotated refresh token used again, and each stored pair the user's newest, live one.
async fn assert_one_unbroken_refresh_each(sandbox: &Sandbox, store: &SqlStore, users: u32) {
    let handle = sandbox.handle();
    let counters = handle.counters();
    assert_eq!(
        counters.refresh_granted,
        u64::from(users),
        "one refresh per user, whatever the number of instances"
    );
    assert_eq!(
        counters.refresh_in_grace, 0,
        "no rotated refresh token was used again (no forked chain)"
    );
    assert_eq!(counters.refresh_dead_token, 0, "no rotated pair was lost");
    assert_eq!(counters.refresh_rejected, 0, "no refresh was refused");
    for user in user_ids(users) {
        assert_eq!(counters.user(user.get()).refresh_granted, 1, "user {user}");
    }
    // Live tokens: a stored refresh token must be live and not yet exchanged (the head of its
    // chain), a stored access token live.
    let live: BTreeMap<String, (TokenKind, bool)> = handle
        .live_tokens()
        .into_iter()
        .map(|t| (t.token, (t.kind, t.used)))
        .collect();
    for (user, (access, refresh)) in stored_pairs(store, users).await {
        assert!(
            matches!(live.get(&access), Some((TokenKind::Access, _))),
            "user {user}: the stored access token is not live"
        );
        assert!(
            matches!(live.get(&refresh), Some((TokenKind::Refresh, false))),
            "user {user}: the stored refresh token is not the newest of its chain"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_on_postgres_refresh_each_of_1000_users_once() {
    const USERS: u32 = 1_000;
    let schema = Schema::new();
    let (sandbox, store) = seeded(&schema, USERS).await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = Spawn {
        mode: "refresh",
        schema: &schema,
        sandbox: &sandbox,
        dir: dir.path(),
        users: USERS,
    };
    let mut children: Vec<Child> = (0..PROCESSES).map(|i| spawn.child(i)).collect();
    for (i, child) in children.iter_mut().enumerate() {
        let ready = dir.path().join(format!("ready-{i}"));
        testing::wait_for_file(&ready, child, Duration::from_secs(60)).await;
    }
    std::fs::write(dir.path().join("go"), b"").unwrap();
    for child in children {
        testing::wait_for_success(child).await;
    }

    assert_one_unbroken_refresh_each(&sandbox, &store, USERS).await;
    let stored: BTreeMap<u64, String> = stored_pairs(&store, USERS)
        .await
        .into_iter()
        .map(|(user, (access, _))| (user, access))
        .collect();
    for i in 0..PROCESSES {
        assert_eq!(
            tokens_of(dir.path(), i),
            stored,
            "instance {i} ended with every user's newest token"
        );
    }
    store.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_sweep_on_postgres_loses_nothing_and_another_sweeps_the_rest() {
    const USERS: u32 = 300;
    let schema = Schema::new();
    let (sandbox, store) = seeded(&schema, USERS).await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = Spawn {
        mode: "sweep",
        schema: &schema,
        sandbox: &sandbox,
        dir: dir.path(),
        users: USERS,
    };
    // Instance A sweeps with several sweeps at once; its limiter lets some refreshes through,
    // then holds every sweep's next request: each sweep holds the lease of the user it is
    // renewing. Then A is killed.
    let mut a = spawn.child(0);
    testing::wait_for_file(&dir.path().join("held-0"), &mut a, Duration::from_secs(60)).await;
    a.kill().unwrap(); // SIGKILL: no destructor runs, no lease is released
    a.wait().unwrap();
    let counters = sandbox.handle().counters();
    assert_eq!(
        counters.refresh_granted, SWEPT_BEFORE_KILL as u64,
        "the killed instance renewed users before it stopped"
    );
    // The users A was renewing when it died, and when their leases end.
    let asked = Instant::now();
    let held: BTreeMap<u64, Instant> = live_leases(&schema)
        .await
        .into_iter()
        .filter(|(user, _)| counters.user(*user).refresh_granted == 0)
        .map(|(user, left)| (user, asked + left))
        .collect();
    assert!(
        !held.is_empty(),
        "A died holding the leases of users it was renewing"
    );

    // Instance B sweeps until every user is renewed: those A held only once their leases
    // expired.
    let b = Fleet::builder(client(sandbox.base_url().as_str()), Arc::new(store.clone()))
        .limiter(Arc::new(Unlimited))
        .sweep_idle_after(Duration::ZERO)
        .build()
        .unwrap();
    let mut events = b.subscribe();
    let sweeper = b.spawn_sweeper(Duration::from_millis(250), usize::MAX);
    let left = USERS as usize - SWEPT_BEFORE_KILL;
    let mut renewed = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while renewed.len() < left {
            if let FleetEvent::Refreshed { user, .. } = events.recv().await.unwrap() {
                renewed.insert(user.get(), Instant::now());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("instance B renewed {} of {left} users", renewed.len()));
    drop(sweeper);
    for (user, lease_end) in &held {
        let at = renewed[user];
        // A little slack for the two clocks (the database's ends the lease).
        assert!(
            at + Duration::from_millis(100) >= *lease_end,
            "user {user}, whose lease the dead instance held, was renewed {:?} before the lease ended",
            lease_end.saturating_duration_since(at)
        );
    }

    assert_one_unbroken_refresh_each(&sandbox, &store, USERS).await;
    store.close().await;
    schema.drop().await;
}

/// The leases still in force, by user, and how long each has left (on the database's clock).
async fn live_leases(schema: &Schema) -> Vec<(u64, Duration)> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    let now_ms = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";
    let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT user_id, until_ms - {now_ms} FROM \"{}\".withings_leases WHERE until_ms > {now_ms}",
        schema.name
    ))
    .fetch_all(&mut connection)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(user, left)| (user as u64, Duration::from_millis(left as u64)))
        .collect()
}

fn var(name: &str) -> String {
    std::env::var(format!("WITHINGS_FLEET_TEST_{name}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the tests above"]
async fn instance_child() {
    let Ok(mode) = std::env::var("WITHINGS_FLEET_TEST_MODE") else {
        panic!("run by the tests above, which set WITHINGS_FLEET_TEST_MODE");
    };
    let dir = PathBuf::from(var("DIR"));
    let index = var("INDEX");
    let users: u32 = var("USERS").parse().unwrap();
    let lease = if mode == "sweep" {
        SHORT_LEASE
    } else {
        LOADED_MACHINE_LEASE
    };
    let store = open(&var("URL"), &var("SCHEMA"), lease).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());

    if mode == "sweep" {
        let stopper = Stopper {
            allowed: SWEPT_BEFORE_KILL,
            holding: SWEEPS,
            passed: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            file: dir.join(format!("held-{index}")),
        };
        let fleet = Fleet::builder(client(&var("SANDBOX")), shared)
            .limiter(Arc::new(stopper))
            .sweep_idle_after(Duration::ZERO)
            .build()
            .unwrap();
        let sweeps: Vec<_> = (0..SWEEPS)
            .map(|_| {
                let fleet = fleet.clone();
                tokio::spawn(async move { fleet.sweep_once(usize::MAX).await })
            })
            .collect();
        for sweep in sweeps {
            sweep.await.unwrap().unwrap();
        }
        unreachable!("the sweeps are held until the instance is killed");
    }

    let fleet = Fleet::builder(client(&var("SANDBOX")), shared)
        .limiter(Arc::new(Unlimited))
        .build()
        .unwrap();
    std::fs::write(dir.join(format!("ready-{index}")), b"").unwrap();
    while !dir.join("go").exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tasks: Vec<_> = user_ids(users)
        .into_iter()
        .map(|user| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.access_token(user).await })
        })
        .collect();
    let mut lines = String::new();
    for (user, task) in user_ids(users).into_iter().zip(tasks) {
        let token = task.await.unwrap().unwrap();
        lines.push_str(&format!("{} {}\n", user.get(), token.expose_secret()));
    }
    std::fs::write(dir.join(format!("tokens-{index}")), lines).unwrap();
    // Releases this instance's last leases before it exits.
    store.close().await;
}
