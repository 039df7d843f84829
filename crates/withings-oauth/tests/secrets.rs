//! Property tests: no `Debug` or `Display` of this crate's types and errors shows a secret, even
//! when Withings' error text repeats one; and no `expires_in` makes the public path panic.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use url::Url;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use withings_oauth::RefreshError;
use withings_oauth::screen_callback;
use withings_oauth::{
    ApiError, AuthMethod, Authorized, Client, Credentials, Error, Scopes, StoredCredentials,
    Unauthorized, UserId,
};

fn debug_and_display(
    what: &str,
    value: &(impl std::fmt::Debug + std::fmt::Display),
    secrets: &[&str],
) -> Result<(), TestCaseError> {
    assert_hidden(&format!("Debug of {what}"), &format!("{value:?}"), secrets)?;
    assert_hidden(&format!("Display of {what}"), &value.to_string(), secrets)
}

fn stored(access: &str, refresh: &str, expires_at: DateTime<Utc>) -> StoredCredentials {
    StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: UserId::new(12345678),
        access_token: access.to_owned(),
        refresh_token: refresh.to_owned(),
        expires_at,
        scopes: Scopes::all(),
        token_type: "Bearer".to_owned(),
    }
}

proptest! {
    #[test]
    fn values_never_show_their_secrets(client_secret in secret(), access in secret(), refresh in secret(), code in secret()) {
        // Debug output says "[redacted]" where a secret was: a secret that happens to be a piece
        // of that word would be "found" without having leaked.
        for s in [&client_secret, &access, &refresh, &code] {
            prop_assume!(!"[redacted]".contains(s.as_str()));
        }
        let all = [client_secret.as_str(), access.as_str(), refresh.as_str(), code.as_str()];

        let builder = Client::builder()
            .client_id(CLIENT_ID)
            .client_secret(client_secret.as_str())
            .redirect_uri(REDIRECT_URI);
        assert_hidden("Debug of ClientBuilder", &format!("{builder:?}"), &all)?;
        let client = builder.build().unwrap();
        assert_hidden("Debug of Client", &format!("{client:?}"), &all)?;

        let unauthorized = Unauthorized::new(&client, Scopes::all());
        assert_hidden("Debug of Unauthorized", &format!("{unauthorized:?}"), &all)?;
        let pending = unauthorized.begin().unwrap();
        let state = query_value(pending.authorize_url(), "state").unwrap();
        let with_state = [client_secret.as_str(), state.as_str()];
        assert_hidden("Debug of PendingCallback", &format!("{pending:?}"), &with_state)?;

        // Callbacks carrying the code (and the state) that are refused for another reason.
        let with_code = [client_secret.as_str(), state.as_str(), code.as_str()];
        for candidate in [
            format!("https://evil.example.com/withings/callback?code={code}&state={state}"),
            format!("{REDIRECT_URI}?code={code}&state={code}"),
            format!("{REDIRECT_URI}?code={code}&code={code}&state={state}"),
            format!("{REDIRECT_URI}?code={code}"),
        ] {
            let candidate: Url = candidate.parse().unwrap();
            let refused = screen_callback(pending.authorize_url(), &candidate).unwrap_err();
            debug_and_display("CallbackError", &refused, &with_code)?;
            debug_and_display("Error", &Error::from(refused), &with_code)?;
        }

        let expires_at = DateTime::from_timestamp(1_764_340_000, 0).unwrap();
        let stored_credentials = stored(&access, &refresh, expires_at);
        assert_hidden("Debug of StoredCredentials", &format!("{stored_credentials:?}"), &all)?;
        let credentials = Credentials::from_stored(stored_credentials.clone()).unwrap();
        assert_hidden("Debug of Credentials", &format!("{credentials:?}"), &all)?;
        let authorized = Authorized::from_credentials(&client, credentials);
        assert_hidden("Debug of Authorized", &format!("{authorized:?}"), &all)?;

        // Damaged stored credentials: the error names the problem, not the token.
        let mut damaged = stored_credentials.clone();
        damaged.refresh_token = format!("{refresh} {access}");
        let e = Credentials::from_stored(damaged).unwrap_err();
        debug_and_display("StoredCredentialsError", &e, &all)?;
        let mut other_format = stored_credentials;
        other_format.format = 2;
        let e = Credentials::from_stored(other_format).unwrap_err();
        debug_and_display("StoredCredentialsError", &e, &all)?;
    }
}

