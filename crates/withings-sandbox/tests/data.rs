//! The data families besides `getmeas`: `/v2/measure`, `/v2/sleep`, `/v2/heart`, `/v2/user`.
//! For each: a happy path, paging, a date filter that finds nothing, a missing scope, an
//! expired token, an unknown action; and an unknown path.

mod common;

use std::time::Duration;

use common::{Env, assert_error, start, start_default, ymd};
use serde_json::{Value, json};
use withings_sandbox::{DEFAULT_CLIENT_ID, SEEDED_USERID, SandboxConfig, error_text};

/// A service, a form that finds the whole month, the scope it needs and where its records
/// are.
struct Family {
    path: &'static str,
    action: &'static str,
    scope: &'static str,
    list: &'static str,
}

const ACTIVITY: Family = Family {
    path: "v2/measure",
    action: "getactivity",
    scope: "user.activity",
    list: "activities",
};
const WORKOUTS: Family = Family {
    path: "v2/measure",
    action: "getworkouts",
    scope: "user.activity",
    list: "series",
};
const INTRADAY: Family = Family {
    path: "v2/measure",
    action: "getintradayactivity",
    scope: "user.activity",
    list: "series",
};
const SLEEP: Family = Family {
    path: "v2/sleep",
    action: "get",
    scope: "user.activity",
    list: "series",
};
const SLEEP_SUMMARY: Family = Family {
    path: "v2/sleep",
    action: "getsummary",
    scope: "user.activity",
    list: "series",
};
const HEART: Family = Family {
    path: "v2/heart",
    action: "list",
    scope: "user.metrics",
    list: "series",
};
const DEVICES: Family = Family {
    path: "v2/user",
    action: "getdevice",
    scope: "user.info",
    list: "devices",
};

const MEASURES: Family = Family {
    path: "measure",
    action: "getmeas",
    scope: "user.metrics",
    list: "measuregrps",
};
/// `list` needs a valid token of any scope; `subscribe` asks the scope of its `appli`.
const NOTIFICATIONS: Family = Family {
    path: "notify",
    action: "list",
    scope: "user.info",
    list: "profiles",
};

/// Every family with dated records; notifications have their own tests.
const ALL: [&Family; 8] = [
    &MEASURES,
    &ACTIVITY,
    &WORKOUTS,
    &INTRADAY,
    &SLEEP,
    &SLEEP_SUMMARY,
    &HEART,
    &DEVICES,
];

/// The parameters that select the whole month (or, for the services limited to a day, a
/// day in it).
fn whole_month(family: &Family) -> Vec<(&'static str, String)> {
    let day_before_yesterday = (common::now() - 2 * 86_400).to_string();
    let yesterday = (common::now() - 86_400).to_string();
    match (family.path, family.action) {
        ("v2/measure", "getintradayactivity") | ("v2/sleep", "get") => {
            vec![("startdate", day_before_yesterday), ("enddate", yesterday)]
        }
        ("v2/heart", _) | ("v2/user", _) | ("measure", _) | ("notify", _) => vec![],
        _ => vec![("startdateymd", ymd(-40)), ("enddateymd", ymd(1))],
    }
}

/// The same parameters for a week of 2019.
fn in_2019(family: &Family) -> Vec<(&'static str, String)> {
    match (family.path, family.action) {
        ("v2/measure", "getintradayactivity")
        | ("v2/sleep", "get")
        | ("v2/heart", _)
        | ("measure", _) => vec![
            ("startdate", "1552089600".into()),
            ("enddate", "1552176000".into()),
        ],
        _ => vec![
            ("startdateymd", "2019-03-09".into()),
            ("enddateymd", "2019-03-16".into()),
        ],
    }
}

async fn call(env: &Env, token: &str, family: &Family, extra: &[(&str, String)]) -> Value {
    let mut form: Vec<(&str, &str)> = vec![("action", family.action)];
    form.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    env.call(family.path, token, &form).await
}

/// The records of an answer: an array, or the points of an intraday series.
fn records(family: &Family, answer: &Value) -> usize {
    assert_eq!(
        answer["status"], 0,
        "{} {}: {answer}",
        family.path, family.action
    );
    match &answer["body"][family.list] {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => panic!(
            "{} {}: no {} in {other}",
            family.path, family.action, family.list
        ),
    }
}

#[tokio::test]
async fn every_family_answers_a_month_of_data() {
    let env = start(SandboxConfig::default().page_size(100)).await;
    let token = env.login_all();
    for family in ALL {
        let answer = call(&env, &token, family, &whole_month(family)).await;
        let n = records(family, &answer);
        let expected = match family.action {
            "getmeas" => 47,
            "getactivity" | "getsummary" => 30,
            "getworkouts" | "list" => 15,
            "getdevice" => 4,
            "getintradayactivity" => 96, // every 15 minutes of a day
            _ => 1,
        };
        if family.action == "get" {
            assert!(n >= 10, "a night has many stages: {n}");
        } else {
            assert_eq!(n, expected, "{} {}", family.path, family.action);
        }
    }
    assert_eq!(env.handle.counters().data_calls, ALL.len() as u64);
}

