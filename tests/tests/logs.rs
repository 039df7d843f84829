//! What the library logs through a real `tracing` subscriber: every step of a login, a refresh,
//! a revoke and a failed login is named, and none of the seven secrets involved appears. Alone
//! in its binary, with the process-wide subscriber, so that no other test's threads change what
//! `tracing` delivers.

use std::time::Duration;

use url::Url;
use withings_oauth::{
    AuthMethod, Client, Prepared, Scope, Scopes, ScriptedAgent, UserAgent, authorize,
};
use withings_oauth_e2e::{scripted_browser, start_sandbox};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HTTPS_CALLBACK, SandboxConfig};

fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_every_step_and_no_secret() {
    // The process-wide subscriber, set before anything logs: `tracing` caches per call site
    // whether anyone listens, so a subscriber set for one thread only misses events of call
    // sites first reached elsewhere. Alone in its binary, nothing else logs here.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("withings_oauth=trace"))
        // Every span as it opens, with its fields: they are scanned for secrets too.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(HTTPS_CALLBACK)
        .base_url(sandbox.base_url())
        .auth_method(AuthMethod::Signature)
        .build()
        .expect("valid config");
    let mut secrets: Vec<String> = vec![DEFAULT_CLIENT_SECRET.to_owned()];
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        ScriptedAgent::new().then_async(move |authorize_url: Url| async move {
            let callback = scripted_browser(None)
                .run(
                    Prepared::new(Url::parse(HTTPS_CALLBACK).unwrap()),
                    &authorize_url,
                )
                .await?;
            seen.lock().unwrap().push(callback.clone());
            Ok(callback)
        })
    };
    let authorized = authorize(&client, scopes(), &recorder).await.unwrap();
    let first = authorized.credentials().reveal_for_storage();
    let refreshed = authorized.refresh().await.unwrap();
    let second = refreshed.credentials().reveal_for_storage();
    refreshed.revoke().await.unwrap();
    let bad = scripted_browser(Some((sandbox.handle(), Duration::from_secs(31))));
    let _ = authorize(&client, scopes(), &bad).await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for step in [
        "authorize URL built",
        "callback accepted",
        "code exchanged",
        "tokens refreshed",
        "access revoked",
        "code exchange failed",
    ] {
        assert!(logs.contains(step), "no {step:?} in the logs:\n{logs}");
    }
    for stored in [first, second] {
        secrets.push(stored.access_token);
        secrets.push(stored.refresh_token);
    }
    for callback in seen.lock().unwrap().iter() {
        for (k, v) in callback.query_pairs() {
            if k == "code" || k == "state" {
                secrets.push(v.into_owned());
            }
        }
    }
    assert_eq!(secrets.len(), 7);
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
