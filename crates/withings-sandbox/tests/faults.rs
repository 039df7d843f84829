//! Fault injection: each fault's effect, whether the request was processed, and that a fault
//! applies to exactly the next K requests of its endpoint.

mod common;

use std::time::{Duration, Instant};

use common::{REDIRECT, code_form, refresh_form, start_default};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, TokenKind};

#[tokio::test]
async fn delay_processes_the_request_then_holds_the_response() {
    let env = start_default().await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    env.handle
        .inject_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(400)), 1);
    let started = Instant::now();
    let answer = env.refresh(&r1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["status"], 0);
    let started = Instant::now();
    assert_eq!(env.refresh(&r1).await["status"], 0);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "only one request delayed"
    );
}

#[tokio::test]
async fn delay_past_a_client_timeout_still_rotates_the_tokens() {
    let env = start_default().await;
    let r1 = common::string(&env.tokens().await, "refresh_token");
    env.handle
        .inject_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(800)), 1);
    let result = env
        .request("v2/oauth2")
        .timeout(Duration::from_millis(200))
        .form(&refresh_form(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, &r1))
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    // The server acted: a second access token and the rotated-away r1 exist.
    let tokens = env.handle.live_tokens();
    assert_eq!(
        tokens
            .iter()
            .filter(|t| t.kind == TokenKind::Access)
            .count(),
        2
    );
    assert!(tokens.iter().any(|t| t.token == r1 && t.used));
    assert_eq!(env.handle.counters().token_refresh, 1);
}

#[tokio::test]
async fn drop_connection_closes_without_response_and_does_not_process() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    env.handle
        .inject_fault(Endpoint::Token, Fault::DropConnection, 1);
    let form = code_form(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, &code, REDIRECT);
    let result = env.request("v2/oauth2").form(&form).send().await;
    let err = result.expect_err("no response");
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert_eq!(env.handle.live_codes().len(), 1, "not processed");
    assert_eq!(env.handle.counters().token_code, 0);
    assert_eq!(
        env.exchange(&code, REDIRECT).await["status"],
        0,
        "next request is normal"
    );
}

#[tokio::test]
async fn http500_answers_html_and_does_not_process() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    env.handle.inject_fault(Endpoint::Token, Fault::Http500, 1);
    let resp = env
        .post_raw("v2/oauth2", &[("action", "requesttoken"), ("code", &code)])
        .await;
    assert_eq!(resp.status(), 500);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(resp.text().await.unwrap().contains("500"));
    assert_eq!(env.handle.live_codes().len(), 1);
}

#[tokio::test]
async fn malformed_body_is_truncated_json_and_does_not_process() {
    let env = start_default().await;
    let code = env.code_for(REDIRECT).await;
    env.handle
        .inject_fault(Endpoint::Token, Fault::MalformedBody, 1);
    let resp = env
        .post_raw("v2/oauth2", &[("action", "requesttoken"), ("code", &code)])
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(r#"{"status":0,"body":{"#), "{text}");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    assert_eq!(env.handle.live_codes().len(), 1);
}

#[tokio::test]
async fn faults_apply_to_exactly_k_requests_of_their_endpoint() {
    let env = start_default().await;
    let access = common::string(&env.tokens().await, "access_token");
    env.handle
        .inject_fault(Endpoint::Measure, Fault::Http500, 2);
    env.handle
        .inject_fault(Endpoint::Authorize, Fault::Http500, 1);
    // Other endpoints are untouched.
    assert_eq!(env.nonce().await.len(), 40);
    for _ in 0..2 {
        let resp = env
            .request("measure")
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
    }
    assert_eq!(env.measure(&access).await["status"], 0);
    let page = env.get_page(&common::auth_params(REDIRECT)).await;
    assert_eq!(page.status(), 500);
    assert_eq!(
        env.get_page(&common::auth_params(REDIRECT)).await.status(),
        200
    );
    assert_eq!(env.handle.counters().faults_applied, 3);
}

#[tokio::test]
async fn clear_faults_removes_pending_ones() {
    let env = start_default().await;
    env.handle
        .inject_fault(Endpoint::Signature, Fault::DropConnection, 5);
    env.handle
        .inject_fault(Endpoint::Signature, Fault::Http500, 5);
    env.handle.clear_faults();
    assert_eq!(env.nonce().await.len(), 40);
    assert_eq!(env.handle.counters().faults_applied, 0);
}
