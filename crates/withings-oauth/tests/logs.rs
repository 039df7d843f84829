//! Property test: what the library logs through `tracing` never holds a secret, on success or
//! failure. Alone in its binary: `tracing` caches per call site whether anyone listens, and tests
//! running in parallel without a subscriber would make that cache skip events here.

mod common;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use withings_oauth::screen_callback;
use withings_oauth::{AuthMethod, Scopes, Unauthorized};

/// Everything the library logs, as text: span and event fields, values formatted as they would
/// be by any `tracing` subscriber.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<String>>);

impl CapturedLogs {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

struct FieldWriter<'a>(&'a mut String);

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for CapturedLogs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = self.0.lock().unwrap();
        text.push_str(&format!("\nspan {}", span.metadata().name()));
        span.record(&mut FieldWriter(&mut text));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut FieldWriter(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = self.0.lock().unwrap();
        text.push_str(&format!("\n{}", event.metadata().level()));
        event.record(&mut FieldWriter(&mut text));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Answers like Withings when the client id starts with `ok`, like the echo server otherwise.
fn ok_or_echo(client_secret: Arc<Mutex<String>>) -> impl Fn(&Request) -> ResponseTemplate {
    let echo = echo(client_secret);
    move |request| {
        let form = form(request);
        if !form["client_id"].starts_with("ok") {
            return echo(request);
        }
        if request.url.path() == "/v2/signature" {
            return json_response(r#"{"status":0,"body":{"nonce":"n0nce"}}"#);
        }
        // The new tokens are the old secrets reversed: secrets too, and easy to tell apart.
        let old = form
            .get("refresh_token")
            .or(form.get("code"))
            .cloned()
            .unwrap_or_else(|| "demo-token".to_owned());
        let new: String = old.chars().rev().collect();
        json_response(token_answer(
            serde_json::json!(1),
            &format!("{new}A"),
            &format!("{new}R"),
            "user.metrics",
        ))
    }
}

async fn log_everything(
    server: &MockServer,
    client_secret: &str,
    token: &str,
    code: &str,
) -> Result<(), TestCaseError> {
    for client_id in ["ok-0", "echo-503"] {
        for auth in [AuthMethod::ClientSecret, AuthMethod::Signature] {
            let client = echo_client(server, client_id, client_secret, auth);
            let (pending, state) = begin(&client, Scopes::all());
            let wrong = screen_callback(pending.authorize_url(), &callback(code, "forged"));
            prop_assert!(wrong.is_err());
            let _ = Unauthorized::new(&client, Scopes::all())
                .begin()
                .unwrap()
                .complete(&callback(code, "forged"))
                .await;
            if let Ok(authorized) = pending.complete(&callback(code, &state)).await {
                let _ = authorized.refresh().await;
            }
            let login = authorized(&client, 7, token, token, Utc::now(), "user.metrics");
            match login.refresh().await {
                Ok(fresh) => drop(fresh.revoke().await),
                Err(e) => {
                    if let Some(previous) = e.into_login() {
                        let _ = previous.revoke().await;
                    }
                }
            }
            let _ = Unauthorized::new(&client, Scopes::all())
                .demo_access()
                .await;
        }
    }
    Ok(())
}

#[test]
fn logs_never_show_secrets() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let current_secret = Arc::new(Mutex::new(String::new()));
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ok_or_echo(current_secret.clone()))
            .mount(&server)
            .await;
        server
    });

    let mut runner = TestRunner::new(network_config(8));
    runner
        .run(
            &(secret(), secret(), secret()),
            |(client_secret, token, code)| {
                *current_secret.lock().unwrap() = client_secret.clone();
                let logs = CapturedLogs::default();
                tracing::subscriber::with_default(logs.clone(), || {
                    runtime.block_on(log_everything(&server, &client_secret, &token, &code))
                })?;
                let text = logs.text();
                for event in ["code exchanged", "tokens refreshed", "callback rejected"] {
                    prop_assert!(text.contains(event), "no {:?} in the logs: {}", event, text);
                }
                let reversed = |s: &str| s.chars().rev().collect::<String>();
                let (new_from_code, new_from_token) = (reversed(&code), reversed(&token));
                assert_hidden(
                    "the logs",
                    &text,
                    &[
                        &client_secret,
                        &token,
                        &code,
                        &new_from_code,
                        &new_from_token,
                    ],
                )
            },
        )
        .unwrap();
}
