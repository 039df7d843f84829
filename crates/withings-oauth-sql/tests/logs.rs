//! What a session on an encrypted SQLite store logs through a real `tracing` subscriber: the
//! spans of the refresh and of every store call (operation and backend) are there, and none of
//! the tokens or the key. Alone in its binary, with the process-wide subscriber, so that no
//! other test's threads change what `tracing` delivers.

use std::sync::Arc;
use std::time::Duration;
use withings_oauth::testing::CapturedLogs;

use chrono::{TimeDelta, Utc};
use withings_oauth::{Authorized, Client, Session, testing};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, SEEDED_USERID, Sandbox,
    SandboxConfig,
};

const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_calls_and_refreshes_log_their_spans_and_no_secret() {
    let captured = CapturedLogs::default();
    let subscriber = captured.subscriber("withings_oauth=trace,withings_oauth_sql=trace");
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let keys = Keyring::parse(KEY).unwrap();
    let store = SqlStore::connect(&url, SqlOptions::default().keys(keys))
        .await
        .unwrap();
    let issued = sandbox
        .handle()
        .issue_tokens(
            SEEDED_USERID,
            DEFAULT_CLIENT_ID,
            &["user.metrics"],
            Duration::from_secs(3600),
        )
        .unwrap();
    let user = withings_oauth::UserId::new(SEEDED_USERID);
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    let stored = testing::credentials(
        user,
        &issued.access_token,
        &issued.refresh_token,
        Utc::now() - TimeDelta::minutes(1),
    );
    let login = Authorized::from_credentials(&client, stored);
    let session = Session::start(login, Arc::new(store.clone()))
        .await
        .unwrap();
    let fresh = session.access_token().await.unwrap();
    store.close().await;

    let logs = captured.text();
    for span in [
        "withings_oauth.session.refresh",
        "withings_oauth.store{operation=\"lease_and_load\" backend=\"sqlite\"}",
        "withings_oauth.store{operation=\"save_and_release\" backend=\"sqlite\"}",
    ] {
        assert!(
            logs.contains(span),
            "{span:?} missing from the logs:\n{logs}"
        );
    }
    let key = KEY.split_once(':').unwrap().1;
    for secret in [
        issued.access_token.as_str(),
        issued.refresh_token.as_str(),
        fresh.expose_secret(),
        DEFAULT_CLIENT_SECRET,
        key,
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
    }
    sandbox.shutdown().await;
}
