//! `/measure` `getmeas`: data behind a bearer token, the 401 envelope, scopes.

mod common;

use common::{REDIRECT, assert_error, auth_params, envelope, location_params, start_default};
use serde_json::{Value, json};
use withings_sandbox::{
    MeasureError, NewMeasure, SEEDED_EMAIL, SEEDED_PASSWORD, SEEDED_USERID, error_text,
};

#[tokio::test]
async fn getmeas_returns_measure_groups() {
    let env = start_default().await;
    let access = common::string(&env.tokens().await, "access_token");
    let answer = env.measure(&access).await;
    assert_eq!(answer["status"], 0, "{answer}");
    let body = &answer["body"];
    assert_eq!(body["timezone"], "UTC");
    assert!(body["updatetime"].as_u64().unwrap() >= common::now());
    let groups = body["measuregrps"].as_array().unwrap();
    assert!(!groups.is_empty());
    let first = &groups[0];
    for key in [
        "grpid", "attrib", "date", "created", "category", "deviceid", "measures",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    // Newest first, every measure as value and power of ten.
    let dates: Vec<u64> = groups.iter().map(|g| g["date"].as_u64().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{dates:?}");
    assert!(dates[0] < common::now());
    let weight = groups
        .iter()
        .flat_map(|g| g["measures"].as_array().unwrap())
        .find(|m| m["type"] == 1)
        .expect("a weight");
    assert_eq!(weight["unit"], -3);
    assert!((40_000..150_000).contains(&weight["value"].as_i64().unwrap()));
    assert_eq!(env.handle.counters().measure, 1);
}

/// Every group of every page of a `getmeas` with `form`.
async fn all_pages(env: &common::Env, access: &str, form: &[(&str, &str)]) -> Vec<Value> {
    let mut groups = Vec::new();
    let mut offset = "0".to_owned();
    loop {
        let mut page_form = form.to_vec();
        page_form.push(("action", "getmeas"));
        page_form.push(("offset", &offset));
        let answer = env.call("measure", access, &page_form).await;
        assert_eq!(answer["status"], 0, "{answer}");
        groups.extend(answer["body"]["measuregrps"].as_array().unwrap().clone());
        if answer["body"]["more"] == 0 {
            assert_eq!(answer["body"]["offset"], 0);
            return groups;
        }
        offset = answer["body"]["offset"].to_string();
    }
}

#[tokio::test]
async fn getmeas_pages_with_offset_and_more() {
    let env = start_default().await;
    let access = env.login(&["user.metrics"]);
    let first = env.call("measure", &access, &[("action", "getmeas")]).await;
    let body = &first["body"];
    assert_eq!(
        body["more"], 1,
        "a month of data is more than a page: {body}"
    );
    assert_eq!(body["measuregrps"].as_array().unwrap().len(), 20);
    assert_eq!(body["offset"], 20);

    let groups = all_pages(&env, &access, &[]).await;
    let mut ids: Vec<u64> = groups
        .iter()
        .map(|g| g["grpid"].as_u64().unwrap())
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no group on two pages");
    // 30 mornings on the scale, 15 evenings of blood pressure, a height and a weight goal.
    assert_eq!(total, 47);
}

#[tokio::test]
async fn getmeas_honours_type_category_and_dates() {
    let env = start_default().await;
    let access = env.login(&["user.metrics"]);
    // A day in 2019: nothing, whatever the type and category.
    let in_2019 = env
        .call(
            "measure",
            &access,
            &[
                ("action", "getmeas"),
                ("meastype", "4"),
                ("category", "2"),
                ("startdate", "1552089600"),
                ("enddate", "1552176000"),
            ],
        )
        .await;
    assert_eq!(in_2019["status"], 0, "{in_2019}");
    assert_eq!(in_2019["body"]["measuregrps"], json!([]));

    let weights = all_pages(&env, &access, &[("meastype", "1"), ("category", "1")]).await;
    assert_eq!(weights.len(), 30);
    for g in &weights {
        assert_eq!(g["category"], 1, "{g}");
        let types: Vec<&Value> = g["measures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["type"])
            .collect();
        assert_eq!(types, [&json!(1)], "only the asked type: {g}");
    }

    let goals = all_pages(&env, &access, &[("category", "2")]).await;
    assert_eq!(goals.len(), 1);
    assert_eq!(goals[0]["category"], 2);

    let pressure = all_pages(&env, &access, &[("meastypes", "9,10")]).await;
    assert_eq!(pressure.len(), 15);
    assert!(
        pressure
            .iter()
            .all(|g| g["measures"].as_array().unwrap().len() == 2)
    );

    // The last week only.
    let week_ago = (common::now() - 7 * 86_400).to_string();
    let recent = all_pages(
        &env,
        &access,
        &[("meastype", "1"), ("startdate", &week_ago)],
    )
    .await;
    assert!((6..=7).contains(&recent.len()), "{}", recent.len());
    assert!(
        recent
            .iter()
            .all(|g| g["date"].as_u64().unwrap() >= common::now() - 7 * 86_400)
    );

    let bad = env
        .call(
            "measure",
            &access,
            &[("action", "getmeas"), ("startdate", "yesterday")],
        )
        .await;
    assert_error(&bad, 503, "Invalid Params: invalid startdate");
}

#[tokio::test]
async fn getmeas_answers_the_same_values_for_the_same_user_in_every_sandbox() {
    let (a, b) = (start_default().await, start_default().await);
    let (ta, tb) = (a.login(&["user.metrics"]), b.login(&["user.metrics"]));
    let form = [("action", "getmeas"), ("meastype", "1")];
    let (ga, gb) = (
        a.call("measure", &ta, &form).await,
        b.call("measure", &tb, &form).await,
    );
    assert_eq!(ga["body"]["measuregrps"], gb["body"]["measuregrps"]);
    // Another user weighs otherwise.
    let other = withings_sandbox::SandboxConfig::default().seed_users(1);
    let c = common::start(other).await;
    let tc = c
        .handle
        .issue_tokens(
            1_000_001,
            withings_sandbox::DEFAULT_CLIENT_ID,
            &["user.metrics"],
            std::time::Duration::from_secs(60),
        )
        .unwrap()
        .access_token;
    let gc = c.call("measure", &tc, &form).await;
    assert_ne!(ga["body"]["measuregrps"], gc["body"]["measuregrps"]);
}

#[tokio::test]
async fn an_added_measurement_is_answered_and_found_by_lastupdate() {
    let env = start_default().await;
    let access = env.login(&["user.metrics"]);
    let since = common::now().to_string();
    let before = env
        .call(
            "measure",
            &access,
            &[("action", "getmeas"), ("lastupdate", &since)],
        )
        .await;
    assert_eq!(
        before["body"]["measuregrps"],
        json!([]),
        "seeded data is all older"
    );
    let grpid = env
        .handle
        .add_measures(
            SEEDED_USERID,
            std::time::SystemTime::now(),
            &[NewMeasure::new(1, 70_100, -3)],
        )
        .unwrap();
    let after = env
        .call(
            "measure",
            &access,
            &[("action", "getmeas"), ("lastupdate", &since)],
        )
        .await;
    let groups = after["body"]["measuregrps"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{after}");
    assert_eq!(groups[0]["grpid"], grpid);
    assert_eq!(
        groups[0]["measures"],
        json!([{ "value": 70100, "type": 1, "unit": -3 }])
    );
    assert_eq!(
        env.handle.add_measures(
            42,
            std::time::SystemTime::now(),
            &[NewMeasure::new(1, 1, 0)]
        ),
        Err(MeasureError::UnknownUser)
    );
    assert_eq!(
        env.handle
            .add_measures(SEEDED_USERID, std::time::SystemTime::now(), &[]),
        Err(MeasureError::NoMeasure)
    );
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
