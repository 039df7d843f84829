//! The pending-login store on both backends: the conformance checks (with and without keys),
//! two store handles racing for one login, the state sealed at rest, purges and the cap seen
//! in the table, and no state in a message.

mod support;

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use withings_oauth::testing::ManualClock;
use withings_oauth::testing::pending_conformance::{self, Setup, parked};
use withings_oauth::{BrowserBinding, Clock, PendingLoginError, PendingLoginStore};
use withings_oauth_sql::{SqlOptions, SqlPendingLogins, SqlStore};

fn configured(store: &SqlStore, setup: &Setup) -> Arc<dyn PendingLoginStore> {
    Arc::new(
        store
            .pending_logins()
            .with_ttl(setup.ttl)
            .with_max_per_owner(setup.per_owner)
            .with_clock(setup.clock.clone()),
    )
}

fn options(keys: bool) -> SqlOptions {
    if keys {
        SqlOptions::default().keys(support::keys())
    } else {
        SqlOptions::default()
    }
}

/// One database, opened once per call: `open()` gives a new handle with its own pool.
enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Database {
    fn sqlite() -> Self {
        Database::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres(schemas: &support::Schemas) -> Self {
        Database::Postgres(schemas.fresh())
    }

    async fn open(&self, keys: bool) -> SqlStore {
        match self {
            Database::Sqlite(dir) => SqlStore::connect(&support::sqlite_url(dir), options(keys))
                .await
                .unwrap(),
            Database::Postgres(schema) => {
                support::postgres_store(&support::database_url(), schema, options(keys)).await
            }
        }
    }

    /// A table's row count, read on `store`'s database through a pool of its own.
    async fn count(&self, where_clause: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM withings_pending_logins WHERE {where_clause}");
        match self {
            Database::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir))
                    .await
                    .unwrap();
                sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
            }
            Database::Postgres(schema) => {
                let pool = postgres_pool(schema).await;
                sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
            }
        }
    }

    /// The bytes of the `state` column of the row stored under `hash`.
    async fn state_column(&self, hash: &str) -> Vec<u8> {
        let sql = "SELECT state FROM withings_pending_logins WHERE state_hash = $1";
        match self {
            Database::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql)
                    .bind(hash)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            Database::Postgres(schema) => {
                let pool = postgres_pool(schema).await;
                sqlx::query_scalar(sql)
                    .bind(hash)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs `sql` (one statement) on the database, outside the store.
    async fn execute(&self, sql: &str) {
        match self {
            Database::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir))
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            Database::Postgres(schema) => {
                let pool = postgres_pool(schema).await;
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
        }
    }
}

