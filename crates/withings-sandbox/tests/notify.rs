//! `/notify`: subscriptions checked against a callback served here, notifications POSTed to
//! it when a measurement is added, and dropped with the login.

mod common;

use std::time::{Duration, SystemTime};

use common::receiver::Receiver;
use common::{Env, assert_error, start};
use serde_json::json;
use withings_sandbox::{NewMeasure, SEEDED_USERID, SandboxConfig, error_text};

async fn subscribe(env: &Env, token: &str, url: &str, appli: &str) -> serde_json::Value {
    env.call(
        "notify",
        token,
        &[
            ("action", "subscribe"),
            ("callbackurl", url),
            ("appli", appli),
            ("comment", "tests"),
        ],
    )
    .await
}

async fn loopback_env() -> Env {
    start(SandboxConfig::default().loopback_notify(true)).await
}

#[tokio::test]
async fn a_new_measurement_is_posted_to_the_subscribed_callback() {
    let env = loopback_env().await;
    let mut receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    let url = receiver.url("/ok");
    let answer = subscribe(&env, &token, &url, "1").await;
    assert_eq!(answer, json!({ "status": 0, "body": {} }));

    let taken = SystemTime::now() - Duration::from_secs(120);
    env.handle
        .add_measures(SEEDED_USERID, taken, &[NewMeasure::new(1, 70_500, -3)])
        .unwrap();
    let form = receiver.next().await;
    assert_eq!(form["userid"], SEEDED_USERID.to_string());
    assert_eq!(form["appli"], "1");
    let start: u64 = form["startdate"].parse().unwrap();
    let end: u64 = form["enddate"].parse().unwrap();
    let taken = common::now() - 120;
    assert!(start.abs_diff(taken) <= 1, "{form:?}");
    assert!(end >= start && end <= common::now(), "{form:?}");
    assert_eq!(form.len(), 4, "{form:?}");

    // Blood pressure goes to appli 4, which nobody subscribed to.
    env.handle
        .add_measures(SEEDED_USERID, taken_now(), &[NewMeasure::new(10, 120, 0)])
        .unwrap();
    env.handle
        .add_measures(
            SEEDED_USERID,
            taken_now(),
            &[NewMeasure::new(1, 70_400, -3)],
        )
        .unwrap();
    let second = receiver.next().await;
    assert_eq!(second["appli"], "1");
    // The sandbox counts a delivery once it has read the answer, just after the receiver got it.
    eventually(&env, |c| c.notifications_sent == 2).await;
    assert_eq!(env.handle.counters().notifications_failed, 0);
}

