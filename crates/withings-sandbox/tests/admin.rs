//! The admin HTTP API (`/admin/`, off by default): counters, logins minted in bulk, new
//! measurements, the clock, faults, switches; and the binary's request log line.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::receiver::Receiver;
use common::{Env, assert_error, start, start_default};
use serde_json::{Value, json};
use withings_sandbox::{SandboxConfig, error_text};

async fn admin_env() -> Env {
    start(
        SandboxConfig::default()
            .admin_api(true)
            .loopback_notify(true),
    )
    .await
}

/// `body` POSTed as JSON to `/admin/<path>`: the HTTP status and the JSON answer.
async fn admin(env: &Env, path: &str, body: Value) -> (u16, Value) {
    let resp = env
        .http
        .post(env.url(&format!("admin/{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn admin_get(env: &Env, path_and_query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(env.url(&format!("admin/{path_and_query}")))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn the_admin_api_is_off_by_default() {
    let env = start_default().await;
    let answer = common::envelope(env.http.get(env.url("admin/counters"))).await;
    assert_error(&answer, 2554, error_text::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn minted_logins_work_and_the_counters_say_what_they_did() {
    let env = admin_env().await;
    let (status, minted) = admin(
        &env,
        "logins",
        json!({ "count": 3, "scope": "user.metrics" }),
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let logins = minted["logins"].as_array().unwrap();
    assert_eq!(logins.len(), 3);
    assert_eq!(logins[0]["userid"], 1_000_001);
    assert_eq!(logins[2]["userid"], 1_000_003);
    assert_eq!(logins[0]["scope"], "user.metrics");
    assert_eq!(minted["client_id"], withings_sandbox::DEFAULT_CLIENT_ID);

    let access = logins[0]["access_token"].as_str().unwrap();
    assert_eq!(env.measure(access).await["status"], 0);
    let refresh = logins[1]["refresh_token"].as_str().unwrap();
    assert_eq!(env.refresh(refresh).await["status"], 0);
    assert_eq!(
        env.refresh(refresh).await["status"],
        0,
        "inside its grace period"
    );
    let missing = env.refresh("0000").await;
    assert_eq!(missing["status"], 503);

    let (status, counters) = admin_get(&env, "counters").await;
    assert_eq!(status, 200);
    assert_eq!(counters["token_refresh"], 3);
    assert_eq!(counters["refresh_granted"], 2);
    assert_eq!(counters["refresh_rejected"], 1);
    assert_eq!(counters["rotated_refresh_reused"], 1);
    assert_eq!(counters["data_calls"], 1);
    assert!(counters.get("users").is_none(), "per user only on request");
    let (_, per_user) = admin_get(&env, "counters?users=true").await;
    assert_eq!(per_user["users"]["1000002"]["refresh_granted"], 2);
    let (_, one) = admin_get(&env, "counters?userid=1000002").await;
    assert_eq!(one["refresh_in_grace"], 1);
    let (_, first) = admin_get(&env, "counters?userid=1000001").await;
    assert_eq!(first["data_served"], 1, "{first}");
    let (status, _) = admin_get(&env, "counters?userid=someone").await;
    assert_eq!(status, 400);

    let (status, _) = admin(&env, "counters/reset", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(env.handle.counters(), withings_sandbox::Counters::default());
}

#[tokio::test]
async fn strict_rotation_is_switched_and_counted_over_http() {
    let env = admin_env().await;
    let (_, settings) = admin(&env, "settings", json!({ "strict_rotation": true })).await;
    assert_eq!(settings["strict_rotation"], true);
    let (_, minted) = admin(&env, "logins", json!({})).await;
    let r0 = minted["logins"][0]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.refresh(&r0).await["status"], 0);
    assert_error(
        &env.refresh(&r0).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    let (_, counters) = admin_get(&env, "counters").await;
    assert_eq!(counters["rotated_refresh_reused"], 1);
    assert_eq!(counters["chains_killed"], 1);
}

#[tokio::test]
async fn logins_in_the_command_lines_store_format() {
    let env = admin_env().await;
    let (status, file) = admin(
        &env,
        "logins",
        json!({ "count": 2, "first": 10, "format": "store", "expires_in": 0 }),
    )
    .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["format"], 2);
    let entry = &file["users"]["1000010"];
    assert_eq!(entry["version"], 1);
    let credentials = &entry["credentials"];
    assert_eq!(credentials["user_id"], 1_000_010);
    assert_eq!(credentials["token_type"], "Bearer");
    assert_eq!(
        credentials["scopes"],
        "user.info,user.metrics,user.activity,user.sleepevents"
    );
    let expires_at = credentials["expires_at"].as_str().unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(expires_at).unwrap();
    assert!(
        (chrono::Utc::now() - expires_at.to_utc())
            .num_seconds()
            .abs()
            < 5
    );
    assert!(file["users"]["1000011"].is_object());
    // An access token minted expired is refused; its refresh token works.
    let access = credentials["access_token"].as_str().unwrap();
    assert_error(&env.measure(access).await, 401, error_text::INVALID_TOKEN);
    let refresh = credentials["refresh_token"].as_str().unwrap();
    assert_eq!(env.refresh(refresh).await["status"], 0);
}

#[tokio::test]
async fn bad_admin_requests_are_refused_with_a_reason() {
    let env = admin_env().await;
    for (path, body) in [
        ("logins", json!({ "count": 0 })),
        ("logins", json!({ "count": 100_001 })),
        ("logins", json!({ "scope": "user.everything" })),
        ("logins", json!({ "client_id": "nobody" })),
        ("logins", json!({ "format": "xml" })),
        ("logins", json!({ "cuont": 3 })),
        (
            "measures",
            json!({ "userid": 42, "measures": [{ "type": 1, "value": 1 }] }),
        ),
        ("measures", json!({ "userid": 1001, "measures": [] })),
        ("clock", json!({ "advance": -5 })),
        (
            "faults",
            json!({ "endpoint": "nowhere", "fault": "http500" }),
        ),
        (
            "faults",
            json!({ "endpoint": "measure", "fault": "explode" }),
        ),
        ("faults", json!({ "endpoint": "measure", "fault": "delay" })),
        (
            "faults",
            json!({ "endpoint": "measure", "fault": "http500", "times": 0 }),
        ),
    ] {
        let (status, answer) = admin(&env, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    let resp = env
        .http
        .post(env.url("admin/logins"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn an_added_measurement_notifies_and_is_answered() {
    let env = admin_env().await;
    let mut receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    let url = receiver.url("/ok");
    let subscribed = env
        .call(
            "notify",
            &token,
            &[
                ("action", "subscribe"),
                ("callbackurl", &url),
                ("appli", "4"),
            ],
        )
        .await;
    assert_eq!(subscribed["status"], 0, "{subscribed}");
    let (status, added) = admin(
        &env,
        "measures",
        json!({
            "userid": withings_sandbox::SEEDED_USERID,
            "measures": [
                { "type": 9, "value": 80 },
                { "type": 10, "value": 125 },
            ],
        }),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["appli"], 4);
    let form = receiver.next().await;
    assert_eq!(form["appli"], "4");
    assert_eq!(form["userid"], withings_sandbox::SEEDED_USERID.to_string());
    let answer = env
        .call(
            "measure",
            &token,
            &[("action", "getmeas"), ("meastype", "10")],
        )
        .await;
    assert_eq!(answer["body"]["measuregrps"][0]["grpid"], added["grpid"]);
    assert_eq!(
        answer["body"]["measuregrps"][0]["measures"],
        json!([{ "type": 10, "value": 125, "unit": 0 }])
    );
}

#[tokio::test]
async fn the_clock_moves_and_faults_hit_the_nth_request() {
    let env = admin_env().await;
    let token = env.login(&["user.metrics"]);
    let (_, before) = admin_get(&env, "clock").await;
    let (status, after) = admin(&env, "clock", json!({ "advance": 3601 })).await;
    assert_eq!(status, 200);
    assert!(after["now"].as_u64().unwrap() >= before["now"].as_u64().unwrap() + 3601);
    assert_error(&env.measure(&token).await, 401, error_text::INVALID_TOKEN);

    let token = env.login(&["user.metrics"]);
    let (status, _) = admin(
        &env,
        "faults",
        json!({ "endpoint": "measure", "fault": "601", "after": 1 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(env.measure(&token).await["status"], 0, "the first passes");
    assert_error(
        &env.measure(&token).await,
        601,
        error_text::TOO_MANY_REQUESTS,
    );
    assert_eq!(env.measure(&token).await["status"], 0);

    admin(
        &env,
        "faults",
        json!({ "endpoint": "/measure", "fault": "http500", "times": 5 }),
    )
    .await;
    let resp = env.post_raw("measure", &[("action", "getmeas")]).await;
    assert_eq!(resp.status(), 500);
    admin(
        &env,
        "faults",
        json!({ "endpoint": "v2/user", "fault": "html" }),
    )
    .await;
    let resp = env
        .request("v2/user")
        .bearer_auth(&token)
        .form(&[("action", "getdevice")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    let resp = env
        .http
        .delete(env.url("admin/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.measure(&token).await["status"], 0, "faults cleared");

    admin(
        &env,
        "faults",
        json!({ "endpoint": "v2/sleep", "fault": "delay", "delay_ms": 300 }),
    )
    .await;
    let activity = env.login(&["user.activity"]);
    let started = std::time::Instant::now();
    let form = [("action", "getsummary"), ("lastupdate", "0")];
    assert_eq!(env.call("v2/sleep", &activity, &form).await["status"], 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_binary_serves_the_admin_api_and_logs_action_and_user() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_withings-sandbox"));
    command
        .args(["--port", "0", "--admin"])
        .env("RUST_LOG", "withings_sandbox=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    let (mut child, base) = common::child::spawn(command).await;
    let http = common::http_client();
    let minted: Value = http
        .post(base.join("admin/logins").unwrap())
        .json(&json!({ "count": 2 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = minted["logins"][1]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = minted["logins"][1]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = common::envelope(
        http.post(base.join("v2/sleep").unwrap())
            .bearer_auth(&access)
            .form(&[("action", "getsummary"), ("lastupdate", "0")]),
    )
    .await;
    assert_eq!(answer["status"], 0, "{answer}");
    let counters: Value = http
        .get(base.join("admin/counters").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["data_calls"], 1);
    let refreshed = common::envelope(http.post(base.join("v2/oauth2").unwrap()).form(
        &common::refresh_form(
            withings_sandbox::DEFAULT_CLIENT_ID,
            withings_sandbox::DEFAULT_CLIENT_SECRET,
            &refresh,
        ),
    ))
    .await;
    assert_eq!(refreshed["status"], 0);
    let rotated = refreshed["body"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let odd = common::envelope(
        http.post(base.join("v2/sleep").unwrap())
            .bearer_auth(&access)
            .form(&[("action", refresh.as_str())]),
    )
    .await;
    assert_eq!(odd["status"], 503);

    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut log = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("/v2/sleep"))
        .unwrap_or_else(|| panic!("no request line in {log}"));
    assert!(
        line.contains("action=\"getsummary\"") || line.contains("action=getsummary"),
        "{line}"
    );
    assert!(line.contains("userid=1000002"), "{line}");
    assert!(line.contains("status=200"), "{line}");
    let line = log
        .lines()
        .find(|l| l.contains("/v2/oauth2"))
        .unwrap_or_else(|| panic!("no token request line in {log}"));
    assert!(line.contains("requesttoken refresh_token"), "{line}");
    assert!(line.contains("userid=1000002"), "{line}");
    // Not even a token sent where an action belongs.
    assert!(log.contains("(unknown)"), "{log}");
    for token in [&access, &refresh, &rotated] {
        assert!(!log.contains(token.as_str()), "a token in the log: {log}");
    }
}
