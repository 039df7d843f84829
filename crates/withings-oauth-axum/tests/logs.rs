//! The routes' logs, alone in this test binary: `tracing`'s per-thread subscriber misses events
//! when other tests register the same call sites at the same time.

mod common;

use std::sync::{Arc, Mutex};

use common::{connect, open, two_instances};
use reqwest::StatusCode;
use url::Url;
use withings_sandbox::{Sandbox, SandboxConfig};

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One thread, so that the servers' tasks log to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_say_what_happened_and_hold_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "withings_oauth=trace,withings_oauth_axum=trace",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for step in [
        "Withings login parked",
        "Withings callback refused",
        "other-browser",
        "Withings login finished",
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
