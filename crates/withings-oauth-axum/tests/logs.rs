//! The routes' logs, alone in this test binary: `tracing`'s per-thread subscriber misses events
//! when other tests register the same call sites at the same time.

mod common;

use withings_oauth::testing::CapturedLogs;

use common::{connect, open, two_instances};
use reqwest::StatusCode;
use url::Url;
use withings_sandbox::{Sandbox, SandboxConfig};

/// One thread, so that the servers' tasks log to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_say_what_happened_and_hold_no_secret() {
    let captured = CapturedLogs::default();
    let subscriber = captured.subscriber("withings_oauth=trace,withings_oauth_axum=trace");
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, _b, connected) = two_instances(&sandbox).await;
    let (cookie, callback) = connect(&a, "alice").await;
    assert_eq!(
        open(&callback, "alice", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        open(&callback, "alice", Some(&cookie)).await.0,
        StatusCode::SEE_OTHER
    );
    let user = connected.lock().unwrap()["alice"];
    let access = a.login.access_token(user).await.unwrap();

    // A failure whose reason is for the operator: the page has a reference, the log has the
    // reference and the reason.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = withings_oauth::Client::builder()
        .client_id(withings_sandbox::DEFAULT_CLIENT_ID)
        .client_secret(withings_sandbox::DEFAULT_CLIENT_SECRET)
        .redirect_uri(format!("http://{}/callback", listener.local_addr().unwrap()).as_str())
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    let failing = withings_oauth_axum::WithingsLogin::builder::<common::SignedIn>(
        client,
        std::sync::Arc::new(withings_oauth::MemoryPendingLogins::new()),
        std::sync::Arc::new(withings_oauth::MemoryStore::new()),
        &withings_oauth_axum::CookieKey::generate().unwrap(),
    )
    .on_connected(|_| async { Err::<(), _>("the accounts table is unreachable") })
    .build();
    let failing = common::serve(listener, failing);
    let (bob_cookie, bob_callback) = connect(&failing, "bob").await;
    let (_, _, page) = open(&bob_callback, "bob", Some(&bob_cookie)).await;
    assert!(!page.contains("unreachable"), "{page}");
    let reference = page
        .split("<code>")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .expect("a reference on the page")
        .to_owned();

    let logs = captured.text();
    let failure = logs
        .lines()
        .find(|line| line.contains(&reference))
        .unwrap_or_else(|| panic!("the reference {reference} is in no log line:\n{logs}"));
    assert!(failure.contains("ERROR"), "{failure}");
    assert!(
        failure.contains("the accounts table is unreachable"),
        "{failure}"
    );
    for step in [
        "Withings login parked",
        "Withings callback refused",
        "other-browser",
        "Withings login finished",
        // The span of a callback, around the events of the login it finishes.
        "withings_oauth.login.callback",
    ] {
        assert!(
            logs.contains(step),
            "{step:?} missing from the logs:\n{logs}"
        );
    }
    let secrets = [
        cookie.split_once('=').unwrap().1.to_owned(),
        query_value(&callback, "state"),
        query_value(&callback, "code"),
        query_value(&bob_callback, "state"),
        bob_cookie.split_once('=').unwrap().1.to_owned(),
        access.expose_secret().to_owned(),
    ];
    for secret in secrets {
        assert!(!logs.contains(&secret), "a secret is in the logs:\n{logs}");
    }
    sandbox.shutdown().await;
}

fn query_value(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}
