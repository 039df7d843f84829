//! What a session records through the `metrics` facade: refreshes by outcome and their
//! duration, Withings' answers by class; nothing on the fresh path; never a user id or a secret
//! as a label.

mod common;

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use wiremock::MockServer;
use withings_oauth::{MemoryStore, Session};

const USER: u64 = 5_550_123;
const ACCESS: &str = "access-7f3a9c";
const REFRESH: &str = "refresh-2b8e41";

/// One recorded metric: its name, its labels, its value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

/// Runs `work` on a runtime of this thread with a recorder of its own, and returns what it
/// recorded.
fn recording<F: Future<Output = ()>>(work: impl FnOnce() -> F) -> Vec<Recorded> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(work()));
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

fn counter(recorded: &[Recorded], name: &str, labels: &[(&str, &str)]) -> u64 {
    recorded
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn histogram_count(recorded: &[Recorded], name: &str, labels: &[(&str, &str)]) -> usize {
    recorded
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Histogram(values) => values.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

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
    let recorded = recording(|| async {
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
    assert_eq!(counter(&recorded, refreshes, &[("outcome", "ok")]), 1);
    assert_eq!(counter(&recorded, refreshes, &[]), 1, "{recorded:?}");
    assert_eq!(
        histogram_count(
            &recorded,
            "withings_oauth_refresh_duration_seconds",
            &[("outcome", "ok")]
        ),
        1
    );
    let answers = "withings_oauth_api_answers_total";
    assert_eq!(
        counter(&recorded, answers, &[("call", "token"), ("class", "ok")]),
        1
    );
    assert_no_identifying_label(&recorded);
}

#[test]
fn a_rejected_refresh_token_and_a_601_count_as_such() {
    let recorded = recording(|| async {
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
        counter(
            &recorded,
            refreshes,
            &[("outcome", "invalid_refresh_token")]
        ),
        1
    );
    assert_eq!(
        counter(&recorded, refreshes, &[("outcome", "rate_limited")]),
        1
    );
    let answers = "withings_oauth_api_answers_total";
    assert_eq!(
        counter(&recorded, answers, &[("class", "invalid_params")]),
        1
    );
    assert_eq!(counter(&recorded, answers, &[("class", "rate_limited")]), 1);
    assert_no_identifying_label(&recorded);
}

#[test]
fn the_fresh_path_records_nothing() {
    let recorded = recording(|| async {
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
fn assert_no_identifying_label(recorded: &[Recorded]) {
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
    for (name, labels, _) in recorded {
        for (key, value) in labels {
            for secret in forbidden {
                assert!(
                    !value.contains(secret),
                    "{name} has the label {key}={value}, which holds {secret}"
                );
            }
        }
    }
}
