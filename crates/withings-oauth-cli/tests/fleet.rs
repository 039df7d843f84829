//! `fleet status` and `fleet sweep` against the sandbox (in the test process): on a SQLite
//! store, a file store, and PostgreSQL.

#![cfg(feature = "sql")]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::text;
use serde_json::Value;
use withings_oauth::{Expected, TokenStore, UserId, testing};
use withings_oauth_sql::sqlx::{self, Connection};
use withings_oauth_sql::testing::Schemas;
use withings_oauth_sql::{SqlOptions, SqlStore};
use withings_sandbox::{DEFAULT_CLIENT_ID, Sandbox, SandboxConfig, User};

fn run(home: &Path, sandbox: &Sandbox, store: &str, args: &[&str]) -> Output {
    common::command(home, sandbox, store, args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn user(i: u32) -> UserId {
    UserId::new(User::numbered(i).userid)
}

/// The logins of a small fleet: users 1 and 2 fresh, 3 due within the margin, 4 expired two
/// hours ago, 5 idle (expired 40 days ago), 6 must log in again. Gives every access and
/// refresh token stored, to check none is ever printed.
async fn store_fleet(sandbox: &Sandbox, store: &dyn TokenStore) -> Vec<String> {
    let now = Utc::now();
    let expiries = [
        now + TimeDelta::hours(3),
        now + TimeDelta::hours(2),
        now + TimeDelta::minutes(2),
        now - TimeDelta::hours(2),
        now - TimeDelta::days(40),
    ];
    let mut secrets = Vec::new();
    for (i, expires_at) in (1..).zip(expiries) {
        let issued = sandbox
            .handle()
            .issue_tokens(
                user(i).get(),
                DEFAULT_CLIENT_ID,
                &["user.metrics"],
                Duration::from_secs(3600),
            )
            .unwrap();
        let login = testing::credentials(
            user(i),
            &issued.access_token,
            &issued.refresh_token,
            expires_at,
        );
        store.save(user(i), &login, Expected::Absent).await.unwrap();
        secrets.extend([issued.access_token, issued.refresh_token]);
    }
    store
        .mark_login_required(user(6), Expected::Absent)
        .await
        .unwrap();
    secrets
}

fn assert_no_secret(out: &Output, secrets: &[String]) {
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in secrets {
        assert!(!shown.contains(secret.as_str()), "a token was printed");
    }
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default().seed_users(7))
        .await
        .unwrap()
}

/// Status, three sweeps (a batch of one with a short idle period, the default, then nothing
/// left), status again: on the store `url`.
fn status_and_sweeps(home: &Path, sandbox: &Sandbox, url: &str, secrets: &[String], shared: bool) {
    let out = run(home, sandbox, url, &["fleet", "status", "--json"]);
    assert_no_secret(&out, secrets);
    let status = json(&out);
    assert_eq!(status["users"], 6, "{status}");
    assert_eq!(
        (
            &status["fresh"],
            &status["due"],
            &status["expired"],
            &status["idle"],
            &status["login_required"]
        ),
        (&2.into(), &1.into(), &2.into(), &1.into(), &1.into()),
        "{status}"
    );
    assert_eq!(
        status["login_required_users"],
        serde_json::json!([user(6).get()])
    );
    assert_eq!(status["least_recently_refreshed"]["user"], user(5).get());
    if shared {
        assert_eq!(status["rate_limit"]["name"], "withings", "{status}");
        assert_eq!(status["rate_limit"]["tokens"], 10.0, "{status}");
    } else {
        assert!(status["rate_limit"].is_null(), "{status}");
    }

    let out = run(home, sandbox, url, &["fleet", "status"]);
    assert_no_secret(&out, secrets);
    let shown = text(&out.stdout);
    assert!(shown.contains("users: 6"), "{shown}");
    assert!(
        shown.contains(&format!("must log in again: user {}", user(6))),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("least recently refreshed: user {}", user(5))),
        "{shown}"
    );

    // A batch of one, logins unused for an hour: user 4 (the first of 4 and 5).
    let out = run(
        home,
        sandbox,
        url,
        &[
            "fleet",
            "sweep",
            "--batch",
            "1",
            "--idle-after",
            "1h",
            "--json",
        ],
    );
    assert_no_secret(&out, secrets);
    let report = json(&out);
    assert_eq!(
        (&report["renewed"], &report["failed"]),
        (&1.into(), &0.into()),
        "{report}"
    );
    assert_eq!(
        sandbox
            .handle()
            .counters()
            .user(user(4).get())
            .refresh_granted,
        1
    );
    // The default, 30 days: user 5.
    let out = run(home, sandbox, url, &["fleet", "sweep"]);
    assert_no_secret(&out, secrets);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 renewed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        sandbox
            .handle()
            .counters()
            .user(user(5).get())
            .refresh_granted,
        1
    );
    // Nothing left to renew.
    let report = json(&run(home, sandbox, url, &["fleet", "sweep", "--json"]));
    assert_eq!(
        (&report["due"], &report["renewed"]),
        (&0.into(), &0.into()),
        "{report}"
    );
    assert_eq!(sandbox.handle().counters().refresh_granted, 2);

    let status = json(&run(home, sandbox, url, &["fleet", "status", "--json"]));
    assert_eq!(
        (&status["fresh"], &status["expired"], &status["idle"]),
        (&4.into(), &0.into(), &0.into()),
        "{status}"
    );
}

