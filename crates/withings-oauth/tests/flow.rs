//! Callback handling through the public flow: a callback that is not this login's successful
//! end never reaches the token endpoint.

mod common;

use common::*;
use serde_json::json;
use url::Url;
use wiremock::MockServer;
use withings_oauth::{CallbackError, Error, Scope, Scopes, authorize};
use withings_oauth::{ScriptedAgent, UserAgentError};

/// A mock token endpoint that would accept any code: a refused callback must not reach it.
async fn server_that_would_accept() -> MockServer {
    let server = MockServer::start().await;
    mount_token_answer(&server, token_answer(json!(1), "a", "r", "user.metrics")).await;
    server
}

/// Completes a fresh login with the callback `make(state)` and returns the error.
async fn refused(make: impl FnOnce(&str) -> String) -> (CallbackError, usize) {
    let server = server_that_would_accept().await;
    let (pending, state) = begin(&client(&server), Scopes::all());
    let url: Url = make(&state).parse().unwrap();
    let err = pending
        .complete(&url)
        .await
        .expect_err("the callback is refused");
    let calls = requests(&server).await.len();
    match err {
        Error::Callback(e) => (e, calls),
        other => panic!("expected a callback error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_state_is_refused_without_calling_withings() {
    let (e, calls) = refused(|_| format!("{REDIRECT_URI}?code=c&state=someone-elses-state")).await;
    assert_eq!(e, CallbackError::StateMismatch);
    assert!(e.is_foreign());
    assert_eq!(calls, 0);

    // A state that only starts like ours, or contains it, is still wrong.
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c&state={s}x")).await;
    assert_eq!(e, CallbackError::StateMismatch);
    assert_eq!(calls, 0);
    let (e, calls) =
        refused(|s| format!("{REDIRECT_URI}?code=c&state={}", &s[..s.len() - 1])).await;
    assert_eq!(e, CallbackError::StateMismatch);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn the_state_is_read_from_its_parameter_not_from_the_whole_url() {
    // The right state, but elsewhere than in `state`: it must not count.
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c&note={s}")).await;
    assert_eq!(e, CallbackError::MissingState);
    assert_eq!(calls, 0);
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c&state=x#state={s}")).await;
    assert_eq!(e, CallbackError::StateMismatch);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn repeated_code_or_state_is_refused_without_calling_withings() {
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c1&code=c2&state={s}")).await;
    assert_eq!(e, CallbackError::RepeatedParameter("code"));
    assert_eq!(calls, 0);
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c&state={s}&state={s}")).await;
    assert_eq!(e, CallbackError::RepeatedParameter("state"));
    assert_eq!(calls, 0);
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=c&state=forged&state={s}")).await;
    assert_eq!(e, CallbackError::RepeatedParameter("state"));
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn a_denial_is_typed_and_calls_nothing() {
    let server = server_that_would_accept().await;
    let (pending, state) = begin(&client(&server), Scopes::all());
    let url: Url =
        format!("{REDIRECT_URI}?error=access_denied&error_description=User+refused&state={state}")
            .parse()
            .unwrap();
    let err = pending.complete(&url).await.expect_err("denied");
    assert!(err.is_denied(), "{err:?}");
    match &err {
        Error::Callback(CallbackError::Denied { error, description }) => {
            assert_eq!(error, "access_denied");
            assert_eq!(description.as_deref(), Some("User refused"));
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert!(err.to_string().contains("access_denied"), "{err}");
    assert_eq!(requests(&server).await.len(), 0);
}

#[tokio::test]
async fn a_denial_with_a_foreign_state_is_not_believed() {
    let (e, calls) = refused(|_| format!("{REDIRECT_URI}?error=access_denied&state=forged")).await;
    assert_eq!(e, CallbackError::StateMismatch);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn a_callback_to_another_place_is_refused_without_calling_withings() {
    for place in [
        "https://evil.example.com/withings/callback",
        "https://app.example.com/other",
        "http://app.example.com/withings/callback",
        "https://app.example.com:8443/withings/callback",
    ] {
        let (e, calls) = refused(|s| format!("{place}?code=c&state={s}")).await;
        match &e {
            CallbackError::RedirectMismatch { expected, got } => {
                assert_eq!(expected, REDIRECT_URI);
                assert!(!got.contains("code="), "{got}");
            }
            other => panic!("{place}: expected RedirectMismatch, got {other:?}"),
        }
        assert_eq!(calls, 0, "{place}");
    }
}

#[tokio::test]
async fn a_callback_without_state_or_code_is_refused_without_calling_withings() {
    let (e, calls) = refused(|_| format!("{REDIRECT_URI}?code=c")).await;
    assert_eq!(e, CallbackError::MissingState);
    assert_eq!(calls, 0);
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?state={s}")).await;
    assert_eq!(e, CallbackError::MissingCode);
    assert_eq!(calls, 0);
    let (e, calls) = refused(|s| format!("{REDIRECT_URI}?code=&state={s}")).await;
    assert_eq!(e, CallbackError::MissingCode);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn each_login_has_its_own_state() {
    let server = server_that_would_accept().await;
    let c = client(&server);
    let (first, first_state) = begin(&c, Scopes::all());
    let (second, second_state) = begin(&c, Scopes::all());
    assert_ne!(first_state, second_state);

    // The first login's callback does not complete the second.
    let err = second
        .complete(&callback("c", &first_state))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Callback(CallbackError::StateMismatch)));
    assert_eq!(requests(&server).await.len(), 0);
    first
        .complete(&callback("c", &first_state))
        .await
        .expect("the first login completes with its own callback");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn authorize_with_an_agent_logs_in() {
    let server = server_that_would_accept().await;
    let agent = ScriptedAgent::new().then(|authorize_url| {
        assert_eq!(authorize_url.path(), "/oauth2_user/authorize2");
        let state = query_value(authorize_url, "state").unwrap();
        Ok(callback("agent-code", &state))
    });
    let authorized = authorize(&client(&server), Scopes::from(Scope::Metrics), &agent)
        .await
        .expect("logged in");
    assert_eq!(authorized.user_id().get(), 1);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(form(&sent[0])["code"], "agent-code");
}

#[tokio::test]
async fn authorize_surfaces_denial_and_cancellation_without_calling_withings() {
    let server = server_that_would_accept().await;
    let agent = ScriptedAgent::new()
        .then(|authorize_url| {
            let state = query_value(authorize_url, "state").unwrap();
            Ok(format!("{REDIRECT_URI}?error=access_denied&state={state}")
                .parse()
                .unwrap())
        })
        .then(|_| Err(UserAgentError::Cancelled));
    let c = client(&server);

    let err = authorize(&c, Scopes::all(), &agent).await.unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    let err = authorize(&c, Scopes::all(), &agent).await.unwrap_err();
    assert!(
        matches!(err, Error::UserAgent(UserAgentError::Cancelled)),
        "{err:?}"
    );
    assert!(!err.is_denied());
    assert_eq!(requests(&server).await.len(), 0);
}

#[test]
fn an_unusable_client_secret_is_refused_when_the_client_is_built() {
    // Caught here, not after the user went through the browser and the code was spent.
    for secret in ["", "   ", "csecret-5678\n", "two words"] {
        let err = withings_oauth::Client::builder()
            .client_id(CLIENT_ID)
            .client_secret(secret)
            .redirect_uri(REDIRECT_URI)
            .build()
            .expect_err("refused");
        assert!(
            matches!(err, withings_oauth::ConfigError::InvalidClientSecret),
            "{secret:?}: {err:?}"
        );
        assert!(err.to_string().contains("client secret"), "{err}");
    }
}
