//! Refreshing at `POST /v2/oauth2`: the form sent, rotation, and which failures hand the previous
//! login back.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use withings_oauth::RefreshError;
use withings_oauth::{ApiError, Authorized, Client, Scope, StatusFamily, TransportKind};

const USER: u64 = 31337;
const OLD_ACCESS: &str = "old-access-token";
const OLD_REFRESH: &str = "old-refresh-token";

fn old_expiry() -> DateTime<Utc> {
    // Whole seconds, as stored credentials carry them.
    DateTime::from_timestamp(1_764_340_000, 0).unwrap()
}

fn old_login(client: &Client) -> Authorized {
    authorized(
        client,
        USER,
        OLD_ACCESS,
        OLD_REFRESH,
        old_expiry(),
        "user.metrics,user.activity",
    )
}

/// Asserts the error handed back the untouched previous login.
fn assert_previous_kept(err: RefreshError) -> ApiError {
    assert!(!err.login_required(), "{err}");
    assert!(err.to_string().contains("still valid"), "{err}");
    let (source, previous) = err.into_parts();
    let previous = previous.unwrap_or_else(|| panic!("previous login lost after {source:?}"));
    assert_eq!(previous.user_id().get(), USER);
    assert_eq!(previous.expires_at(), old_expiry());
    assert_eq!(refresh_token_of(&previous), OLD_REFRESH);
    assert_eq!(access_token_of(&previous), OLD_ACCESS);
    source
}

async fn refresh_answering(template: ResponseTemplate) -> RefreshError {
    let server = token_server(template).await;
    old_login(&client(&server))
        .refresh()
        .await
        .expect_err("the refresh fails")
}

#[tokio::test]
async fn refresh_sends_exactly_the_protocol_form_and_rotates_the_tokens() {
    let server = MockServer::start().await;
    mount_token_answer(
        &server,
        token_answer(json!(USER), "new-access", "new-refresh", "user.metrics"),
    )
    .await;
    let before = Utc::now();

    let fresh = old_login(&client(&server))
        .refresh()
        .await
        .expect("the refresh succeeds");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v2/oauth2");
    assert_eq!(content_type(request), FORM_CONTENT_TYPE);
    assert_eq!(
        form(request),
        expected_form(&[
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", OLD_REFRESH),
        ]),
        "exactly these fields: no code, no redirect_uri"
    );

    assert_eq!(fresh.user_id().get(), USER);
    assert_eq!(access_token_of(&fresh), "new-access");
    assert_eq!(
        refresh_token_of(&fresh),
        "new-refresh",
        "the rotated refresh token replaces the old one"
    );
    let earliest = before + TimeDelta::seconds(10800);
    assert!(fresh.expires_at() >= earliest);
    assert!(fresh.expires_at() <= earliest + TimeDelta::seconds(2));
    assert!(fresh.scopes().contains(&Scope::Metrics));
    assert!(
        !fresh.scopes().contains(&Scope::Activity),
        "granted scopes win"
    );
}

#[tokio::test]
async fn a_refresh_answer_without_scope_keeps_the_previous_scopes() {
    let server = MockServer::start().await;
    mount_token_answer(
        &server,
        json!({"status":0,"body":{"userid":"31337","access_token":"a2","refresh_token":"r2","expires_in":10800}})
            .to_string(),
    )
    .await;
    let fresh = old_login(&client(&server)).refresh().await.unwrap();
    assert_eq!(fresh.scopes().to_string(), "user.metrics,user.activity");
}

#[tokio::test]
async fn a_dead_refresh_token_means_logging_in_again() {
    let err = refresh_answering(json_response(
        r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
    ))
    .await;
    assert!(err.login_required(), "{err}");
    assert!(matches!(err.error(), ApiError::InvalidRefreshToken));
    assert!(err.login().is_none());
    assert!(err.to_string().contains("log in again"), "{err}");
    assert!(err.into_login().is_none());
}

