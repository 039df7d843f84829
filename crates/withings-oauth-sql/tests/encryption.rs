//! Encryption at rest: a ciphertext moved to another user fails authentication and the row is
//! left as it was; a dump of the database shows no token; a key rotation re-encrypts every row
//! while sessions keep working.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use withings_oauth::{Client, Expected, Session, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, User,
};

const ALICE: UserId = UserId::new(501);
const BOB: UserId = UserId::new(502);

fn creds(user: UserId, tag: &str) -> withings_oauth::Credentials {
    testing::credentials(
        user,
        &format!("access-{tag}-secret"),
        &format!("refresh-{tag}-secret"),
        chrono::Utc::now() + chrono::TimeDelta::hours(3),
    )
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

async fn sqlite_with_keys(dir: &tempfile::TempDir, keys: &str) -> SqlStore {
    SqlStore::connect(
        &support::sqlite_url(dir),
        SqlOptions::default().keys(Keyring::parse(keys).unwrap()),
    )
    .await
    .unwrap()
}

async fn raw_pool(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&support::sqlite_url(dir))
        .await
        .unwrap()
}

async fn row_bytes(raw: &sqlx::SqlitePool, user: UserId) -> (i64, Vec<u8>, Vec<u8>) {
    let row = sqlx::query(
        "SELECT version, access_token, refresh_token FROM withings_credentials WHERE user_id = $1",
    )
    .bind(user.get() as i64)
    .fetch_one(raw)
    .await
    .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_ciphertext_copied_onto_another_users_row_fails_authentication_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_with_keys(&dir, support::KEYS).await;
    for (user, tag) in [(ALICE, "alice"), (BOB, "bob")] {
        store
            .save(user, &creds(user, tag), Expected::Absent)
            .await
            .unwrap();
    }

    // Someone with write access to the database gives Bob Alice's refresh token.
    let raw = raw_pool(&dir).await;
    sqlx::query(
        "UPDATE withings_credentials SET refresh_token = \
         (SELECT refresh_token FROM withings_credentials WHERE user_id = $1) WHERE user_id = $2",
    )
    .bind(ALICE.get() as i64)
    .bind(BOB.get() as i64)
    .execute(&raw)
    .await
    .unwrap();
    let tampered = row_bytes(&raw, BOB).await;

    let error = store.load(BOB).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unreadable { .. }), "{error:?}");
    assert!(message.contains("user 502"), "{message}");
    assert!(message.contains("failed authentication"), "{message}");
    assert!(!message.contains("secret"), "{message}");

    // A session can't start from it, and it writes nothing over it.
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let restored = Session::restore(&client("http://127.0.0.1:9/"), shared, BOB).await;
    assert!(restored.is_err());
    assert_eq!(row_bytes(&raw, BOB).await, tampered, "the row is untouched");
    assert!(
        store.load(ALICE).await.unwrap().is_some(),
        "Alice is unaffected"
    );
}

fn holds_a_token(bytes: &[u8]) -> bool {
    bytes.windows(b"-secret".len()).any(|w| w == b"-secret")
}