/// The shared bucket's row as the last take left it (no refill since), if there is one.
fn assert_took_from_the_shared_bucket(tokens: Option<f64>) {
    // A bucket starts with 10 tokens; each take leaves one less than the level it found.
    let tokens = tokens.expect("the sweeps used the shared rate limit");
    assert!(tokens <= 9.0, "{tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_counts_users_by_state_and_sweep_renews_idle_logins_on_sqlite() {
    let sandbox = sandbox().await;
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", home.path().join("tokens.db").display());
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    let secrets = store_fleet(&sandbox, &store).await;
    store.close().await;
    status_and_sweeps(home.path(), &sandbox, &url, &secrets, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_commands_work_on_a_tokens_file_too() {
    let sandbox = sandbox().await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("tokens.json");
    let store = withings_oauth_store::FileStore::open(&file).unwrap();
    let secrets = store_fleet(&sandbox, &store).await;
    status_and_sweeps(
        home.path(),
        &sandbox,
        file.to_str().unwrap(),
        &secrets,
        false,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_and_sweep_on_postgresql() {
    let home = tempfile::tempdir().unwrap();
    let schemas = Schemas::new();
    let schema = schemas.create().await;
    // The CLI reaches the schema through the URL's connection options.
    let url = schemas.url_in(&schema);

    let sandbox = sandbox().await;
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    let secrets = store_fleet(&sandbox, &store).await;
    store.close().await;
    let outcome = std::panic::catch_unwind(|| {
        status_and_sweeps(home.path(), &sandbox, &url, &secrets, true);
    });
    let mut admin = sqlx::PgConnection::connect(schemas.url()).await.unwrap();
    let tokens: Option<f64> = sqlx::query_scalar(&format!(
        "SELECT tokens FROM \"{schema}\".withings_rate_limits WHERE name = 'withings'"
    ))
    .fetch_optional(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    schemas.drop_all().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_took_from_the_shared_bucket(tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_exits_4_and_shows_in_the_status() {
    let sandbox = sandbox().await;
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", home.path().join("tokens.db").display());
    let store = SqlStore::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    // An idle login whose refresh token Withings no longer knows.
    let login = testing::credentials(
        user(7),
        "unknown-access",
        "unknown-refresh",
        Utc::now() - TimeDelta::days(60),
    );
    store.save(user(7), &login, Expected::Absent).await.unwrap();
    store.close().await;

    let out = run(home.path(), &sandbox, &url, &["fleet", "sweep"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 failed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("fleet status"),
        "{}",
        text(&out.stderr)
    );
    let status = json(&run(
        home.path(),
        &sandbox,
        &url,
        &["fleet", "status", "--json"],
    ));
    assert_eq!(
        status["login_required_users"],
        serde_json::json!([user(7).get()])
    );

    // Bad input: a usage error, exit code 2.
    let out = run(
        home.path(),
        &sandbox,
        &url,
        &["fleet", "sweep", "--idle-after", "3x"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("such as 30d"),
        "{}",
        text(&out.stderr)
    );

    // A fleet command acts on every user: --user is refused, not ignored.
    let out = run(
        home.path(),
        &sandbox,
        &url,
        &["fleet", "sweep", "--user", "7"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("drop --user 7"),
        "{}",
        text(&out.stderr)
    );
}