/// The message Withings' text became, for the variants that keep one.
fn kept_message(e: &ApiError) -> Option<&str> {
    match e {
        ApiError::Withings { message, .. } | ApiError::RateLimited { message, .. } => Some(message),
        _ => None,
    }
}

#[test]
fn withings_error_texts_that_repeat_a_secret_are_masked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let current_secret = Arc::new(Mutex::new(String::new()));
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(echo(current_secret.clone()))
            .mount(&server)
            .await;
        server
    });

    let mut runner = TestRunner::new(network_config(16));
    runner
        .run(
            &(secret(), secret(), secret()),
            |(client_secret, token, code)| {
                *current_secret.lock().unwrap() = client_secret.clone();
                runtime.block_on(check_masking(&server, &client_secret, &token, &code))
            },
        )
        .unwrap();
}

async fn check_masking(
    server: &MockServer,
    client_secret: &str,
    token: &str,
    code: &str,
) -> Result<(), TestCaseError> {
    let all = [client_secret, token, code];
    let expires_at = DateTime::from_timestamp(1_764_340_000, 0).unwrap();

    for (client_id, auth) in [
        ("echo-503", AuthMethod::ClientSecret),
        ("echo-601", AuthMethod::ClientSecret),
        ("echo-522", AuthMethod::ClientSecret),
        ("cut-503", AuthMethod::ClientSecret),
        ("signed-503", AuthMethod::Signature),
        ("echo-503", AuthMethod::Signature),
    ] {
        let case = format!("{client_id} {auth:?}");
        let client = echo_client(server, client_id, client_secret, auth);

        // Code exchange: Withings repeats the code and the client secret.
        let (pending, state) = begin(&client, Scopes::all());
        let err = pending
            .complete(&callback(code, &state))
            .await
            .expect_err("the echo server refuses");
        debug_and_display(&format!("exchange Error ({case})"), &err, &all)?;
        let Error::Api(api) = &err else {
            return Err(TestCaseError::fail(format!("{case}: {err:?}")));
        };
        let message = kept_message(api).unwrap_or_default();
        prop_assert!(
            message.contains("[redacted]"),
            "{}: Withings' text was dropped, not masked: {:?}",
            case,
            api
        );
        if client_id.starts_with("cut") {
            // Only the secret's beginning fitted: it is masked as well.
            assert_hidden(&case, message, &[&code[..code.len().min(8)]])?;
        }

        // Refresh: Withings repeats the refresh token and the client secret.
        let login = authorized(&client, 7, token, token, expires_at, "user.metrics");
        let err: RefreshError = login.refresh().await.expect_err("refused");
        debug_and_display(&format!("RefreshError ({case})"), &err, &all)?;
        if client_id.starts_with("cut") {
            let message = kept_message(err.error()).unwrap_or_default();
            assert_hidden(&case, message, &[&token[..token.len().min(8)]])?;
        }
        let previous = err.into_login().expect("a 5xx/601/522 keeps the login");
        assert_hidden("Debug of Authorized", &format!("{previous:?}"), &all)?;

        // Revoke and demo access are always signed; the echo repeats the client secret.
        let err = previous.revoke().await.expect_err("refused");
        debug_and_display(&format!("RevokeError ({case})"), &err, &all)?;
        let err = Unauthorized::new(&client, Scopes::all())
            .demo_access()
            .await
            .expect_err("refused");
        debug_and_display(&format!("demo ApiError ({case})"), &err, &all)?;
    }
    Ok(())
}

/// Answers a refresh with `expires_in` equal to the refresh token it was given (as a number, or
/// as a string of digits when the token starts with `s`).
fn expires_in_echo(request: &Request) -> ResponseTemplate {
    let token = form(request)["refresh_token"].clone();
    let expires_in = match token.strip_prefix('s') {
        Some(digits) => serde_json::Value::String(digits.to_owned()),
        None => serde_json::Value::Number(token.parse::<u64>().unwrap().into()),
    };
    json_response(
        serde_json::json!({"status": 0, "body": {"userid": 1, "access_token": "a",
            "refresh_token": token, "expires_in": expires_in, "scope": "user.metrics"}})
        .to_string(),
    )
}