async fn postgres_pool(schema: &str) -> sqlx::PgPool {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(&support::database_url())
        .unwrap()
        .options([("search_path", schema)]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_pending_login_checks_with_and_without_keys() {
    let databases = std::sync::Mutex::new(Vec::new());
    for keys in [false, true] {
        pending_conformance::run(|setup| {
            let db = Database::sqlite();
            let opened = async move { (configured(&db.open(keys).await, &setup), db) };
            let databases = &databases;
            async move {
                let (store, db) = opened.await;
                // Each file outlives the check that uses it.
                databases.lock().unwrap().push(db);
                store
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_pending_login_checks_with_and_without_keys() {
    let schemas = support::Schemas::new();
    for keys in [false, true] {
        pending_conformance::run(|setup| {
            let db = Database::postgres(&schemas);
            async move { configured(&db.open(keys).await, &setup) }
        })
        .await;
    }
    schemas.drop_all().await;
}

/// Two handles with pools of their own, as two instances would have, take the same login at
/// the same moment, 50 times: exactly one gets it each time, the other finds nothing.
async fn two_instances_race(db: &Database) {
    let a = db.open(true).await.pending_logins();
    let b = db.open(true).await.pending_logins();
    for round in 0..50 {
        let browser = BrowserBinding::new_random().unwrap();
        let (login, hash) = parked("alice", &browser.hash(), Utc::now());
        a.put(login).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let racers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|instance| {
                let (barrier, hash, browser) = (barrier.clone(), hash.clone(), browser.hash());
                tokio::spawn(async move {
                    barrier.wait().await;
                    instance.take(&hash, &browser).await.map(|_| ())
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) => won += 1,
                Err(PendingLoginError::Unknown) => {}
                Err(other) => panic!("round {round}: the loser finds nothing, not {other:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_handles_racing_for_one_login_give_it_to_exactly_one() {
    two_instances_race(&Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_pools_racing_for_one_login_give_it_to_exactly_one() {
    let schemas = support::Schemas::new();
    two_instances_race(&Database::postgres(&schemas)).await;
    schemas.drop_all().await;
}

/// With keys the `state` column holds no clear state; without, it does (format byte 0).
async fn state_sealed_only_with_keys(db: &Database) {
    let browser = BrowserBinding::new_random().unwrap();
    for keys in [false, true] {
        let store = db.open(keys).await.pending_logins();
        let (login, hash) = parked("alice", &browser.hash(), Utc::now());
        let state = login.reveal_state().expose_secret().to_owned();
        store.put(login).await.unwrap();
        let column = db.state_column(hash.as_str()).await;
        let in_clear = column.windows(state.len()).any(|w| w == state.as_bytes());
        assert_eq!(in_clear, !keys, "keys: {keys}");
        let taken = store.take(&hash, &browser.hash()).await.unwrap();
        assert_eq!(taken.reveal_state().expose_secret(), state);
    }
}

#[tokio::test]
async fn sqlite_seals_the_state_at_rest_when_keys_are_set() {
    state_sealed_only_with_keys(&Database::sqlite()).await;
}

#[tokio::test]
async fn postgres_seals_the_state_at_rest_when_keys_are_set() {
    let schemas = support::Schemas::new();
    state_sealed_only_with_keys(&Database::postgres(&schemas)).await;
    schemas.drop_all().await;
}

/// What the table holds: a put deletes every expired row and the owner's logins beyond the
/// default cap of 5; a damaged row is an error that shows no state and is not handed out.
async fn purges_and_cap_in_the_table(db: &Database) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store: SqlPendingLogins = db
        .open(true)
        .await
        .pending_logins()
        .with_clock(clock.clone());
    let browser = BrowserBinding::new_random().unwrap();
    for owner in ["bob", "carol"] {
        store
            .put(parked(owner, &browser.hash(), clock.now()).0)
            .await
            .unwrap();
    }
    clock.advance(TimeDelta::minutes(11));
    let mut alices = Vec::new();
    for _ in 0..7 {
        clock.advance(TimeDelta::seconds(1));
        let (login, hash) = parked("alice", &browser.hash(), clock.now());
        store.put(login).await.unwrap();
        alices.push(hash);
    }
    assert_eq!(db.count("owner <> 'alice'").await, 0, "expired rows purged");
    assert_eq!(db.count("owner = 'alice'").await, 5, "the default cap");
    assert!(matches!(
        store.take(&alices[1], &browser.hash()).await.unwrap_err(),
        PendingLoginError::Unknown
    ));

    // A damaged state: refused with a message naming neither the state nor the hashes.
    let victim = &alices[6];
    db.execute(&format!(
        "UPDATE withings_pending_logins SET state = (SELECT state FROM withings_pending_logins \
         WHERE state_hash = '{}') WHERE state_hash = '{}'",
        alices[5].as_str(),
        victim.as_str()
    ))
    .await;
    let error = store.take(victim, &browser.hash()).await.unwrap_err();
    let shown = format!("{error} {error:?} {store:?}");
    assert!(matches!(error, PendingLoginError::Store(_)), "{shown}");
    assert!(shown.contains("start the login again"), "{shown}");
    for secret in [victim.as_str(), alices[5].as_str(), browser.hash().as_str()] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(
        db.count("owner = 'alice'").await,
        4,
        "the damaged row is gone"
    );

    // A row moved to another owner in the database (to link alice's Withings account to
    // mallory's): refused as damaged, never handed out under the new owner.
    let moved = &alices[4];
    db.execute(&format!(
        "UPDATE withings_pending_logins SET owner = 'mallory' WHERE state_hash = '{}'",
        moved.as_str()
    ))
    .await;
    let error = store.take(moved, &browser.hash()).await.unwrap_err();
    assert!(matches!(error, PendingLoginError::Store(_)), "{error:?}");
    assert!(
        error.to_string().contains("start the login again"),
        "{error}"
    );
}

#[tokio::test]
async fn sqlite_purges_expired_rows_and_caps_each_owner() {
    purges_and_cap_in_the_table(&Database::sqlite()).await;
}

#[tokio::test]
async fn postgres_purges_expired_rows_and_caps_each_owner() {
    let schemas = support::Schemas::new();
    purges_and_cap_in_the_table(&Database::postgres(&schemas)).await;
    schemas.drop_all().await;
}
