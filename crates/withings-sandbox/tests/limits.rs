//! Rate limit (status 601), garbage input, oversized bodies, concurrency, shutdown.

mod common;

use std::time::Duration;

use common::{REDIRECT, assert_error, envelope, start, start_default};
use withings_sandbox::{
    App, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MAX_BODY_BYTES, Sandbox, SandboxConfig,
    error_text,
};

#[tokio::test]
async fn rate_limit_answers_601_per_client_and_window() {
    let other = App::new("other-client", "other-secret", [REDIRECT]);
    let env = start(SandboxConfig::default().rate_limit(Some(3)).with_app(other)).await;
    for _ in 0..3 {
        env.nonce().await;
    }
    let limited = env.getnonce_raw(common::now(), DEFAULT_CLIENT_SECRET).await;
    assert_eq!(
        limited,
        serde_json::json!({"status": 601, "body": {}, "error": "Too Many Requests"})
    );
    // The token endpoint shares the budget of the same client...
    assert_error(&env.refresh("x").await, 601, error_text::TOO_MANY_REQUESTS);
    // ...but another client has its own.
    let other = env.refresh_as("other-client", "other-secret", "x").await;
    assert_error(&other, 503, error_text::INVALID_REFRESH_TOKEN);
    assert_eq!(env.handle.counters().rate_limited, 2);
    assert_eq!(
        env.handle.counters().getnonce,
        3,
        "limited requests are not processed"
    );

    env.handle.advance_clock(Duration::from_secs(61));
    assert_eq!(env.nonce().await.len(), 40, "a new window");
}

#[tokio::test]
async fn rate_limit_counts_measure_by_the_token_client_and_can_be_turned_off() {
    let env = start(SandboxConfig::default().rate_limit(None)).await;
    let access = common::string(&env.tokens().await, "access_token");
    for _ in 0..150 {
        assert_eq!(env.measure(&access).await["status"], 0);
    }
    env.handle.set_rate_limit(Some(2));
    assert_eq!(env.measure(&access).await["status"], 0);
    assert_eq!(env.measure(&access).await["status"], 0);
    assert_error(
        &env.measure(&access).await,
        601,
        error_text::TOO_MANY_REQUESTS,
    );
    env.handle.set_rate_limit(None);
    assert_eq!(env.measure(&access).await["status"], 0);
    let c = env.handle.counters();
    assert_eq!((c.rate_limited, c.measure), (1, 153));
}

