//! The code exchange at `POST /v2/oauth2`, through the public flow: the form the library sends,
//! and what it makes of every kind of answer.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use withings_oauth::{ApiError, Authorized, Error, Scope, Scopes, StatusFamily, UserId};

/// Runs a whole code exchange against `server` and returns what `complete` returned.
async fn exchange(server: &MockServer, scopes: Scopes) -> Result<Authorized, Error> {
    let (pending, state) = begin(&client(server), scopes);
    pending.complete(&callback("c0de-4711", &state)).await
}

async fn exchange_answering(template: ResponseTemplate) -> Result<Authorized, Error> {
    let server = token_server(template).await;
    exchange(&server, Scopes::all()).await
}

async fn exchange_error(template: ResponseTemplate) -> ApiError {
    match exchange_answering(template).await {
        Err(Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn code_exchange_sends_exactly_the_protocol_form() {
    let server = MockServer::start().await;
    mount_token_answer(
        &server,
        token_answer(
            json!("12345678"),
            "a075-access",
            "f631-refresh",
            "user.metrics",
        ),
    )
    .await;
    let (pending, state) = begin(&client(&server), Scopes::from(Scope::Metrics));

    let authorized = pending
        .complete(&callback("c0de-4711", &state))
        .await
        .expect("the exchange succeeds");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1, "one call to the token endpoint");
    let request = &sent[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v2/oauth2");
    assert_eq!(request.url.query(), None, "nothing travels in the URL");
    assert_eq!(content_type(request), FORM_CONTENT_TYPE);
    assert!(request.headers.get("authorization").is_none());
    assert_eq!(
        form(request),
        expected_form(&[
            ("action", "requesttoken"),
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", "c0de-4711"),
            ("redirect_uri", REDIRECT_URI),
        ]),
        "exactly these fields, so no refresh_token"
    );

    assert_eq!(authorized.user_id(), UserId::new(12345678));
    assert_eq!(authorized.access_token().expose_secret(), "a075-access");
    assert_eq!(refresh_token_of(&authorized), "f631-refresh");
    assert_eq!(authorized.credentials().token_type(), "Bearer");
}

#[tokio::test]
async fn expiry_counts_from_when_the_request_was_sent() {
    // The answer takes a while: an expiry counted from its arrival would be late by that much.
    let delay = Duration::from_millis(1500);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .respond_with(
            json_response(token_answer(json!(1), "a", "r", "user.metrics")).set_delay(delay),
        )
        .mount(&server)
        .await;
    let (pending, state) = begin(&client(&server), Scopes::all());

    let before = Utc::now();
    let authorized = pending
        .complete(&callback("c", &state))
        .await
        .expect("the exchange succeeds");
    let after = Utc::now();

    assert!(after - before >= TimeDelta::from_std(delay).unwrap());
    let earliest = before + TimeDelta::seconds(10800);
    let slack = TimeDelta::milliseconds(500);
    assert!(
        authorized.expires_at() >= earliest,
        "expires_at {} is before the request was even made (+10800 s = {earliest})",
        authorized.expires_at()
    );
    assert!(
        authorized.expires_at() <= earliest + slack,
        "expires_at {} counts from the answer, not from when the request was sent ({earliest})",
        authorized.expires_at()
    );
}

#[tokio::test]
async fn userid_is_accepted_as_string_and_as_number() {
    for userid in [json!("12345678"), json!(12345678)] {
        let authorized = exchange_answering(json_response(token_answer(
            userid.clone(),
            "a",
            "r",
            "user.info",
        )))
        .await
        .unwrap_or_else(|e| panic!("userid {userid}: {e}"));
        assert_eq!(authorized.user_id().get(), 12345678, "userid {userid}");
    }
}

#[tokio::test]
async fn missing_csrf_token_and_unknown_fields_are_ignored() {
    let answer = json!({
        "status": 0,
        "time": 1764340000,
        "body": {
            "userid": "42",
            "access_token": "acc",
            "refresh_token": "ref",
            "expires_in": 10800,
            "scope": "user.activity",
            "token_type": "Bearer",
            "something_new": {"nested": [1, 2, 3]},
            "another": null
        }
    });
    let authorized = exchange_answering(json_response(answer.to_string()))
        .await
        .expect("unknown fields and a missing csrf_token are fine");
    assert_eq!(authorized.user_id().get(), 42);
    assert_eq!(access_token_of(&authorized), "acc");
}

#[tokio::test]
async fn granted_scopes_come_from_the_answer_even_when_fewer() {
    let asked: Scopes = "user.info,user.metrics,user.activity".parse().unwrap();
    let server = MockServer::start().await;
    mount_token_answer(
        &server,
        token_answer(json!(7), "a", "r", "user.activity,user.metrics"),
    )
    .await;
    let authorized = exchange(&server, asked.clone()).await.unwrap();
    let granted = authorized.scopes();
    assert!(granted.contains(&Scope::Activity) && granted.contains(&Scope::Metrics));
    assert!(!granted.contains(&Scope::Info), "not granted: {granted}");
    assert_eq!(asked.missing_from(granted).to_string(), "user.info");
}

#[tokio::test]
async fn an_answer_without_scope_keeps_the_scopes_asked_for() {
    let answer = json!({"status": 0, "body": {
        "userid": 7, "access_token": "a", "refresh_token": "r", "expires_in": 10800}});
    let asked: Scopes = "user.metrics,user.sleepevents".parse().unwrap();
    let server = MockServer::start().await;
    mount_token_answer(&server, answer.to_string()).await;
    let authorized = exchange(&server, asked.clone()).await.unwrap();
    assert!(authorized.scopes().same_set(&asked));
}

fn error_answer(status: i64, error: &str) -> ResponseTemplate {
    json_response(json!({"status": status, "body": {}, "error": error}).to_string())
}

#[tokio::test]
async fn every_row_of_the_error_table_has_its_variant() {
    let e = exchange_error(error_answer(503, "Invalid Params: invalid code")).await;
    assert!(matches!(e, ApiError::InvalidCode), "{e:?}");
    assert!(!e.is_transient());

    let e = exchange_error(error_answer(503, "Invalid Params: invalid refresh_token")).await;
    assert!(matches!(e, ApiError::InvalidRefreshToken), "{e:?}");

    let e = exchange_error(error_answer(
        503,
        "Invalid Params: invalid client id/secret",
    ))
    .await;
    assert!(matches!(e, ApiError::InvalidClient), "{e:?}");

    let e = exchange_error(error_answer(601, "Too Many Requests")).await;
    match &e {
        ApiError::RateLimited { status, message } => {
            assert_eq!(*status, 601);
            assert_eq!(message, "Too Many Requests");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(e.is_transient());

    let e = exchange_error(error_answer(
        401,
        "XRequestError: invalid_token: The access token provided is invalid",
    ))
    .await;
    assert!(matches!(e, ApiError::InvalidAccessToken), "{e:?}");

    for (status, family) in [
        (2554, StatusFamily::NotImplemented),
        (522, StatusFamily::Timeout),
        (293, StatusFamily::InvalidParams),
        (214, StatusFamily::ServiceNotAllowed),
        (524, StatusFamily::BadState),
        (100, StatusFamily::AuthenticationFailed),
        (9999, StatusFamily::Other),
    ] {
        let e = exchange_error(error_answer(status, "Something happened")).await;
        match e {
            ApiError::Withings {
                status: got,
                family: got_family,
                ref message,
            } => {
                assert_eq!((got, got_family), (status, family));
                assert_eq!(message, "Something happened");
            }
            other => panic!("status {status}: expected Withings, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_503_with_an_unknown_text_is_not_mistaken_for_a_known_one() {
    let e = exchange_error(error_answer(503, "Invalid Params: invalid foo")).await;
    assert!(
        matches!(
            e,
            ApiError::Withings {
                status: 503,
                family: StatusFamily::InvalidParams,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_error_status_without_body_is_read_from_status_and_error() {
    let e = exchange_error(json_response(
        r#"{"status":503,"error":"Invalid Params: invalid code"}"#,
    ))
    .await;
    assert!(matches!(e, ApiError::InvalidCode), "{e:?}");

    let e = exchange_error(json_response(r#"{"status":2554}"#)).await;
    match e {
        ApiError::Withings {
            status,
            family,
            message,
        } => {
            assert_eq!((status, family), (2554, StatusFamily::NotImplemented));
            assert_eq!(message, "");
        }
        other => panic!("expected Withings, got {other:?}"),
    }
}

#[tokio::test]
async fn broken_answers_each_have_their_own_error() {
    let e = exchange_error(ResponseTemplate::new(500).set_body_string("oops")).await;
    assert!(matches!(e, ApiError::HttpStatus { status: 500 }), "{e:?}");
    assert!(e.is_transient());

    let e = exchange_error(
        ResponseTemplate::new(200).set_body_raw(
            "<html><body>Service Unavailable</body></html>"
                .as_bytes()
                .to_vec(),
            "text/html; charset=utf-8",
        ),
    )
    .await;
    match &e {
        ApiError::NotJson { content_type } => assert!(content_type.starts_with("text/html")),
        other => panic!("expected NotJson, got {other:?}"),
    }

    let e = exchange_error(ResponseTemplate::new(200)).await;
    assert!(matches!(e, ApiError::EmptyBody), "{e:?}");

    let e = exchange_error(json_response(
        r#"{"status":0,"body":{"userid":"12345678","access_token":"a075"#,
    ))
    .await;
    assert!(matches!(e, ApiError::Truncated), "{e:?}");

    // A success with an empty body must not pass for credentials (others stored `{}` over good
    // tokens this way).
    let e = exchange_error(json_response(r#"{"status":0,"body":{}}"#)).await;
    assert!(matches!(e, ApiError::Malformed { .. }), "{e:?}");
    let e = exchange_error(json_response(r#"{"status":0}"#)).await;
    assert!(matches!(e, ApiError::Malformed { .. }), "{e:?}");

    let e = exchange_error(json_response(r#"{"body":{}}"#)).await;
    assert!(matches!(e, ApiError::Malformed { .. }), "no status: {e:?}");

    let e = exchange_error(json_response(
        r#"{"status":0,"body":{"userid":"1","access_token":"","refresh_token":"r","expires_in":10800}}"#,
    ))
    .await;
    assert!(
        matches!(e, ApiError::Malformed { .. }),
        "empty token: {e:?}"
    );
}

#[tokio::test]
async fn malformed_answers_never_quote_their_values() {
    let e = exchange_error(json_response(
        r#"{"status":0,"body":{"userid":"not-a-number-tok3n","access_token":"tok3n-a","refresh_token":"tok3n-r","expires_in":10800}}"#,
    ))
    .await;
    assert!(matches!(e, ApiError::Malformed { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("tok3n"), "{shown}");
}

#[tokio::test]
async fn the_code_exchange_uses_the_redirect_uri_of_the_authorize_url() {
    let server = MockServer::start().await;
    mount_token_answer(&server, token_answer(json!(1), "a", "r", "user.info")).await;
    let (pending, state) = begin(&client(&server), Scopes::all());
    let in_url = query_value(pending.authorize_url(), "redirect_uri").unwrap();
    pending.complete(&callback("c", &state)).await.unwrap();
    let sent = requests(&server).await;
    assert_eq!(form(&sent[0])["redirect_uri"], in_url);
}

#[test]
fn any_code_reaches_the_token_endpoint_unchanged() {
    // A registered redirect URI may carry a query of its own, with reserved characters.
    const REDIRECT: &str = "https://app.example.com/withings/callback?tenant=a%26b&x=%2B";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MockServer::start());
    let client = withings_oauth::Client::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .redirect_uri(REDIRECT)
        .base_url(base_url(&server))
        .build()
        .unwrap();
    let config = proptest::test_runner::Config {
        failure_persistence: None,
        ..proptest::test_runner::Config::with_cases(32)
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&"\\PC{1,80}", |code| {
            runtime.block_on(async {
                server.reset().await;
                mount_token_answer(&server, token_answer(json!(1), "a", "r", "user.metrics")).await;
                let (pending, state) = begin(&client, Scopes::all());
                let mut url = pending.redirect_uri().clone();
                url.query_pairs_mut()
                    .append_pair("code", &code)
                    .append_pair("state", &state);
                pending.complete(&url).await.expect("accepted");
                let sent = form(&requests(&server).await[0]);
                proptest::prop_assert_eq!(&sent["code"], &code);
                proptest::prop_assert_eq!(sent["redirect_uri"].as_str(), REDIRECT);
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn json_that_is_not_an_envelope_is_malformed_not_html() {
    for body in ["[]", r#""ok""#, "42", "null", "true"] {
        let e = exchange_error(json_response(body)).await;
        assert!(matches!(e, ApiError::Malformed { .. }), "{body}: {e:?}");
        assert!(!e.to_string().contains("instead of JSON"), "{body}: {e}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_says_so_whatever_its_declared_type() {
    let e = exchange_error(json_response("<html>502 Bad Gateway</html>")).await;
    assert!(matches!(e, ApiError::NotJson { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("not JSON"), "{shown}");
    assert!(
        shown.contains("application/json"),
        "the declared type is named: {shown}"
    );
}

/// Each kind of answer a program branches on, with whether retrying later may help and whether
/// it is the program's configuration that is wrong.
#[tokio::test]
async fn every_error_class_says_whether_retrying_helps() {
    let html = |status: u16| {
        ResponseTemplate::new(status).set_body_raw(
            b"<html><body>Down for maintenance</body></html>".to_vec(),
            "text/html",
        )
    };
    let envelope = |body: &str| {
        ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
    };
    let cases: Vec<(ResponseTemplate, &str, bool, bool)> = vec![
        (html(200), "not JSON: a maintenance page", true, false),
        (html(503), "HTTP 503", true, false),
        (ResponseTemplate::new(502), "HTTP 502", true, false),
        (ResponseTemplate::new(429), "HTTP 429", true, false),
        (ResponseTemplate::new(408), "HTTP 408", true, false),
        (ResponseTemplate::new(403), "HTTP 403", false, false),
        (html(404), "HTTP 404: wrong base URL", false, true),
        (
            ResponseTemplate::new(405),
            "HTTP 405: wrong base URL",
            false,
            true,
        ),
        (
            ResponseTemplate::new(410),
            "HTTP 410: wrong base URL",
            false,
            true,
        ),
        (ResponseTemplate::new(200), "empty body", true, false),
        (
            envelope(r#"{"status":0,"body":{"userid""#),
            "truncated",
            true,
            false,
        ),
        (
            envelope(r#"{"status":0,"body":{}}"#),
            "malformed",
            false,
            false,
        ),
        (
            envelope(r#"{"status":601,"error":"Too Many Requests"}"#),
            "601",
            true,
            false,
        ),
        (
            envelope(r#"{"status":522,"error":"Timeout"}"#),
            "522",
            true,
            false,
        ),
        (
            envelope(r#"{"status":215,"error":"An error occurred"}"#),
            "another status",
            true,
            false,
        ),
        (
            envelope(r#"{"status":2554,"error":"Not implemented"}"#),
            "not implemented",
            false,
            false,
        ),
        (
            envelope(r#"{"status":503,"error":"Invalid Params: invalid code"}"#),
            "invalid code",
            false,
            false,
        ),
        (
            envelope(r#"{"status":503,"error":"Invalid Params: invalid client id/secret"}"#),
            "invalid client",
            false,
            true,
        ),
    ];
    for (template, what, transient, configuration) in cases {
        let e = exchange_error(template).await;
        assert_eq!(e.is_transient(), transient, "{what}: {e:?}");
        assert_eq!(e.is_configuration(), configuration, "{what}: {e:?}");
        if configuration && matches!(e, ApiError::WrongEndpoint { .. }) {
            let message = e.to_string();
            assert!(message.contains("base URL"), "{what}: {message}");
            assert!(!message.contains("retry"), "{what}: {message}");
        }
    }
}
