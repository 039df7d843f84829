//! The CLI on a database store: `--store sqlite://...`, `store migrate-from` a tokens.json,
//! `token` refreshing through the database, `store rotate-key` with its count of each key, `store
//! encrypt`, and an encrypted database refused without its keys.

#![cfg(feature = "sql")]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::text;
use withings_oauth::{Credentials, Expected, TokenStore, UserId};
use withings_oauth_store::FileStore;
use withings_sandbox::{DEFAULT_CLIENT_ID, IssuedTokens, SEEDED_USERID, Sandbox, SandboxConfig};

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn run(home: &Path, sandbox: &Sandbox, store: &str, keys: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = common::command(home, sandbox, store, args);
    if let Some(keys) = keys {
        cmd.env("WITHINGS_STORE_KEYS", keys);
    }
    cmd.output().unwrap()
}

/// The seeded user's tokens, issued by the sandbox to live `lifetime` there, and the same
/// pair as credentials the store is told expire at `expires_at`.
fn issued_login(
    sandbox: &Sandbox,
    lifetime: Duration,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> (IssuedTokens, Credentials) {
    let issued = sandbox
        .handle()
        .issue_tokens(
            SEEDED_USERID,
            DEFAULT_CLIENT_ID,
            &["user.metrics"],
            lifetime,
        )
        .unwrap();
    let credentials = withings_oauth::testing::credentials(
        UserId::new(SEEDED_USERID),
        &issued.access_token,
        &issued.refresh_token,
        expires_at,
    );
    (issued, credentials)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_moves_into_an_encrypted_database_that_keeps_working_across_a_key_rotation() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let user = UserId::new(SEEDED_USERID);
    let (issued, credentials) = issued_login(
        &sandbox,
        Duration::ZERO,
        chrono::Utc::now() - chrono::TimeDelta::seconds(1),
    );
    let file = home.path().join("tokens.json");
    FileStore::open(&file)
        .unwrap()
        .save(user, &credentials, Expected::Absent)
        .await
        .unwrap();
    let db = format!("sqlite://{}", home.path().join("tokens.db").display());
    let file_arg = file.to_str().unwrap();

    let out = run(
        home.path(),
        &sandbox,
        &db,
        Some(K1),
        &["store", "migrate-from", file_arg],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Copied 1 login(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stderr).contains("clear text"),
        "{}",
        text(&out.stderr)
    );
    // Copying again keeps what the database has.
    let again = run(
        home.path(),
        &sandbox,
        &db,
        Some(K1),
        &["store", "migrate-from", file_arg],
    );
    assert!(
        text(&again.stderr).contains("already had user 1001"),
        "{}",
        text(&again.stderr)
    );

    // The expired pair is refreshed through the database.
    let out = run(home.path(), &sandbox, &db, Some(K1), &["token"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_ne!(token, issued.access_token);
    assert_eq!(sandbox.handle().counters().refresh_granted, 1);

    let out = run(
        home.path(),
        &sandbox,
        &db,
        Some(&format!("{K2},{K1}")),
        &["store", "rotate-key"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Re-encrypted 1 row(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("key k2: 1 login(s)"),
        "{}",
        text(&out.stderr)
    );

    // The old key is no longer needed, and the fresh token is served as is.
    let out = run(home.path(), &sandbox, &db, Some(K2), &["token"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), token);
    let out = run(home.path(), &sandbox, &db, Some(K2), &["status"]);
    assert!(
        text(&out.stdout).contains("user 1001"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(&home.path().join("tokens.db").display().to_string()));
    assert_eq!(sandbox.handle().counters().refresh_granted, 1);

    // A refresh right away: the first `token` released its lease before exiting.
    let started = std::time::Instant::now();
    let out = run(home.path(), &sandbox, &db, Some(K2), &["refresh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for a leaked lease"
    );
    let refreshed = run(home.path(), &sandbox, &db, Some(K2), &["token"]);
    let token = text(&refreshed.stdout).trim().to_owned();

    // Without the key, the encrypted database is refused, with the setting named.
    let out = run(home.path(), &sandbox, &db, None, &["token"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is encrypted"), "{stderr}");
    assert!(stderr.contains("WITHINGS_STORE_KEYS"), "{stderr}");
    assert!(!stderr.contains(&token), "{stderr}");

    let out = run(home.path(), &sandbox, &db, Some(K2), &["logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(home.path(), &sandbox, &db, Some(K2), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_refuse_a_file_store_and_a_database_that_is_down_shows_no_password() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("tokens.json");
    let out = run(
        home.path(),
        &sandbox,
        file.to_str().unwrap(),
        Some(K1),
        &["store", "rotate-key"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("this command works on a database"));

    let out = run(
        home.path(),
        &sandbox,
        "postgres://fleet:hunter2-pass@127.0.0.1:1/tokens",
        Some(K1),
        &["status"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("could not reach the token database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_used_without_keys_is_encrypted_once_by_store_encrypt() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let user = UserId::new(SEEDED_USERID);
    let (issued, credentials) = issued_login(
        &sandbox,
        Duration::from_secs(3600),
        chrono::Utc::now() + chrono::TimeDelta::hours(3),
    );
    let db = format!("sqlite://{}", home.path().join("tokens.db").display());
    let clear = withings_oauth_sql::SqlStore::connect(&db, Default::default())
        .await
        .unwrap();
    clear
        .save(user, &credentials, Expected::Absent)
        .await
        .unwrap();
    clear.close().await;

    // Keys alone are refused while logins are in clear text, with the way out named.
    let out = run(home.path(), &sandbox, &db, Some(K1), &["token"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("withings-oauth store encrypt"),
        "{}",
        text(&out.stderr)
    );

    let out = run(home.path(), &sandbox, &db, Some(K1), &["store", "encrypt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Encrypted 1 login(s) with key k1"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("key k1: 1 login(s)"),
        "{}",
        text(&out.stderr)
    );
    // Nor in the file's free space or journal.
    let needle = issued.refresh_token.as_bytes();
    for name in ["tokens.db", "tokens.db-wal"] {
        let Ok(raw) = std::fs::read(home.path().join(name)) else {
            continue;
        };
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "the refresh token is still in {name} in clear"
        );
    }

    let out = run(home.path(), &sandbox, &db, Some(K1), &["token"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), issued.access_token);
    // No way back: without the key, the database is refused.
    let out = run(home.path(), &sandbox, &db, None, &["token"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("WITHINGS_STORE_KEYS"),
        "{}",
        text(&out.stderr)
    );
}

/// `token` waiting for a refresh lease that another process holds says so on stderr, once:
/// which user, that another process (its pid) is refreshing it, and how long at most; then
/// gets its token when that process lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_waiting_for_another_process_s_refresh_says_so_once() {
    use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let user = UserId::new(SEEDED_USERID);
    let db = format!("sqlite://{}", home.path().join("tokens.db").display());
    let store = SqlStore::connect(&db, SqlOptions::default().keys(Keyring::parse(K1).unwrap()))
        .await
        .unwrap();
    let (issued, expired) = issued_login(
        &sandbox,
        Duration::ZERO,
        chrono::Utc::now() - chrono::TimeDelta::seconds(1),
    );
    store.save(user, &expired, Expected::Absent).await.unwrap();

    // This process holds the user's lease, as a refresh of its own would, for 2.5 s.
    let held = store.lease(user, Duration::from_secs(30)).await.unwrap();
    let mut cmd = common::command(home.path(), &sandbox, &db, &["token"]);
    cmd.env("WITHINGS_STORE_KEYS", K1);
    let cli = std::thread::spawn(move || cmd.output().unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(held);
    let out = tokio::task::spawn_blocking(move || cli.join().unwrap())
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_ne!(text(&out.stdout).trim(), issued.access_token);
    assert_eq!(sandbox.handle().counters().refresh_granted, 1);
    let expected = format!(
        "user {SEEDED_USERID}'s tokens are being refreshed by another process (pid {}); waiting for it, at most ",
        std::process::id()
    );
    assert_eq!(
        stderr.matches(&expected).count(),
        1,
        "the wait is told once on stderr: {stderr}"
    );
    let at_most: u64 = stderr
        .split(&expected)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no bound in {stderr}"));
    assert!((1..=30).contains(&at_most), "{stderr}");
    store.close().await;
}