/// Waits up to 10 s for the counters to satisfy `done`.
async fn eventually(env: &Env, done: impl Fn(&withings_sandbox::Counters) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&env.handle.counters()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            env.handle.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn taken_now() -> SystemTime {
    SystemTime::now()
}

#[tokio::test]
async fn a_callback_that_does_not_answer_200_is_refused_at_subscribe() {
    let env = loopback_env().await;
    let receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    let broken = subscribe(&env, &token, &receiver.url("/broken"), "1").await;
    assert_error(&broken, 293, error_text::INVALID_CALLBACK);
    let missing = subscribe(&env, &token, &receiver.url("/nowhere"), "1").await;
    assert_error(&missing, 293, error_text::INVALID_CALLBACK);
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = subscribe(&env, &token, &format!("http://{closed}/ok"), "1").await;
    assert_error(&unreachable, 293, error_text::INVALID_CALLBACK);
    assert!(env.handle.subscriptions().is_empty());
}

#[tokio::test]
async fn loopback_callbacks_need_the_option_as_withings_refuses_them() {
    let env = start(SandboxConfig::default()).await;
    let receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    let answer = subscribe(&env, &token, &receiver.url("/ok"), "1").await;
    assert_error(&answer, 293, error_text::INVALID_CALLBACK);
}

#[tokio::test]
async fn subscribe_needs_the_scope_of_its_appli() {
    let env = loopback_env().await;
    let receiver = Receiver::start().await;
    let metrics = env.login(&["user.metrics"]);
    let url = receiver.url("/ok");
    assert_error(
        &subscribe(&env, &metrics, &url, "16").await,
        401,
        error_text::INSUFFICIENT_SCOPE,
    );
    assert_error(
        &subscribe(&env, &metrics, &url, "3").await,
        503,
        "Invalid Params: invalid appli",
    );
    let activity = env.login(&["user.activity"]);
    assert_eq!(subscribe(&env, &activity, &url, "16").await["status"], 0);
}

#[tokio::test]
async fn list_get_and_revoke_see_the_users_own_subscriptions() {
    let env = start(SandboxConfig::default().loopback_notify(true).seed_users(1)).await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok");
    let alice = env.login(&["user.metrics", "user.activity"]);
    assert_eq!(subscribe(&env, &alice, &url, "1").await["status"], 0);
    assert_eq!(subscribe(&env, &alice, &url, "4").await["status"], 0);
    assert_eq!(subscribe(&env, &alice, &url, "44").await["status"], 0);

    let list = env.call("notify", &alice, &[("action", "list")]).await;
    let profiles = list["body"]["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 3);
    assert_eq!(profiles[0]["callbackurl"], url);
    assert_eq!(profiles[0]["comment"], "tests");
    let only_4 = env
        .call("notify", &alice, &[("action", "list"), ("appli", "4")])
        .await;
    assert_eq!(only_4["body"]["profiles"].as_array().unwrap().len(), 1);

    // `get` without appli means appli 1.
    let get = env
        .call(
            "notify",
            &alice,
            &[("action", "get"), ("callbackurl", &url)],
        )
        .await;
    assert_eq!(
        get["body"],
        json!({ "appli": 1, "callbackurl": url, "comment": "tests" })
    );

    // Another user sees none of them.
    let bob = env
        .handle
        .issue_tokens(
            1_000_001,
            withings_sandbox::DEFAULT_CLIENT_ID,
            &["user.metrics"],
            Duration::from_secs(60),
        )
        .unwrap()
        .access_token;
    let list = env.call("notify", &bob, &[("action", "list")]).await;
    assert_eq!(list["body"]["profiles"], json!([]));
    let get = env
        .call("notify", &bob, &[("action", "get"), ("callbackurl", &url)])
        .await;
    assert_error(&get, 294, error_text::NO_SUCH_SUBSCRIPTION);

    let revoke = env
        .call(
            "notify",
            &alice,
            &[("action", "revoke"), ("callbackurl", &url), ("appli", "4")],
        )
        .await;
    assert_eq!(revoke["status"], 0, "{revoke}");
    assert_eq!(env.handle.subscriptions().len(), 2);
    let again = env
        .call(
            "notify",
            &alice,
            &[("action", "revoke"), ("callbackurl", &url), ("appli", "4")],
        )
        .await;
    assert_error(&again, 294, error_text::NO_SUCH_SUBSCRIPTION);
    // Without appli: every appli of that callback.
    let all = env
        .call(
            "notify",
            &alice,
            &[("action", "revoke"), ("callbackurl", &url)],
        )
        .await;
    assert_eq!(all["status"], 0);
    assert!(env.handle.subscriptions().is_empty());
}

#[tokio::test]
async fn revoking_the_login_drops_its_subscriptions() {
    let env = loopback_env().await;
    let receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    assert_eq!(
        subscribe(&env, &token, &receiver.url("/ok"), "1").await["status"],
        0
    );
    assert_eq!(env.handle.subscriptions().len(), 1);
    let userid = SEEDED_USERID.to_string();
    let answer = env.signed("revoke", &[("userid", &userid)]).await;
    assert_eq!(answer["status"], 0, "{answer}");
    assert!(env.handle.subscriptions().is_empty());
}

#[tokio::test]
async fn a_notification_the_callback_refuses_is_counted_as_failed() {
    let env = loopback_env().await;
    let receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    assert_eq!(
        subscribe(&env, &token, &receiver.url("/refusing"), "1").await["status"],
        0
    );
    env.handle
        .add_measures(
            SEEDED_USERID,
            taken_now(),
            &[NewMeasure::new(1, 70_000, -3)],
        )
        .unwrap();
    eventually(&env, |c| c.notifications_failed == 1).await;
    assert_eq!(env.handle.counters().notifications_sent, 0);
}

#[tokio::test]
async fn update_moves_a_subscription_or_changes_its_comment() {
    let env = loopback_env().await;
    let mut receiver = Receiver::start().await;
    let token = env.login(&["user.metrics"]);
    let (ok, refusing) = (receiver.url("/ok"), receiver.url("/refusing"));
    assert_eq!(subscribe(&env, &token, &refusing, "4").await["status"], 0);
    let update = |extra: Vec<(&'static str, String)>| {
        let mut form = vec![
            ("action", "update".to_owned()),
            ("callbackurl", refusing.clone()),
            ("appli", "4".to_owned()),
        ];
        form.extend(extra);
        form
    };
    let form = update(vec![("comment", "renamed".into())]);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(env.call("notify", &token, &pairs).await["status"], 0);
    assert_eq!(env.handle.subscriptions()[0].comment, "renamed");

    // Moved to a callback that does not answer 200: refused, nothing changes.
    let form = update(vec![
        ("new_callbackurl", receiver.url("/broken")),
        ("new_appli", "1".into()),
    ]);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = env.call("notify", &token, &pairs).await;
    assert_error(&answer, 293, error_text::INVALID_CALLBACK);

    let form = update(vec![
        ("new_callbackurl", ok.clone()),
        ("new_appli", "1".into()),
    ]);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(env.call("notify", &token, &pairs).await["status"], 0);
    let moved = &env.handle.subscriptions()[0];
    assert_eq!((moved.callbackurl.as_str(), moved.appli), (ok.as_str(), 1));
    env.handle
        .add_measures(
            SEEDED_USERID,
            taken_now(),
            &[NewMeasure::new(1, 69_900, -3)],
        )
        .unwrap();
    assert_eq!(receiver.next().await["appli"], "1");

    // The old one is gone.
    let answer = env.call("notify", &token, &pairs).await;
    assert_error(&answer, 294, error_text::NO_SUCH_SUBSCRIPTION);
}
