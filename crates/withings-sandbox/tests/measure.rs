//! `/measure` `getmeas`: data behind a bearer token, the 401 envelope, scopes.

mod common;

use common::{REDIRECT, assert_error, auth_params, envelope, location_params, start_default};
use withings_sandbox::{SEEDED_EMAIL, SEEDED_PASSWORD, error_text};

#[tokio::test]
async fn getmeas_returns_measure_groups() {
    let env = start_default().await;
    let access = common::string(&env.tokens().await, "access_token");
    let answer = env.measure(&access).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let body = &answer["body"];
    assert_eq!(body["timezone"], "Europe/Paris");
    assert!(body["updatetime"].as_u64().unwrap() >= common::now());
    let groups = body["measuregrps"].as_array().unwrap();
    assert!(!groups.is_empty());
    let first = &groups[0];
    for key in [
        "grpid", "attrib", "date", "created", "category", "deviceid", "measures",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    assert_eq!(
        first["measures"][0],
        serde_json::json!({"value": 72345, "type": 1, "unit": -3})
    );
    assert_eq!(env.handle.counters().measure, 1);
}

#[tokio::test]
async fn access_token_as_form_parameter_is_accepted() {
    let env = start_default().await;
    let access = common::string(&env.tokens().await, "access_token");
    let as_form = env
        .request("measure")
        .form(&[("action", "getmeas"), ("access_token", &access)]);
    let answer = envelope(as_form).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let with_authorization = |value: String| {
        env.request("measure")
            .header("authorization", value)
            .form(&[("action", "getmeas")])
    };
    let lowercase_scheme = envelope(with_authorization(format!("bearer {access}"))).await;
    assert_eq!(lowercase_scheme["status"], 0, "{lowercase_scheme}");
    let basic = envelope(with_authorization(format!("Basic {access}"))).await;
    assert_error(&basic, 401, error_text::INVALID_TOKEN);
}

#[tokio::test]
async fn bad_token_gets_the_exact_401_envelope() {
    let env = start_default().await;
    let answer = env
        .measure("0123456789abcdef0123456789abcdef01234567")
        .await;
    assert_eq!(
        answer,
        serde_json::json!({
            "status": 401,
            "body": {},
            "error": "XRequestError: invalid_token: The access token provided is invalid",
        })
    );
    let no_token = env.post("measure", &[("action", "getmeas")]).await;
    assert_error(&no_token, 401, error_text::INVALID_TOKEN);
    let c = env.handle.counters();
    assert_eq!((c.measure, c.measure_rejected), (2, 2));
}

#[tokio::test]
async fn token_without_user_metrics_is_refused() {
    let env = start_default().await;
    let mut form = auth_params(REDIRECT);
    form.retain(|(k, _)| *k != "scope");
    form.push(("scope", "user.info".into()));
    form.push(("email", SEEDED_EMAIL.into()));
    form.push(("password", SEEDED_PASSWORD.into()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    let code = location_params(&resp)["code"].clone();
    let body = env.exchange(&code, REDIRECT).await["body"].clone();
    assert_eq!(body["scope"], "user.info");
    let answer = env.measure(body["access_token"].as_str().unwrap()).await;
    assert_error(&answer, 401, error_text::INSUFFICIENT_SCOPE);
}

#[tokio::test]
async fn wrong_action_is_invalid_params() {
    let env = start_default().await;
    let access = common::string(&env.tokens().await, "access_token");
    let request = env
        .request("measure")
        .bearer_auth(&access)
        .form(&[("action", "getsomething")]);
    let answer = envelope(request).await;
    assert_error(&answer, 503, error_text::INVALID_ACTION);
}
