//! `requesttoken`: code exchange, refresh rotation and its two death rules, secrets.

mod common;

use std::time::Duration;

use common::{REDIRECT, SCOPE, assert_error, code_form, start, start_default};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_USERID, SandboxConfig, TokenKind, error_text,
};

#[tokio::test]
async fn code_exchange_answers_userid_as_a_string() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    let answer = env.exchange(&code, REDIRECT).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let body = &answer["body"];
    assert_eq!(body["userid"], SEEDED_USERID.to_string());
    assert!(body["userid"].is_string());
    assert_eq!(body["expires_in"], 10_800);
    assert_eq!(body["scope"], SCOPE);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["csrf_token"].as_str().is_some_and(|c| !c.is_empty()));
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(access.len(), 40);
    assert_ne!(access, refresh);
    assert!(env.handle.live_codes().is_empty(), "the code is consumed");
    let tokens = env.handle.live_tokens();
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens
            .iter()
            .any(|t| t.kind == TokenKind::Access && t.token == access && !t.used)
    );
    assert!(
        tokens
            .iter()
            .any(|t| t.kind == TokenKind::Refresh && t.token == refresh)
    );
    assert!(
        tokens
            .iter()
            .all(|t| t.userid == SEEDED_USERID && t.client_id == DEFAULT_CLIENT_ID)
    );
}

#[tokio::test]
async fn codes_are_single_use() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    assert_eq!(env.exchange(&code, REDIRECT).await["status"], 0);
    let again = env.exchange(&code, REDIRECT).await;
    assert_error(&again, 503, error_text::INVALID_CODE);
    assert_eq!(again["error"], "Invalid Params: invalid code");
    let unknown = env
        .exchange("0000000000000000000000000000000000000000", REDIRECT)
        .await;
    assert_error(&unknown, 503, error_text::INVALID_CODE);
    let c = env.handle.counters();
    assert_eq!((c.token_code, c.code_rejected, c.code_granted), (3, 2, 1));
    assert_eq!(c.user(SEEDED_USERID).code_granted, 1);
}

#[tokio::test]
async fn codes_expire_after_30_seconds_of_sandbox_clock() {
    let env = start_default().await;
    let fresh = env.code_for(REDIRECT).await;
    env.handle.advance_clock(Duration::from_secs(29));
    assert_eq!(
        env.exchange(&fresh, REDIRECT).await["status"],
        0,
        "still valid at 29 s"
    );

    let stale = env.code_for(REDIRECT).await;
    env.handle.advance_clock(Duration::from_secs(31));
    assert!(env.handle.live_codes().is_empty());
    assert_error(
        &env.exchange(&stale, REDIRECT).await,
        503,
        error_text::INVALID_CODE,
    );
}

