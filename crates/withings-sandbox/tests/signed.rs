//! Nonces and signed calls: `getnonce`, signed `requesttoken`, `revoke`, `getdemoaccess`.

mod common;

use std::time::Duration;

use common::{REDIRECT, assert_error, now, sign, start_default};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEMO_USERID, SEEDED_USERID, error_text,
};

#[tokio::test]
async fn getnonce_with_correct_signature_returns_a_nonce() {
    let env = start_default().await;
    let answer = env.getnonce_raw(now(), DEFAULT_CLIENT_SECRET).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let nonce = answer["body"]["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 40);
    assert_ne!(env.nonce().await, nonce, "every nonce is new");
    assert_eq!(env.handle.counters().getnonce, 2);
}

#[tokio::test]
async fn getnonce_with_wrong_signature_or_stale_timestamp_is_refused() {
    let env = start_default().await;
    let wrong = env.getnonce_raw(now(), "not-the-secret").await;
    assert_error(&wrong, 503, error_text::INVALID_SIGNATURE);
    let stale = env.getnonce_raw(now() - 3600, DEFAULT_CLIENT_SECRET).await;
    assert_error(&stale, 503, error_text::INVALID_TIMESTAMP);
    // Uppercase hex is not what Withings computes: refused.
    let ts = now().to_string();
    let upper = sign(DEFAULT_CLIENT_SECRET, &["getnonce", DEFAULT_CLIENT_ID, &ts]).to_uppercase();
    let answer = env
        .post(
            "v2/signature",
            &[
                ("action", "getnonce"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("timestamp", &ts),
                ("signature", &upper),
            ],
        )
        .await;
    assert_error(&answer, 503, error_text::INVALID_SIGNATURE);
    // The timestamp window follows the sandbox clock.
    env.handle.advance_clock(Duration::from_secs(3600));
    assert_error(
        &env.getnonce_raw(now(), DEFAULT_CLIENT_SECRET).await,
        503,
        error_text::INVALID_TIMESTAMP,
    );
    assert_eq!(
        env.getnonce_raw(now() + 3600, DEFAULT_CLIENT_SECRET).await["status"],
        0
    );
}

async fn signed_exchange(
    env: &common::Env,
    code: &str,
    nonce: &str,
    secret: &str,
) -> serde_json::Value {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    env.post_signed("requesttoken", nonce, secret, &form).await
}

#[tokio::test]
async fn signed_requesttoken_works_and_nonces_are_single_use() {
    let env = start_default().await;
    let nonce = env.nonce().await;
    let code = env.code_for(REDIRECT).await;
    let answer = signed_exchange(&env, &code, &nonce, DEFAULT_CLIENT_SECRET).await;
    assert_eq!(answer["status"], 0, "{answer}");
    assert_eq!(answer["body"]["userid"], SEEDED_USERID.to_string());

    let code2 = env.code_for(REDIRECT).await;
    let reused = signed_exchange(&env, &code2, &nonce, DEFAULT_CLIENT_SECRET).await;
    assert_error(&reused, 503, error_text::INVALID_NONCE);

    let fresh = env.nonce().await;
    let bad = signed_exchange(&env, &code2, &fresh, "wrong").await;
    assert_error(&bad, 503, error_text::INVALID_SIGNATURE);
    // A wrong signature does not burn the nonce.
    assert_eq!(
        signed_exchange(&env, &code2, &fresh, DEFAULT_CLIENT_SECRET).await["status"],
        0
    );
}

#[tokio::test]
async fn nonces_expire_after_30_minutes() {
    let env = start_default().await;
    let nonce = env.nonce().await;
    env.handle.advance_clock(Duration::from_secs(30 * 60 + 1));
    let code = env.code_for(REDIRECT).await;
    assert_error(
        &signed_exchange(&env, &code, &nonce, DEFAULT_CLIENT_SECRET).await,
        503,
        error_text::INVALID_NONCE,
    );
}

async fn revoke(env: &common::Env, userid: &str) -> serde_json::Value {
    env.signed("revoke", &[("userid", userid)]).await
}

#[tokio::test]
async fn revoke_kills_both_tokens() {
    let env = start_default().await;
    let body = env.tokens().await;
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(env.measure(access).await["status"], 0);

    let answer = revoke(&env, &SEEDED_USERID.to_string()).await;
    assert_eq!(answer, serde_json::json!({"status": 0, "body": {}}));
    assert_error(&env.measure(access).await, 401, error_text::INVALID_TOKEN);
    assert_error(
        &env.refresh(refresh).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert!(env.handle.live_tokens().is_empty());
    assert_eq!(env.handle.counters().revoke, 1);

    assert_error(
        &revoke(&env, "alice").await,
        503,
        error_text::INVALID_USERID,
    );
    // Revoke exists only in signed form: a secret is not enough.
    let unsigned = env
        .post(
            "v2/oauth2",
            &[
                ("action", "revoke"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("userid", "1001"),
            ],
        )
        .await;
    assert_error(&unsigned, 503, "Invalid Params: missing nonce");
}

#[tokio::test]
async fn getdemoaccess_gives_demo_tokens() {
    let env = start_default().await;
    let demo_access = async |scope: &str| {
        env.signed("getdemoaccess", &[("scope_oauth2", scope)])
            .await
    };
    let answer = demo_access("user.activity,user.metrics").await;
    assert_eq!(answer["status"], 0, "{answer}");
    let body = &answer["body"];
    assert_eq!(body["userid"], DEMO_USERID);
    assert_eq!(body["expires_in"], 10_800);
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(env.measure(access).await["status"], 0);
    let refreshed = env.refresh(body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed["body"]["userid"], DEMO_USERID);
    assert_eq!(env.handle.counters().demo_access, 1);

    let bad_scope = demo_access("everything").await;
    assert_error(&bad_scope, 503, error_text::INVALID_SCOPE);
}

#[tokio::test]
async fn signed_refresh_rotates_like_the_secret_form() {
    let env = start_default().await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    let form = [("grant_type", "refresh_token"), ("refresh_token", &r1)];
    let answer = env.signed("requesttoken", &form).await;
    assert_eq!(answer["status"], 0, "{answer}");
    assert_eq!(answer["body"]["userid"], SEEDED_USERID);
    assert_ne!(answer["body"]["refresh_token"], r1.as_str());
}
