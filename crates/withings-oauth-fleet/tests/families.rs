//! `Fleet::call` on the data families besides `getmeas`: sleep, heart and activity, with
//! their scopes, paging and a refresh in the middle.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use withings_oauth::testing;
use withings_oauth::{ApiError, Client, Expected, MemoryStore, SessionError, TokenStore, UserId};
use withings_oauth_fleet::{Fleet, FleetError, RateLimit};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, User,
};

const HOUR: Duration = Duration::from_secs(3600);

/// A sandbox with one numbered user, a fleet over a memory store holding that user's login
/// with `scopes`.
async fn fleet_with(scopes: &[&str]) -> (Sandbox, Fleet, UserId) {
    let sandbox = Sandbox::start(SandboxConfig::default().seed_users(1).rate_limit(None))
        .await
        .expect("the sandbox starts");
    let user = UserId::new(User::numbered(1).userid);
    let issued = sandbox
        .handle()
        .issue_tokens(user.get(), DEFAULT_CLIENT_ID, scopes, HOUR)
        .expect("tokens for a seeded user");
    let store = Arc::new(MemoryStore::new());
    let login = testing::credentials(
        user,
        &issued.access_token,
        &issued.refresh_token,
        Utc::now() + TimeDelta::hours(1),
    );
    store.save(user, &login, Expected::Absent).await.unwrap();
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.base_url());
    let fleet = Fleet::builder(client, store)
        .rate_limit(RateLimit::new(1_000_000, Duration::from_secs(1), 100_000))
        .build()
        .unwrap();
    (sandbox, fleet, user)
}

fn ymd(days_ago: i64) -> String {
    (Utc::now() - TimeDelta::days(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test]
async fn call_reads_sleep_summaries_page_by_page() {
    let (sandbox, fleet, user) = fleet_with(&["user.activity"]).await;
    let mut nights: Vec<Value> = Vec::new();
    let mut offset = "0".to_owned();
    loop {
        let body = fleet
            .call(
                user,
                "v2/sleep",
                &[
                    ("action", "getsummary"),
                    ("startdateymd", &ymd(40)),
                    ("enddateymd", &ymd(0)),
                    ("offset", &offset),
                ],
            )
            .await
            .unwrap();
        nights.extend(body["series"].as_array().unwrap().iter().cloned());
        if body["more"] != Value::Bool(true) {
            break;
        }
        offset = body["offset"].to_string();
    }
    assert_eq!(nights.len(), 30, "a month of nights over two pages");
    assert_eq!(nights.last().unwrap()["date"], ymd(1));
    assert!(
        nights
            .iter()
            .all(|n| n["data"]["total_sleep_time"].as_i64().unwrap() > 0)
    );
    assert_eq!(sandbox.handle().counters().data_calls, 2);
}

#[tokio::test]
async fn call_reads_ecg_recordings_and_refreshes_when_the_token_expired() {
    let (sandbox, fleet, user) = fleet_with(&["user.metrics"]).await;
    let list = fleet
        .call(user, "v2/heart", &[("action", "list")])
        .await
        .unwrap();
    let recordings = list["series"].as_array().unwrap();
    assert_eq!(recordings.len(), 15, "one every other day");
    let signalid = recordings[0]["ecg"]["signalid"].to_string();

    // The sandbox's clock passes the access token's expiry, which the store does not know:
    // the call is refused 401 invalid_token, the fleet refreshes once and calls again.
    sandbox
        .handle()
        .advance_clock(HOUR + Duration::from_secs(1));
    let signal = fleet
        .call(
            user,
            "v2/heart",
            &[("action", "get"), ("signalid", &signalid)],
        )
        .await
        .unwrap();
    assert_eq!(signal["signal"].as_array().unwrap().len(), 9_000);
    let counters = sandbox.handle().counters();
    assert_eq!(counters.refresh_granted, 1);
    assert_eq!(counters.data_rejected, 1);
}

#[tokio::test]
async fn call_without_the_familys_scope_is_a_withings_401_not_a_login_loss() {
    let (sandbox, fleet, user) = fleet_with(&["user.metrics"]).await;
    let error = fleet
        .call(
            user,
            "v2/measure",
            &[
                ("action", "getactivity"),
                ("startdateymd", &ymd(7)),
                ("enddateymd", &ymd(1)),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            FleetError::Session(SessionError::Api(ApiError::Withings { status: 401, .. }))
        ),
        "{error:?}"
    );
    assert!(!error.needs_reauthorization());
    // No refresh was spent on it: a missing scope is not an expired token.
    assert_eq!(sandbox.handle().counters().token_refresh, 0);
    // getmeas, which the scope covers, still works.
    let groups = fleet
        .get_meas(user, &withings_oauth::GetMeas::new())
        .await
        .unwrap();
    assert!(!groups.groups.is_empty());
}