#[tokio::test]
async fn code_is_bound_to_client_and_redirect_uri() {
    let other = withings_sandbox::App::new("other-client", "other-secret", [REDIRECT]);
    let env = start(SandboxConfig::default().with_app(other)).await;
    let code = env.code_for(REDIRECT).await;

    let other_port = env.exchange(&code, "http://127.0.0.1:9999/callback").await;
    assert_error(&other_port, 503, error_text::INVALID_CODE);
    let no_redirect = env
        .post(
            "v2/oauth2",
            &[
                ("action", "requesttoken"),
                ("grant_type", "authorization_code"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("code", &code),
            ],
        )
        .await;
    assert_error(&no_redirect, 503, "Invalid Params: missing redirect_uri");
    let other_client = env
        .post(
            "v2/oauth2",
            &[
                ("action", "requesttoken"),
                ("grant_type", "authorization_code"),
                ("client_id", "other-client"),
                ("client_secret", "other-secret"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_error(&other_client, 503, error_text::INVALID_CODE);
    // Refused attempts do not burn the code: the rightful exchange still works.
    assert_eq!(env.exchange(&code, REDIRECT).await["status"], 0);
}

#[tokio::test]
async fn wrong_secret_or_unknown_client_is_invalid_client() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    for (client_id, secret) in [
        (DEFAULT_CLIENT_ID, "wrong-secret"),
        ("unknown-client", DEFAULT_CLIENT_SECRET),
    ] {
        let answer = env
            .post("v2/oauth2", &code_form(client_id, secret, &code, REDIRECT))
            .await;
        assert_error(&answer, 503, "Invalid Params: invalid client id/secret");
    }
    let mut no_secret = code_form(DEFAULT_CLIENT_ID, "", &code, REDIRECT).to_vec();
    no_secret.retain(|(k, _)| *k != "client_secret");
    let no_secret = env.post("v2/oauth2", &no_secret).await;
    assert_error(&no_secret, 503, error_text::INVALID_CLIENT);
    assert_eq!(
        env.exchange(&code, REDIRECT).await["status"],
        0,
        "code survived"
    );
}

#[tokio::test]
async fn refresh_answers_userid_as_a_number_and_a_new_pair_each_time() {
    let env = start_default().await;
    let first = env.tokens().await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let answer = env.refresh(r1).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let second = &answer["body"];
    assert_eq!(second["userid"], SEEDED_USERID);
    assert!(second["userid"].is_u64());
    assert_eq!(second["scope"], SCOPE);
    assert_eq!(second["token_type"], "Bearer");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r2, r1);
    assert_ne!(second["access_token"], first["access_token"]);

    let third = env.refresh(r2).await["body"].clone();
    assert_ne!(third["refresh_token"].as_str().unwrap(), r2);
    assert_ne!(third["access_token"], second["access_token"]);
    assert_eq!(env.handle.counters().token_refresh, 2);
}

#[tokio::test]
async fn old_refresh_token_dies_8_hours_after_rotation() {
    let env = start_default().await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    let rotated = env.refresh(&r1).await;
    let r2 = common::string(&rotated["body"], "refresh_token");

    env.handle.advance_clock(Duration::from_secs(8 * 3600 - 60));
    // Within the grace period the old token still works and yields yet another pair.
    let again = env.refresh(&r1).await;
    assert_eq!(again["status"], 0, "{again}");
    assert_ne!(
        again["body"]["refresh_token"],
        rotated["body"]["refresh_token"]
    );

    env.handle.advance_clock(Duration::from_secs(61));
    let dead = env.refresh(&r1).await;
    assert_error(&dead, 503, "Invalid Params: invalid refresh_token");
    // The successor is unaffected.
    assert_eq!(env.refresh(&r2).await["status"], 0);
    let c = env.handle.counters();
    assert_eq!((c.token_refresh, c.refresh_rejected), (4, 1));
}

#[tokio::test]
async fn refresh_tokens_expire_after_a_year_or_the_configured_lifetime() {
    let env = start_default().await;
    let year = Duration::from_secs(365 * 24 * 3600);
    let r1 = common::string(&env.tokens().await, "refresh_token");
    env.handle.advance_clock(year - Duration::from_secs(60));
    let rotated = env.refresh(&r1).await;
    assert_eq!(rotated["status"], 0, "a minute short of a year: {rotated}");
    let r2 = common::string(&rotated["body"], "refresh_token");
    env.handle.advance_clock(Duration::from_secs(61));
    // Inside its 8 h grace, but its year is over.
    assert_error(
        &env.refresh(&r1).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_eq!(env.refresh(&r2).await["status"], 0, "a new year for r2");

    let hour = Duration::from_secs(3600);
    let env = start(SandboxConfig::default().refresh_token_lifetime(hour)).await;
    let r = common::string(&env.tokens().await, "refresh_token");
    env.handle.advance_clock(hour + Duration::from_secs(1));
    assert_error(
        &env.refresh(&r).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_eq!(env.handle.counters().refresh_rejected, 1);
}

#[tokio::test]
async fn old_refresh_token_dies_when_the_new_access_token_is_first_used() {
    let env = start_default().await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    let pair2 = env.refresh(&r1).await["body"].clone();
    // Not used yet: the old token still works (a lost response can be retried).
    let pair3 = env.refresh(&r1).await["body"].clone();
    assert!(pair3["access_token"].is_string());

    let a2 = pair2["access_token"].as_str().unwrap();
    assert_eq!(env.measure(a2).await["status"], 0);
    assert_error(
        &env.refresh(&r1).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    let used = env.handle.live_tokens();
    assert!(used.iter().any(|t| t.token == a2 && t.used));
    assert!(!used.iter().any(|t| t.token == r1));
}

#[tokio::test]
async fn refresh_token_of_another_client_or_unknown_is_rejected() {
    let other = withings_sandbox::App::new("other-client", "other-secret", [REDIRECT]);
    let env = start(SandboxConfig::default().with_app(other)).await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    let answer = env.refresh_as("other-client", "other-secret", &r1).await;
    assert_error(&answer, 503, error_text::INVALID_REFRESH_TOKEN);
    assert_error(
        &env.refresh("nope").await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_eq!(env.refresh(&r1).await["status"], 0);
}

#[tokio::test]
async fn access_tokens_expire_after_expires_in() {
    let env = start(SandboxConfig::default().access_token_lifetime(Duration::from_secs(60))).await;
    let body = env.tokens().await;
    assert_eq!(body["expires_in"], 60);
    let access = body["access_token"].as_str().unwrap();
    env.handle.advance_clock(Duration::from_secs(59));
    assert_eq!(env.measure(access).await["status"], 0);
    env.handle.advance_clock(Duration::from_secs(2));
    assert_error(&env.measure(access).await, 401, error_text::INVALID_TOKEN);
    // The refresh token lives on.
    let refreshed = env.refresh(body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed["status"], 0);
}

#[tokio::test]
async fn wrong_grant_type_and_unknown_action_are_invalid_params() {
    let env = start_default().await;
    let base = [
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("action", "requesttoken"), ("grant_type", "password")],
            error_text::INVALID_GRANT_TYPE,
        ),
        (
            &[("action", "requesttoken")],
            "Invalid Params: missing grant_type",
        ),
        (&[("action", "listusers")], error_text::INVALID_ACTION),
        (
            &[("action", "requesttoken"), ("grant_type", "refresh_token")],
            "Invalid Params: missing refresh_token",
        ),
    ];
    for (extra, error) in cases {
        let answer = env.post("v2/oauth2", &[&base[..], extra].concat()).await;
        assert_error(&answer, 503, error);
    }
}
