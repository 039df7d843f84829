//! Signed calls: the nonce request, the HMAC-SHA256 signatures, and the signed-only actions
//! (revoke, demo access). Signatures are recomputed here with the `hmac` crate, from the values
//! the requests actually carried.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request};
use withings_oauth::{ApiError, AuthMethod, Error, Scope, Scopes, Unauthorized, UserId};

const NONCE: &str = "c455541b8f9111689adb647d32fac07a6ffe462d";

#[test]
fn the_test_hmac_matches_an_external_vector() {
    // python3 -c "import hmac,hashlib;print(hmac.new(b'csecret-5678',b'getnonce,cid-1234,1764340000',hashlib.sha256).hexdigest())"
    assert_eq!(
        hmac_hex(CLIENT_SECRET, "getnonce,cid-1234,1764340000"),
        "5b2c75659ab546e9fc0fd5d5e6e9283b0fad0f04c2d06af7cae88ac4eef42eb4"
    );
    // python3 -c "import hmac,hashlib;print(hmac.new(b'csecret-5678',b'requesttoken,cid-1234,n0nce-abc',hashlib.sha256).hexdigest())"
    assert_eq!(
        hmac_hex(CLIENT_SECRET, "requesttoken,cid-1234,n0nce-abc"),
        "1ebd7869d8225a0f6f003bf2e3bb54d0efac4b7391e3d46bf0c135219a2499c0"
    );
}

#[test]
fn the_public_sign_function_sorts_by_name_and_matches_the_vector() {
    let secret = secrecy::SecretString::from(CLIENT_SECRET);
    let sig = withings_oauth::sign(
        &secret,
        &[
            ("timestamp", "1764340000"),
            ("client_id", "cid-1234"),
            ("action", "getnonce"),
        ],
    );
    assert_eq!(
        sig,
        "5b2c75659ab546e9fc0fd5d5e6e9283b0fad0f04c2d06af7cae88ac4eef42eb4"
    );
}

/// Checks a `getnonce` request made between `before` and `after`.
fn assert_nonce_request(request: &Request, before: DateTime<Utc>, after: DateTime<Utc>) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v2/signature");
    assert_eq!(content_type(request), FORM_CONTENT_TYPE);
    let sent = form(request);
    let timestamp: i64 = sent["timestamp"].parse().expect("unix seconds");
    assert!(
        (before.timestamp()..=after.timestamp()).contains(&timestamp),
        "timestamp {timestamp} is not the time of the call"
    );
    let expected_signature = hmac_hex(
        CLIENT_SECRET,
        &format!("getnonce,{CLIENT_ID},{}", sent["timestamp"]),
    );
    assert_eq!(
        sent,
        expected_form(&[
            ("action", "getnonce"),
            ("client_id", CLIENT_ID),
            ("timestamp", &sent["timestamp"]),
            ("signature", &expected_signature),
        ])
    );
}

fn assert_secret_never_sent(requests: &[Request]) {
    for request in requests {
        let body = String::from_utf8_lossy(&request.body);
        let headers = format!("{:?}", request.headers);
        for (part, text) in [
            ("body", &*body),
            ("URL", request.url.as_str()),
            ("headers", &headers),
        ] {
            assert!(
                !text.contains(CLIENT_SECRET),
                "the {part} of {} carried the secret",
                request.url.path()
            );
        }
    }
}

fn signed_client(server: &MockServer) -> withings_oauth::Client {
    client_with(server, AuthMethod::Signature, CLIENT_SECRET)
}

#[tokio::test]
async fn a_signed_code_exchange_gets_a_nonce_then_signs_instead_of_sending_the_secret() {
    let server = MockServer::start().await;
    mount_nonce(&server, NONCE).await;
    mount_token_answer(&server, token_answer(json!(99), "a", "r", "user.metrics")).await;
    let (pending, state) = begin(&signed_client(&server), Scopes::from(Scope::Metrics));

    let before = Utc::now();
    let authorized = pending
        .complete(&callback("c0de-signed", &state))
        .await
        .expect("the signed exchange succeeds");
    let after = Utc::now();
    assert_eq!(authorized.user_id().get(), 99);

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2, "getnonce, then requesttoken");
    assert_nonce_request(&sent[0], before, after);

    let token = &sent[1];
    assert_eq!(token.url.path(), "/v2/oauth2");
    assert_eq!(content_type(token), FORM_CONTENT_TYPE);
    let expected_signature = hmac_hex(CLIENT_SECRET, &format!("requesttoken,{CLIENT_ID},{NONCE}"));
    assert_eq!(
        form(token),
        expected_form(&[
            ("action", "requesttoken"),
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", "c0de-signed"),
            ("redirect_uri", REDIRECT_URI),
            ("nonce", NONCE),
            ("signature", &expected_signature),
        ]),
        "nonce and signature, no client_secret"
    );
    assert_secret_never_sent(&sent);
}

#[tokio::test]
async fn a_signed_refresh_signs_too() {
    let server = MockServer::start().await;
    mount_nonce(&server, NONCE).await;
    mount_token_answer(&server, token_answer(json!(5), "a2", "r2", "user.metrics")).await;
    let login = authorized(
        &signed_client(&server),
        5,
        "a1",
        "r1",
        Utc::now(),
        "user.metrics",
    );

    let before = Utc::now();
    let fresh = login.refresh().await.expect("the signed refresh succeeds");
    let after = Utc::now();
    assert_eq!(refresh_token_of(&fresh), "r2");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_nonce_request(&sent[0], before, after);
    let expected_signature = hmac_hex(CLIENT_SECRET, &format!("requesttoken,{CLIENT_ID},{NONCE}"));
    assert_eq!(
        form(&sent[1]),
        expected_form(&[
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", "r1"),
            ("nonce", NONCE),
            ("signature", &expected_signature),
        ])
    );
    assert_secret_never_sent(&sent);
}