#[tokio::test]
async fn records_have_withings_fields() {
    let env = start_default().await;
    let token = env.login_all();
    let activity = call(&env, &token, &ACTIVITY, &whole_month(&ACTIVITY)).await;
    let day = &activity["body"]["activities"][0];
    for key in [
        "date",
        "timezone",
        "deviceid",
        "brand",
        "is_tracker",
        "steps",
        "distance",
        "calories",
        "totalcalories",
        "hr_average",
        "modified",
    ] {
        assert!(day.get(key).is_some(), "{key} missing in {day}");
    }
    assert_eq!(day["date"], ymd(-30), "the month ends yesterday");

    let summary = call(&env, &token, &SLEEP_SUMMARY, &whole_month(&SLEEP_SUMMARY)).await;
    let night = &summary["body"]["series"][0];
    let data = &night["data"];
    let in_bed = data["total_timeinbed"].as_i64().unwrap();
    assert!(in_bed > 6 * 3600 && in_bed < 10 * 3600, "{night}");
    assert_eq!(
        data["total_sleep_time"].as_i64().unwrap(),
        [
            "lightsleepduration",
            "deepsleepduration",
            "remsleepduration"
        ]
        .iter()
        .map(|k| data[k].as_i64().unwrap())
        .sum::<i64>()
    );

    // A recording listed by `list` has a signal at `get`: 30 s at 300 Hz.
    let list = call(&env, &token, &HEART, &[]).await;
    let signalid = list["body"]["series"][0]["ecg"]["signalid"].to_string();
    let signal = env
        .call(
            "v2/heart",
            &token,
            &[("action", "get"), ("signalid", &signalid)],
        )
        .await;
    assert_eq!(signal["body"]["signal"].as_array().unwrap().len(), 9_000);
    assert_eq!(signal["body"]["sampling_frequency"], 300);
    let nobody = env
        .call("v2/heart", &token, &[("action", "get"), ("signalid", "12")])
        .await;
    assert_error(&nobody, 503, "Invalid Params: invalid signalid");

    // Every record's device is one of the user's devices.
    let devices = call(&env, &token, &DEVICES, &[]).await;
    let ids: Vec<&Value> = devices["body"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["deviceid"])
        .collect();
    assert!(ids.contains(&&day["deviceid"]));
    assert!(ids.contains(&&night["hash_deviceid"]));
}

#[tokio::test]
async fn a_fixed_last_day_gives_the_same_answers_on_every_run() {
    // 2024-03-31: the month from 2024-03-02.
    let day = std::time::UNIX_EPOCH + Duration::from_secs(1_711_843_200);
    let config = || SandboxConfig::default().data_through(day).page_size(100);
    let (a, b) = (start(config()).await, start(config()).await);
    let form = [
        ("startdateymd", "2024-01-01".to_owned()),
        ("enddateymd", "2024-12-31".to_owned()),
    ];
    let (ta, tb) = (a.login_all(), b.login_all());
    let days = call(&a, &ta, &ACTIVITY, &form).await;
    let activities = days["body"]["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 30);
    assert_eq!(activities[0]["date"], "2024-03-02");
    assert_eq!(activities[29]["date"], "2024-03-31");
    assert_eq!(days, call(&b, &tb, &ACTIVITY, &form).await);
    let nights = call(&a, &ta, &SLEEP_SUMMARY, &form).await;
    assert_eq!(nights, call(&b, &tb, &SLEEP_SUMMARY, &form).await);
}

#[tokio::test]
async fn data_fields_choose_the_fields() {
    let env = start_default().await;
    let token = env.login_all();
    let mut form = whole_month(&ACTIVITY);
    form.push(("data_fields", "steps,hr_max,nonsense".into()));
    let answer = call(&env, &token, &ACTIVITY, &form).await;
    let day = &answer["body"]["activities"][0];
    assert!(
        day.get("steps").is_some() && day.get("hr_max").is_some(),
        "{day}"
    );
    assert!(
        day.get("calories").is_none() && day.get("nonsense").is_none(),
        "{day}"
    );

    let mut form = whole_month(&SLEEP);
    form.push(("data_fields", "hr,rr".into()));
    let answer = call(&env, &token, &SLEEP, &form).await;
    let stage = &answer["body"]["series"][0];
    assert!(
        stage["hr"].as_object().is_some_and(|m| !m.is_empty()),
        "{stage}"
    );
    assert!(stage.get("snoring").is_none(), "{stage}");
}

#[tokio::test]
async fn paged_families_page_with_offset_and_more() {
    let env = start(SandboxConfig::default().page_size(7)).await;
    let token = env.login_all();
    for family in [&ACTIVITY, &WORKOUTS, &SLEEP_SUMMARY, &HEART] {
        let mut seen = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut form = whole_month(family);
            form.push(("offset", offset.to_string()));
            let answer = call(&env, &token, family, &form).await;
            let page = answer["body"][family.list].as_array().unwrap().clone();
            assert!(page.len() <= 7);
            seen.extend(page);
            if answer["body"]["more"] == json!(false) {
                assert_eq!(answer["body"]["offset"], 0);
                break;
            }
            assert_eq!(answer["body"]["more"], json!(true));
            offset = answer["body"]["offset"].as_u64().unwrap();
            assert_eq!(offset as usize, seen.len());
        }
        let expected = if family.list == "activities" || family.action == "getsummary" {
            30
        } else {
            15
        };
        assert_eq!(seen.len(), expected, "{} {}", family.path, family.action);
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no record on two pages");
    }
}

