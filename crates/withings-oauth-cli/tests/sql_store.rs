//! The CLI on a database store: `--store sqlite://...`, `store migrate-from` a tokens.json,
//! `token` refreshing through the database, `store rotate-key`, and the clear-text warning.

#![cfg(feature = "sql")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use withings_oauth::{Credentials, Expected, StoredCredentials, TokenStore, UserId};
use withings_oauth_store::FileStore;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_USERID, Sandbox, SandboxConfig,
};

const BIN: &str = env!("CARGO_BIN_EXE_withings-oauth");
const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn run(home: &Path, sandbox: &Sandbox, store: &str, keys: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("WITHINGS_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("WITHINGS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env(
            "WITHINGS_REDIRECT_URI",
            "https://app.example.com/withings/callback",
        )
        .env("WITHINGS_BASE_URL", sandbox.base_url().as_str())
        .env("WITHINGS_STORE", store);
    if let Some(keys) = keys {
        cmd.env("WITHINGS_STORE_KEYS", keys);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_moves_into_an_encrypted_database_that_keeps_working_across_a_key_rotation() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let user = UserId::new(SEEDED_USERID);
    let issued = sandbox
        .handle()
        .issue_tokens(
            SEEDED_USERID,
            DEFAULT_CLIENT_ID,
            &["user.metrics"],
            Duration::ZERO,
        )
        .unwrap();
    let file = home.path().join("tokens.json");
    let credentials = Credentials::from_stored(StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: user,
        access_token: issued.access_token.clone(),
        refresh_token: issued.refresh_token.clone(),
        expires_at: chrono::Utc::now() - chrono::TimeDelta::seconds(1),
        scopes: "user.metrics".parse().unwrap(),
        token_type: "Bearer".into(),
    })
    .unwrap();
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

    // Without the key, the encrypted store is refused, saying which keys to set, not misread.
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
