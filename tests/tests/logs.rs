//! What the library logs through a real `tracing` subscriber: every step of a login, a refresh,
//! a revoke and a failed login is named, and none of the seven secrets involved appears. Alone
//! in its binary, with the process-wide subscriber, so that no other test's threads change what
//! `tracing` delivers.

use std::time::Duration;
use withings_oauth::testing::CapturedLogs;

use url::Url;
use withings_oauth::{
    AuthMethod, Client, Prepared, Scope, Scopes, ScriptedAgent, UserAgent, authorize,
};
use withings_oauth_e2e::{scripted_browser, start_sandbox};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HTTPS_CALLBACK, SandboxConfig};

fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_every_step_and_no_secret() {
    // The process-wide subscriber, set before anything logs: `tracing` caches per call site
    // whether anyone listens, so a subscriber set for one thread only misses events of call
    // sites first reached elsewhere. Alone in its binary, nothing else logs here.
    let captured = CapturedLogs::default();
    let subscriber = captured.subscriber("withings_oauth=trace");
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

    let logs = captured.text();
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