#[tokio::test]
async fn a_date_filter_in_2019_finds_nothing() {
    let env = start_default().await;
    let token = env.login_all();
    for family in ALL.into_iter().filter(|f| f.action != "getdevice") {
        let answer = call(&env, &token, family, &in_2019(family)).await;
        assert_eq!(
            records(family, &answer),
            0,
            "{} {}",
            family.path,
            family.action
        );
    }
}

#[tokio::test]
async fn lastupdate_selects_what_changed_since() {
    let env = start_default().await;
    let token = env.login_all();
    let three_days_ago = (common::now() - 3 * 86_400).to_string();
    for family in [&ACTIVITY, &SLEEP_SUMMARY] {
        let answer = call(
            &env,
            &token,
            family,
            &[("lastupdate", three_days_ago.clone())],
        )
        .await;
        let n = records(family, &answer);
        assert!(
            (2..=3).contains(&n),
            "{} {}: {n}",
            family.path,
            family.action
        );
    }
    let missing = call(&env, &token, &ACTIVITY, &[]).await;
    assert_error(&missing, 503, "Invalid Params: missing startdateymd");
    let bad = call(
        &env,
        &token,
        &ACTIVITY,
        &[
            ("startdateymd", "2019-02-30".into()),
            ("enddateymd", ymd(0)),
        ],
    )
    .await;
    assert_error(&bad, 503, "Invalid Params: invalid startdateymd");
}

#[tokio::test]
async fn each_family_needs_its_scope() {
    let env = start_default().await;
    for family in ALL {
        let others: Vec<&str> = withings_sandbox::KNOWN_SCOPES
            .into_iter()
            .filter(|s| *s != family.scope)
            .collect();
        let without = env.login(&others);
        let answer = call(&env, &without, family, &whole_month(family)).await;
        assert_error(&answer, 401, error_text::INSUFFICIENT_SCOPE);
        let with = env.login(&[family.scope]);
        let answer = call(&env, &with, family, &whole_month(family)).await;
        assert_eq!(
            answer["status"], 0,
            "{} {}: {answer}",
            family.path, family.action
        );
    }
}

#[tokio::test]
async fn an_expired_token_gets_the_401_envelope() {
    let env = start_default().await;
    let expired = env
        .handle
        .issue_tokens(
            SEEDED_USERID,
            DEFAULT_CLIENT_ID,
            &withings_sandbox::KNOWN_SCOPES,
            Duration::ZERO,
        )
        .unwrap()
        .access_token;
    let valid = env.login_all();
    env.handle.advance_clock(Duration::from_secs(3601));
    for family in ALL.into_iter().chain([&NOTIFICATIONS]) {
        for token in [&expired, &valid] {
            let answer = call(&env, token, family, &whole_month(family)).await;
            assert_error(&answer, 401, error_text::INVALID_TOKEN);
        }
    }
    let c = env.handle.counters();
    assert_eq!((c.data_calls, c.data_rejected), (18, 18));
    assert_eq!((c.measure, c.measure_rejected), (2, 2));
}

#[tokio::test]
async fn an_unknown_action_is_invalid_params_and_an_unknown_path_not_implemented() {
    let env = start_default().await;
    let token = env.login_all();
    for path in [
        "v2/measure",
        "v2/sleep",
        "v2/heart",
        "v2/user",
        "notify",
        "measure",
    ] {
        let answer = env.call(path, &token, &[("action", "getnothing")]).await;
        assert_error(&answer, 503, error_text::INVALID_ACTION);
        let answer = env.call(path, &token, &[]).await;
        assert_error(&answer, 503, "Invalid Params: missing action");
    }
    for path in ["v2/nothing", "v2/stetho", "", "v2/measure/extra"] {
        let answer = env.call(path, &token, &[("action", "list")]).await;
        assert_error(&answer, 2554, error_text::NOT_IMPLEMENTED);
    }
}