async fn refresh_with_expires_in(
    server: &MockServer,
    expires_in: u64,
    as_text: bool,
) -> Result<(), TestCaseError> {
    let client = client(server);
    let token = if as_text {
        format!("s{expires_in}")
    } else {
        expires_in.to_string()
    };
    let login = authorized(&client, 1, "a", &token, Utc::now(), "user.metrics");
    let before = Utc::now();
    let fresh = login
        .refresh()
        .await
        .map_err(|e| TestCaseError::fail(format!("expires_in {expires_in}: {e}")))?;

    // Never earlier than asked (saturating at the largest time), never before the call.
    let wanted = i64::try_from(expires_in)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|d| before.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    prop_assert!(
        fresh.expires_at() >= wanted,
        "{} < {}",
        fresh.expires_at(),
        wanted
    );
    let _ = fresh.expires_within(TimeDelta::MAX, Utc::now());
    let _ = fresh.expires_within(TimeDelta::MIN, Utc::now());

    // The credentials survive storage unchanged, whatever the expiry.
    let stored = fresh.credentials().reveal_for_storage();
    let text = serde_json::to_string(&stored).unwrap();
    let back: StoredCredentials = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("expires_in {expires_in}: {e} in {text}")))?;
    let restored = Credentials::from_stored(back).unwrap();
    prop_assert_eq!(restored.expires_at(), fresh.expires_at());
    Ok(())
}

#[test]
fn any_expires_in_goes_through_refresh_and_storage_without_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(expires_in_echo)
            .mount(&server)
            .await;
        server
    });
    for edge in [0, 1, 10800, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        for as_text in [false, true] {
            runtime
                .block_on(refresh_with_expires_in(&server, edge, as_text))
                .unwrap();
        }
    }
    let mut runner = TestRunner::new(network_config(64));
    runner
        .run(&(any::<u64>(), any::<bool>()), |(expires_in, as_text)| {
            runtime.block_on(refresh_with_expires_in(&server, expires_in, as_text))
        })
        .unwrap();
}

#[test]
fn a_secret_cut_by_the_length_limit_leaves_no_beginning_behind() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(echo(Arc::new(Mutex::new(String::new()))))
            .mount(&server)
            .await;
        server
    });
    // Secrets whose beginning repeats, right after text that ends like them: the hard case for
    // finding where a cut secret starts.
    let strategy = ("a{4,8}b[ab]{3,10}", 1usize..4, 4usize..12);
    let mut runner = TestRunner::new(network_config(64));
    runner
        .run(&strategy, |(token, repeated, kept)| {
            let kept = kept.min(token.len() - 1);
            // Withings' messages are kept up to 200 characters: `kept` of the token fit.
            let before = format!(
                "{}{}",
                "x".repeat(200 - repeated - kept),
                "a".repeat(repeated)
            );
            let client = echo_client(
                &server,
                &format!("after-503-{before}"),
                CLIENT_SECRET,
                AuthMethod::ClientSecret,
            );
            let login = authorized(&client, 7, "acc", &token, Utc::now(), "user.metrics");
            let err = runtime.block_on(login.refresh()).expect_err("refused");
            let shown = kept_message(err.error()).expect("a 503 keeps its text");
            prop_assert!(shown.starts_with("xxxx"), "{}", shown);
            prop_assert!(
                !shown.ends_with(&token[..kept]),
                "the first {} characters of the token are shown: {}",
                kept,
                shown
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_base_url_with_a_password_is_refused_rather_than_shown() {
    for base in [
        "http://user:hunter2-pass@127.0.0.1:8080/",
        "https://user@sandbox.example.com/",
    ] {
        let err = Client::builder()
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .redirect_uri(REDIRECT_URI)
            .base_url(base.parse().unwrap())
            .build()
            .expect_err("credentials in a base URL are refused");
        assert!(
            matches!(err, withings_oauth::ConfigError::InvalidBaseUrl { .. }),
            "{base}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
    }
}