/// Lifetimes too long to add to the clock mean "far future": every endpoint keeps answering,
/// before and after the clock is moved as far as it goes.
#[tokio::test]
async fn huge_lifetimes_and_clock_advances_do_not_panic() {
    let config = SandboxConfig::default()
        .access_token_lifetime(Duration::MAX)
        .refresh_token_lifetime(Duration::MAX)
        .code_lifetime(Duration::MAX)
        .nonce_lifetime(Duration::MAX)
        .old_refresh_grace(Duration::MAX);
    let env = start(config).await;
    let body = env.tokens().await;
    assert_eq!(body["expires_in"], u64::MAX);
    assert_eq!(env.nonce().await.len(), 40);

    env.handle
        .advance_clock(Duration::from_secs(100 * 365 * 24 * 3600));
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(env.measure(access).await["status"], 0, "valid a century on");
    let refresh = body["refresh_token"].as_str().unwrap();
    let rotated = env.refresh(refresh).await;
    assert_eq!(rotated["status"], 0, "{rotated}");

    env.handle.advance_clock(Duration::MAX);
    env.handle.advance_clock(Duration::MAX);
    let again = env
        .refresh(rotated["body"]["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(again["status"], 0, "{again}");
    assert_eq!(env.handle.live_codes().len(), 0);
    assert!(env.handle.live_tokens().len() >= 4);
}

#[test]
fn handle_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<withings_sandbox::SandboxHandle>();
    assert_traits::<SandboxConfig>();
}

#[tokio::test]
async fn garbage_input_gets_envelopes_not_panics() {
    let env = start_default().await;
    for path in ["v2/oauth2", "v2/signature"] {
        let empty = env.post(path, &[]).await;
        assert_error(&empty, 503, "Invalid Params: missing action");
        let json = env
            .request(path)
            .header("content-type", "application/json")
            .body(r#"{"action":"requesttoken","client_id":"sandbox-client-id"}"#);
        assert_error(&envelope(json).await, 503, "Invalid Params: missing action");
        let binary = env
            .request(path)
            .body(vec![0xff, 0xfe, b'%', b'z', b'=', b'&', b'&', 0x00]);
        let binary = envelope(binary).await;
        assert_eq!(binary["status"], 503);
    }
    let missing_client = env.post("v2/oauth2", &[("action", "requesttoken")]).await;
    assert_error(&missing_client, 503, "Invalid Params: missing client_id");
    let no_timestamp = env
        .post(
            "v2/signature",
            &[("action", "getnonce"), ("client_id", DEFAULT_CLIENT_ID)],
        )
        .await;
    assert_error(&no_timestamp, 503, "Invalid Params: missing timestamp");
    let bad_timestamp = env
        .post(
            "v2/signature",
            &[
                ("action", "getnonce"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("timestamp", "yesterday"),
                (
                    "signature",
                    &common::sign(
                        DEFAULT_CLIENT_SECRET,
                        &["getnonce", DEFAULT_CLIENT_ID, "yesterday"],
                    ),
                ),
            ],
        )
        .await;
    assert_error(&bad_timestamp, 503, error_text::INVALID_TIMESTAMP);
    // Query parameters work too (Withings documents them as such).
    let via_query = env.http.get(env.url("v2/oauth2?action=requesttoken&client_id=sandbox-client-id&client_secret=sandbox-client-secret&grant_type=refresh_token&refresh_token=nope"));
    let via_query = envelope(via_query).await;
    assert_error(&via_query, 503, error_text::INVALID_REFRESH_TOKEN);
}

#[tokio::test]
async fn huge_bodies_are_refused_with_an_envelope() {
    let env = start_default().await;
    let huge = format!(
        "action=requesttoken&junk={}",
        "a".repeat(MAX_BODY_BYTES * 16)
    );
    for path in ["v2/oauth2", "v2/signature", "measure"] {
        let request = env
            .request(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(huge.clone());
        assert_error(&envelope(request).await, 503, error_text::BODY_TOO_LARGE);
    }
    let page = env
        .request("oauth2_user/authorize2")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    // Still serving.
    assert_eq!(env.nonce().await.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once() {
    let env = std::sync::Arc::new(start(SandboxConfig::default().rate_limit(None)).await);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            let body = env.tokens().await;
            let access = common::string(&body, "access_token");
            assert_eq!(env.measure(&access).await["status"], 0);
            access
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 40);
    let c = env.handle.counters();
    assert_eq!((c.authorize_allow, c.token_code, c.measure), (40, 40, 40));
}

#[tokio::test]
async fn shutdown_stops_serving_and_handle_outlives_it() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let addr = sandbox.local_addr();
    assert_eq!(sandbox.base_url().as_str(), format!("http://{addr}/"));
    assert_eq!(sandbox.account_url(), sandbox.base_url());
    assert_eq!(sandbox.api_url(), sandbox.base_url());
    let handle = sandbox.handle();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    sandbox.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert_eq!(handle.counters(), withings_sandbox::Counters::default());

    let dropped = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let addr = dropped.local_addr();
    drop(dropped);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn counters_reset() {
    let env = start_default().await;
    env.tokens().await;
    assert_ne!(env.handle.counters(), withings_sandbox::Counters::default());
    env.handle.reset_counters();
    assert_eq!(env.handle.counters(), withings_sandbox::Counters::default());
}