#[tokio::test]
async fn the_error_table_through_refresh() {
    let err = refresh_answering(json_response(
        r#"{"status":503,"body":{},"error":"Invalid Params: invalid client id/secret"}"#,
    ))
    .await;
    assert!(matches!(assert_previous_kept(err), ApiError::InvalidClient));

    let err = refresh_answering(json_response(
        r#"{"status":503,"error":"Invalid Params: invalid code"}"#,
    ))
    .await;
    assert!(matches!(assert_previous_kept(err), ApiError::InvalidCode));

    let err = refresh_answering(json_response(
        r#"{"status":401,"body":{},"error":"XRequestError: invalid_token: The access token provided is invalid"}"#,
    ))
    .await;
    assert!(matches!(
        assert_previous_kept(err),
        ApiError::InvalidAccessToken
    ));

    let err = refresh_answering(json_response(r#"{"status":522,"error":"Timeout"}"#)).await;
    let e = assert_previous_kept(err);
    assert!(
        matches!(
            e,
            ApiError::Withings {
                status: 522,
                family: StatusFamily::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn rate_limit_keeps_the_previous_login() {
    let err = refresh_answering(json_response(
        r#"{"status":601,"body":{},"error":"Too many requests"}"#,
    ))
    .await;
    assert!(err.is_transient());
    let e = assert_previous_kept(err);
    assert!(
        matches!(e, ApiError::RateLimited { status: 601, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn http_5xx_keeps_the_previous_login() {
    for status in [500u16, 502, 503, 504] {
        let err = refresh_answering(ResponseTemplate::new(status)).await;
        assert!(err.is_transient(), "{status}");
        let e = assert_previous_kept(err);
        assert!(
            matches!(e, ApiError::HttpStatus { status: s } if s == status),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn broken_answers_keep_the_previous_login() {
    for (template, what) in [
        (ResponseTemplate::new(200), "empty"),
        (
            json_response(r#"{"status":0,"body":{"userid""#),
            "truncated",
        ),
        (
            ResponseTemplate::new(200).set_body_raw(b"<html></html>".to_vec(), "text/html"),
            "html",
        ),
        (json_response(r#"{"status":0,"body":{}}"#), "empty body"),
    ] {
        let err = refresh_answering(template).await;
        let e = assert_previous_kept(err);
        assert!(
            matches!(
                e,
                ApiError::EmptyBody
                    | ApiError::Truncated
                    | ApiError::NotJson { .. }
                    | ApiError::Malformed { .. }
            ),
            "{what}: {e:?}"
        );
    }
}

#[tokio::test]
async fn a_timeout_keeps_the_previous_login() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .respond_with(
            json_response(token_answer(
                json!(USER),
                "late-a",
                "late-r",
                "user.metrics",
            ))
            .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let client = Client::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .redirect_uri(REDIRECT_URI)
        .base_url(base_url(&server))
        .timeouts(SHORT_TIMEOUT, SHORT_TIMEOUT)
        .build()
        .unwrap();

    let started = std::time::Instant::now();
    let err = old_login(&client).refresh().await.expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout applies"
    );
    assert!(err.is_transient());
    let e = assert_previous_kept(err);
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.maybe_processed(), "a timed-out request may have arrived");
}

#[tokio::test]
async fn connection_refused_keeps_the_previous_login() {
    let client = Client::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .redirect_uri(REDIRECT_URI)
        .base_url(closed_port_url())
        .timeouts(Duration::from_secs(5), Duration::from_secs(5))
        .build()
        .unwrap();
    let err = old_login(&client).refresh().await.expect_err("refused");
    let e = assert_previous_kept(err);
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.maybe_processed(), "nothing was sent");
}

#[tokio::test]
async fn a_kept_login_refreshes_on_the_next_try() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_token_answer(
        &server,
        token_answer(json!(USER), "a2", "r2", "user.metrics"),
    )
    .await;

    let err = old_login(&client(&server)).refresh().await.unwrap_err();
    let previous = err.into_login().expect("kept");
    let fresh = previous.refresh().await.expect("the retry succeeds");
    assert_eq!(refresh_token_of(&fresh), "r2");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    for request in &sent {
        assert_eq!(form(request)["refresh_token"], OLD_REFRESH);
    }
}

#[tokio::test]
async fn a_connection_cut_mid_answer_keeps_the_previous_login() {
    let base = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n".into(),
        br#"{"status":0,"body":{"userid":"1","access_token":"#,
        Duration::ZERO,
    );
    let err = old_login(&impatient_client(base))
        .refresh()
        .await
        .expect_err("cut short");
    assert!(err.is_transient());
    let e = assert_previous_kept(err);
    assert!(matches!(e, ApiError::Truncated), "{e:?}");
}

#[tokio::test]
async fn an_answer_that_stalls_mid_body_is_a_timeout_and_keeps_the_previous_login() {
    let base = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n".into(),
        br#"{"status":0,"body":{"userid":"1","access_token":"#,
        Duration::from_secs(3),
    );
    let started = std::time::Instant::now();
    let err = old_login(&impatient_client(base))
        .refresh()
        .await
        .expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout applies"
    );
    let e = assert_previous_kept(err);
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{e:?}: {e}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused_and_keeps_the_previous_login() {
    let huge = format!(
        r#"{{"status":0,"body":{{"userid":"1","padding":"{}"}}}}"#,
        "x".repeat(100 * 1024)
    );
    let err = refresh_answering(json_response(huge)).await;
    let e = assert_previous_kept(err);
    assert!(
        matches!(e, ApiError::TooLarge { limit } if limit < 100 * 1024),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_tokens_never_go_elsewhere() {
    let elsewhere = MockServer::start().await;
    mount_token_answer(
        &elsewhere,
        token_answer(json!(USER), "x", "y", "user.metrics"),
    )
    .await;
    let err = refresh_answering(
        ResponseTemplate::new(307)
            .insert_header("location", format!("{}/v2/oauth2", elsewhere.uri())),
    )
    .await;
    let e = assert_previous_kept(err);
    assert!(matches!(e, ApiError::HttpStatus { status: 307 }), "{e:?}");
    assert_eq!(
        requests(&elsewhere).await.len(),
        0,
        "the refresh token went to the redirect target"
    );
}

#[tokio::test]
async fn a_refresh_answer_without_userid_keeps_the_user() {
    let server = MockServer::start().await;
    mount_token_answer(
        &server,
        json!({"status": 0, "body": {"access_token": "new-access", "refresh_token": "new-refresh",
            "expires_in": 10800, "scope": "user.metrics"}})
        .to_string(),
    )
    .await;
    let fresh = old_login(&client(&server))
        .refresh()
        .await
        .expect("refreshed");
    assert_eq!(fresh.user_id().get(), USER);
    assert_eq!(refresh_token_of(&fresh), "new-refresh");
}