#[tokio::test]
async fn a_refused_nonce_stops_before_the_token_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/signature"))
        .respond_with(json_response(
            r#"{"status":503,"body":{},"error":"Invalid Params: invalid client id/secret"}"#,
        ))
        .mount(&server)
        .await;
    mount_token_answer(&server, token_answer(json!(1), "a", "r", "user.metrics")).await;
    let (pending, state) = begin(&signed_client(&server), Scopes::all());

    let err = pending
        .complete(&callback("c", &state))
        .await
        .expect_err("no nonce, no exchange");
    assert!(
        matches!(err, Error::Api(ApiError::InvalidClient)),
        "{err:?}"
    );
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url.path(), "/v2/signature");
}

#[tokio::test]
async fn an_empty_nonce_is_refused() {
    let server = MockServer::start().await;
    mount_nonce(&server, "").await;
    let (pending, state) = begin(&signed_client(&server), Scopes::all());
    let err = pending.complete(&callback("c", &state)).await.unwrap_err();
    assert!(
        matches!(err, Error::Api(ApiError::Malformed { .. })),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn revoke_sends_a_signed_revoke_for_the_user() {
    // Revoke is signed whatever the client's method: even a client-secret client never sends it.
    for auth in [AuthMethod::ClientSecret, AuthMethod::Signature] {
        let server = MockServer::start().await;
        mount_nonce(&server, NONCE).await;
        mount_token_answer(&server, r#"{"status":0,"body":{}}"#).await;
        let login = authorized(
            &client_with(&server, auth, CLIENT_SECRET),
            489418,
            "a",
            "r",
            Utc::now(),
            "user.metrics",
        );

        let before = Utc::now();
        login.revoke().await.expect("revoked");
        let after = Utc::now();

        let sent = requests(&server).await;
        assert_eq!(sent.len(), 2, "{auth:?}");
        assert_nonce_request(&sent[0], before, after);
        assert_eq!(sent[1].url.path(), "/v2/oauth2");
        assert_eq!(content_type(&sent[1]), FORM_CONTENT_TYPE);
        let expected_signature = hmac_hex(CLIENT_SECRET, &format!("revoke,{CLIENT_ID},{NONCE}"));
        assert_eq!(
            form(&sent[1]),
            expected_form(&[
                ("action", "revoke"),
                ("client_id", CLIENT_ID),
                ("nonce", NONCE),
                ("signature", &expected_signature),
                ("userid", "489418"),
            ]),
            "{auth:?}"
        );
        assert_secret_never_sent(&sent);
    }
}

#[tokio::test]
async fn a_failed_revoke_hands_the_login_back() {
    let server = MockServer::start().await;
    mount_nonce(&server, NONCE).await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .and(body_string_contains("action=revoke"))
        .respond_with(json_response(
            r#"{"status":601,"error":"Too many requests"}"#,
        ))
        .mount(&server)
        .await;
    let expiry = DateTime::from_timestamp(1_764_340_000, 0).unwrap();
    let login = authorized(
        &signed_client(&server),
        489418,
        "acc",
        "ref",
        expiry,
        "user.metrics",
    );

    let err = login.revoke().await.expect_err("rate limited");
    assert!(
        matches!(err.source, ApiError::RateLimited { status: 601, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("revoking access failed"),
        "{err}"
    );
    let back = err
        .into_login()
        .expect("a failed revoke hands the login back");
    assert_eq!(back.user_id().get(), 489418);
    assert_eq!(back.expires_at(), expiry);
    assert_eq!(refresh_token_of(&back), "ref");
    assert_eq!(access_token_of(&back), "acc");
}

#[tokio::test]
async fn demo_access_sends_a_signed_getdemoaccess_with_the_scopes() {
    let server = MockServer::start().await;
    mount_nonce(&server, NONCE).await;
    mount_token_answer(
        &server,
        json!({"status":0,"body":{"access_token":"demo-a","refresh_token":"demo-r",
            "expires_in":10800,"scope":"user.activity,user.metrics","token_type":"Bearer"}})
        .to_string(),
    )
    .await;
    let scopes: Scopes = "user.activity,user.metrics".parse().unwrap();

    let before = Utc::now();
    let demo = Unauthorized::new(&signed_client(&server), scopes)
        .demo_access()
        .await
        .expect("demo access");
    let after = Utc::now();

    assert_eq!(demo.user_id(), UserId::DEMO, "the answer names no user");
    assert_eq!(access_token_of(&demo), "demo-a");
    assert!(demo.scopes().contains(&Scope::Activity));

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_nonce_request(&sent[0], before, after);
    let expected_signature = hmac_hex(CLIENT_SECRET, &format!("getdemoaccess,{CLIENT_ID},{NONCE}"));
    assert_eq!(
        form(&sent[1]),
        expected_form(&[
            ("action", "getdemoaccess"),
            ("client_id", CLIENT_ID),
            ("nonce", NONCE),
            ("signature", &expected_signature),
            ("scope_oauth2", "user.activity,user.metrics"),
        ])
    );
    assert_secret_never_sent(&sent);
}

#[tokio::test]
async fn demo_access_keeps_a_user_id_the_answer_gives() {
    let server = MockServer::start().await;
    mount_nonce(&server, NONCE).await;
    mount_token_answer(
        &server,
        token_answer(json!("777"), "a", "r", "user.metrics"),
    )
    .await;
    let demo = Unauthorized::new(&signed_client(&server), Scopes::from(Scope::Metrics))
        .demo_access()
        .await
        .unwrap();
    assert_eq!(demo.user_id().get(), 777);
}