#[tokio::test]
async fn a_sqlite_dump_and_the_raw_file_hold_no_token_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_with_keys(&dir, support::KEYS).await;
    for i in 0..20 {
        let user = UserId::new(600 + i);
        let v = store
            .save(user, &creds(user, &format!("u{i}")), Expected::Absent)
            .await
            .unwrap();
        store
            .save(
                user,
                &creds(user, &format!("u{i}-next")),
                Expected::Version(v),
            )
            .await
            .unwrap();
    }
    let raw = raw_pool(&dir).await;
    let rows = sqlx::query("SELECT * FROM withings_credentials")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    for row in &rows {
        for i in 0..row.len() {
            let value: Option<Vec<u8>> = row
                .try_get::<Option<Vec<u8>>, _>(i)
                .or_else(|_| {
                    row.try_get::<Option<String>, _>(i)
                        .map(|s| s.map(String::into_bytes))
                })
                .unwrap_or_default();
            assert!(!holds_a_token(&value.unwrap_or_default()), "column {i}");
        }
    }
    raw.close().await;
    store.close().await;
    for name in ["tokens.db", "tokens.db-wal"] {
        let path = dir.path().join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !holds_a_token(&bytes),
                "{} holds a token in clear",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_holds_no_token_in_clear() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let store = support::postgres_store(
        schemas.url(),
        &schema,
        SqlOptions::default().keys(support::keys()),
    )
    .await;
    for i in 0..20 {
        let user = UserId::new(600 + i);
        store
            .save(user, &creds(user, &format!("u{i}")), Expected::Absent)
            .await
            .unwrap();
    }
    let raw = sqlx::PgPool::connect(schemas.url()).await.unwrap();
    let dump: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT row_to_json(c)::text FROM \"{schema}\".withings_credentials c"
    ))
    .fetch_all(&raw)
    .await
    .unwrap();
    assert_eq!(dump.len(), 20);
    for row in &dump {
        assert!(!row.contains("-secret"), "{row}");
        assert!(row.contains("\"key_id\":\"k2\""), "{row}");
    }
    raw.close().await;
    store.close().await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_re_encrypts_every_row_while_sessions_keep_working() {
    const USERS: u32 = 30;
    let sandbox = Sandbox::start(SandboxConfig::default().seed_users(USERS).rate_limit(None))
        .await
        .unwrap();
    let handle = sandbox.handle();
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<UserId> = (1..=USERS)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect();

    // Stored under the old key alone.
    let old = sqlite_with_keys(&dir, support::OLD_KEY).await;
    for &user in &users {
        let issued = handle
            .issue_tokens(
                user.get(),
                DEFAULT_CLIENT_ID,
                &["user.metrics"],
                Duration::ZERO,
            )
            .unwrap();
        let expired = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        old.save(
            user,
            &testing::credentials(user, &issued.access_token, &issued.refresh_token, expired),
            Expected::Absent,
        )
        .await
        .unwrap();
    }
    old.close().await;

    // The new key first, the old one kept for reading: sessions run while the sweep runs.
    let store = sqlite_with_keys(&dir, support::KEYS).await;
    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let client = client(sandbox.base_url().as_str());
    let mut sessions = Vec::new();
    for &user in &users {
        sessions.push(
            Session::restore(&client, shared.clone(), user)
                .await
                .unwrap(),
        );
    }
    let refreshing: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.access_token().await }))
        .collect();
    let rotation = store.rotate_keys().await.unwrap();
    for task in refreshing {
        task.await.unwrap().unwrap();
    }
    assert!(rotation.unreadable.is_empty(), "{rotation:?}");
    // Rows the sessions saved meanwhile were sealed with the new key by the sessions.
    let again = store.rotate_keys().await.unwrap();
    assert_eq!(again.rewritten, 0, "the first sweep left nothing behind");

    // The old key can go: every row opens with the new key alone.
    let new_only = sqlite_with_keys(&dir, "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").await;
    for &user in &users {
        assert!(new_only.load(user).await.unwrap().is_some(), "user {user}");
    }
    let raw = raw_pool(&dir).await;
    let keys: Vec<Option<String>> = sqlx::query_scalar("SELECT key_id FROM withings_credentials")
        .fetch_all(&raw)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| k.as_deref() == Some("k2")), "{keys:?}");
    // And the sessions keep working: each still has its fresh token, one refresh per user.
    for session in &sessions {
        session.access_token().await.unwrap();
    }
    let counters = handle.counters();
    assert_eq!(counters.refresh_granted, u64::from(USERS));
    assert_eq!(counters.refresh_dead_token, 0);
}

#[tokio::test]
async fn a_clear_database_is_encrypted_by_one_explicit_step_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let clear = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    assert!(clear.clear_text_warning().unwrap().contains("clear text"));
    clear
        .save(ALICE, &creds(ALICE, "alice"), Expected::Absent)
        .await
        .unwrap();

    // Keys alone don't start writing sealed logins beside clear ones: the step is explicit.
    let keys = || SqlOptions::default().keys(support::keys());
    let refused = SqlStore::connect(&url, keys()).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Encryption { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("store encrypt"), "{refused}");

    let sealing = SqlStore::encrypt_clear_rows(&url, keys()).await.unwrap();
    assert_eq!(sealing.rewritten, 1);
    assert!(sealing.complete(), "{sealing:?}");
    let (_, access, refresh) = row_bytes(&raw_pool(&dir).await, ALICE).await;
    assert!(!holds_a_token(&access) && !holds_a_token(&refresh));
    let encrypted = SqlStore::connect(&url, keys()).await.unwrap();
    assert!(encrypted.clear_text_warning().is_none());
    assert!(encrypted.load(ALICE).await.unwrap().is_some());

    // The program still running without keys can neither read it nor write in clear...
    let error = clear.load(ALICE).await.unwrap_err().to_string();
    assert!(error.contains("no key is configured"), "{error}");
    let written = clear.save(BOB, &creds(BOB, "bob"), Expected::Absent).await;
    assert!(
        matches!(written, Err(StoreError::Encryption { .. })),
        "{written:?}"
    );
    // ...one started without keys is refused, and the step does not run twice.
    let keyless = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap_err();
    assert!(
        keyless.to_string().contains("WITHINGS_STORE_KEYS"),
        "{keyless}"
    );
    let again = SqlStore::encrypt_clear_rows(&url, keys())
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already encrypted"), "{again}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_file_and_its_journal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_with_keys(&dir, support::KEYS).await;
    store
        .save(ALICE, &creds(ALICE, "alice"), Expected::Absent)
        .await
        .unwrap();
    for name in ["tokens.db", "tokens.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {:o}", mode & 0o777);
    }
}
