//! What the routes record through the `metrics` facade: pending logins parked, taken and
//! refused, and callbacks by outcome; never an owner, a user id or a `state` as a label.

mod common;

use common::{connect, open, two_instances};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use reqwest::StatusCode;
use withings_sandbox::{SEEDED_USERID, Sandbox, SandboxConfig};

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

#[test]
fn logins_parked_taken_replayed_and_from_another_browser_are_counted() {
    let mut callbacks = Vec::new();
    let recorded = recording(|| async {
        let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
            .await
            .unwrap();
        let (a, b, _) = two_instances(&sandbox).await;
        let (cookie, callback) = connect(&a, "alice").await;
        let (status, _, _) = open(&callback, "alice", Some(&cookie)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let user = withings_oauth::UserId::new(SEEDED_USERID);
        assert!(a.login.access_token(user).await.is_ok());
        // The same callback again: a replay.
        let (status, _, page) = open(&callback, "alice", Some(&cookie)).await;
        assert!(page.contains("data-kind=\"unknown\""), "{status} {page}");
        // A second login, whose callback a browser without the cookie opens.
        let (_, other) = connect(&b, "alice").await;
        let (_, _, page) = open(&other, "alice", None).await;
        assert!(page.contains("data-kind=\"other-browser\""), "{page}");
        callbacks.extend([callback.to_string(), other.to_string()]);
        sandbox.shutdown().await;
    });
    let pending = "withings_oauth_pending_logins_total";
    assert_eq!(counter(&recorded, pending, &[("event", "parked")]), 2);
    assert_eq!(counter(&recorded, pending, &[("event", "taken")]), 1);
    assert_eq!(
        counter(
            &recorded,
            pending,
            &[("event", "refused"), ("reason", "unknown")]
        ),
        1
    );
    let logins = "withings_oauth_logins_total";
    assert_eq!(counter(&recorded, logins, &[("outcome", "ok")]), 1);
    assert_eq!(counter(&recorded, logins, &[("outcome", "unknown")]), 1);
    assert_eq!(
        counter(&recorded, logins, &[("outcome", "other-browser")]),
        1
    );
    let user = SEEDED_USERID.to_string();
    for (name, labels, _) in &recorded {
        for (key, value) in labels {
            let leaks = value.contains(&user)
                || value.contains("alice")
                || value.contains("http")
                || callbacks
                    .iter()
                    .any(|c| c.contains(value.as_str()) && value.len() > 8);
            assert!(!leaks, "{name} has the label {key}={value}");
        }
    }
}
