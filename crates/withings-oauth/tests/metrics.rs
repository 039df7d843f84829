//! What a session records through the `metrics` facade: refreshes by outcome and their
//! duration, Withings' answers by class; nothing on the fresh path; never a user id or a secret
//! as a label.

mod common;

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use common::*;
use wiremock::MockServer;
use withings_oauth::testing::{self, RecordedMetrics};
use withings_oauth::{MemoryStore, Session};

const USER: u64 = 5_550_123;
const ACCESS: &str = "access-7f3a9c";
const REFRESH: &str = "refresh-2b8e41";

/// A session whose token expired, against `server`.
async fn due_session(server: &MockServer) -> Session {
    let client = client(server);
    let login = authorized(
        &client,
        USER,
        ACCESS,
        REFRESH,
        Utc::now() - TimeDelta::minutes(1),
        "user.metrics",
    );
    Session::start(login, Arc::new(MemoryStore::new()))
        .await
        .unwrap()
}

#[test]
fn a_refresh_counts_by_outcome_with_its_duration_and_the_answer_by_class() {
    let recorded = testing::record_metrics(|| async {
        let server = MockServer::start().await;
        mount_token_answer(
            &server,
            token_answer(
                serde_json::json!(USER),
                "new-access-91",
                "new-refresh-17",
                "user.metrics",
            ),
        )
        .await;
        let session = due_session(&server).await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access-91"
        );
        // Fresh now: these record nothing.
        for _ in 0..10 {
            session.access_token().await.unwrap();
        }
    });
    let refreshes = "withings_oauth_refreshes_total";
    assert_eq!(recorded.count(refreshes, &[("outcome", "ok")]), 1);
    assert_eq!(recorded.count(refreshes, &[]), 1, "{recorded:?}");
    assert_eq!(
        recorded.count(
            "withings_oauth_refresh_duration_seconds",
            &[("outcome", "ok")]
        ),
        1
    );
    let answers = "withings_oauth_api_answers_total";
    assert_eq!(
        recorded.count(answers, &[("call", "token"), ("class", "ok")]),
        1
    );
    assert_no_identifying_label(&recorded);
}

#[test]
fn a_rejected_refresh_token_and_a_601_count_as_such() {
    let recorded = testing::record_metrics(|| async {
        let rejected = token_server(json_response(
            r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
        ))
        .await;
        let session = due_session(&rejected).await;
        assert!(session.access_token().await.unwrap_err().login_required());

        let limited = token_server(json_response(
            r#"{"status":601,"body":{},"error":"Too many requests"}"#,
        ))
        .await;
        let session = due_session(&limited).await;
        session.access_token().await.unwrap_err();
    });
    let refreshes = "withings_oauth_refreshes_total";
    assert_eq!(
        recorded.count(refreshes, &[("outcome", "invalid_refresh_token")]),
        1
    );
    assert_eq!(recorded.count(refreshes, &[("outcome", "rate_limited")]), 1);
    let answers = "withings_oauth_api_answers_total";
    assert_eq!(recorded.count(answers, &[("class", "invalid_params")]), 1);
    assert_eq!(recorded.count(answers, &[("class", "rate_limited")]), 1);
    assert_no_identifying_label(&recorded);
}

#[test]
fn the_fresh_path_records_nothing() {
    let recorded = testing::record_metrics(|| async {
        let server = MockServer::start().await;
        let client = client(&server);
        let login = authorized(
            &client,
            USER,
            ACCESS,
            REFRESH,
            Utc::now() + TimeDelta::hours(3),
            "user.metrics",
        );
        let session = Session::start(login, Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        for _ in 0..100 {
            session.access_token().await.unwrap();
        }
    });
    assert!(recorded.is_empty(), "{recorded:?}");
}

/// No label value holds the user id, a token or the client's secrets.
fn assert_no_identifying_label(recorded: &RecordedMetrics) {
    let user = USER.to_string();
    let forbidden = [
        user.as_str(),
        ACCESS,
        REFRESH,
        "new-access-91",
        "new-refresh-17",
        CLIENT_ID,
        CLIENT_SECRET,
        "http",
    ];
    recorded.assert_no_label_holds(&forbidden);
}
