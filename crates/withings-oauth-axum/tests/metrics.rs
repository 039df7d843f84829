//! What the routes record through the `metrics` facade: pending logins parked, taken and
//! refused, and callbacks by outcome; never an owner, a user id or a `state` as a label.

mod common;

use common::{connect, open, two_instances};
use reqwest::StatusCode;
use withings_oauth::testing;
use withings_sandbox::{SEEDED_USERID, Sandbox, SandboxConfig};

#[test]
fn logins_parked_taken_replayed_and_from_another_browser_are_counted() {
    let mut callbacks = Vec::new();
    let recorded = testing::record_metrics(|| async {
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
    assert_eq!(recorded.count(pending, &[("event", "parked")]), 2);
    assert_eq!(recorded.count(pending, &[("event", "taken")]), 1);
    assert_eq!(
        recorded.count(pending, &[("event", "refused"), ("reason", "unknown")]),
        1
    );
    let logins = "withings_oauth_logins_total";
    assert_eq!(recorded.count(logins, &[("outcome", "ok")]), 1);
    assert_eq!(recorded.count(logins, &[("outcome", "unknown")]), 1);
    assert_eq!(recorded.count(logins, &[("outcome", "other-browser")]), 1);
    let user = SEEDED_USERID.to_string();
    for (name, key, value) in recorded.labels() {
        let leaks = value.contains(&user)
            || value.contains("alice")
            || value.contains("http")
            || callbacks
                .iter()
                .any(|c| c.contains(value) && value.len() > 8);
        assert!(!leaks, "{name} has the label {key}={value}");
    }
}
