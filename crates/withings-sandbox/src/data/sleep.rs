//! `POST /v2/sleep`: `get` (the stages of each night) and `getsummary` (a summary per night),
//! tracked by the user's sleep analyzer. The night ending on day D starts on D-1 between
//! 22:30 and 23:30 and ends on D between 06:30 and 07:30.

use serde_json::{Map, Value, json};

use super::query::{Call, Selection, only};
use super::seed::{self, DAY, between};
use crate::wire::Reject;

/// The user's sleep analyzer.
pub(crate) const MAT: &str = "sleep-analyzer";
const MAT_MODEL: &str = "Aura Sensor V2";
const MAT_MODEL_ID: i64 = 63;
/// `model` of the answer to `get`: 32, a sleep monitor.
const SLEEP_MONITOR: i64 = 32;

/// The longest span `get` answers; a longer one is cut to its first day.
const GET_SPAN: i64 = DAY;

/// The per-minute series `get` adds to a stage when `data_fields` names them.
const SERIES_FIELDS: &[&str] = &["hr", "rr", "snoring", "sdnn_1", "rmssd", "mvt_score"];

/// The `data` fields of a summary.
const SUMMARY_FIELDS: &[&str] = &[
    "total_timeinbed",
    "total_sleep_time",
    "asleepduration",
    "lightsleepduration",
    "remsleepduration",
    "deepsleepduration",
    "sleep_efficiency",
    "sleep_latency",
    "wakeup_latency",
    "wakeupduration",
    "wakeupcount",
    "waso",
    "nb_rem_episodes",
    "out_of_bed_count",
    "hr_average",
    "hr_min",
    "hr_max",
    "rr_average",
    "rr_min",
    "rr_max",
    "breathing_disturbances_intensity",
    "snoring",
    "snoringepisodecount",
    "sleep_score",
];

/// One night: when it starts and ends, and its stages.
struct Night {
    /// The day it ends on (its `date`).
    day: i64,
    start: i64,
    end: i64,
    /// `(start, end, state)`: 0 awake, 1 light, 2 deep, 3 REM.
    stages: Vec<(i64, i64, i64)>,
}

fn night(userid: u64, day: i64) -> Night {
    let start = day * DAY - 90 * 60 + between(userid, day, 60, 0, 3_600);
    let end = day * DAY + 6 * 3600 + 30 * 60 + between(userid, day, 61, 0, 3_600);
    let mut stages = Vec::new();
    let mut t = start;
    // Falling asleep, then cycles of light, deep, light, REM, with a short wake now and then.
    let cycle = [0, 1, 2, 1, 3];
    let mut i = 0u64;
    while t < end {
        let state = cycle[(i % cycle.len() as u64) as usize];
        let length = match state {
            0 => between(userid, day, 100 + i, 5, 20),
            2 => between(userid, day, 100 + i, 20, 50),
            _ => between(userid, day, 100 + i, 15, 40),
        } * 60;
        let stop = (t + length).min(end);
        stages.push((t, stop, state));
        t = stop;
        i += 1;
    }
    Night {
        day,
        start,
        end,
        stages,
    }
}

fn nights(call: &Call<'_>) -> Vec<Night> {
    call.window()
        .days()
        .map(|day| night(call.userid, day))
        .collect()
}

/// `get`: the stages that overlap `startdate`..`enddate` (at most its first 24 h).
pub(crate) fn get(call: &Call<'_>) -> Result<Value, Reject> {
    let start = call
        .int("startdate")?
        .ok_or_else(|| Reject::missing("startdate"))?;
    let end = call
        .int("enddate")?
        .ok_or_else(|| Reject::missing("enddate"))?;
    let end = end.min(start.saturating_add(GET_SPAN));
    let fields = call.fields(SERIES_FIELDS, &[]);
    let userid = call.userid;
    let mut series = Vec::new();
    for night in nights(call) {
        for &(from, to, state) in &night.stages {
            if to <= start || from >= end {
                continue;
            }
            let mut stage = Map::new();
            stage.insert("startdate".into(), json!(from));
            stage.insert("enddate".into(), json!(to));
            stage.insert("state".into(), json!(state));
            stage.insert("model".into(), json!(MAT_MODEL));
            stage.insert("model_id".into(), json!(MAT_MODEL_ID));
            for field in &fields {
                let mut points = Map::new();
                let mut t = from - from.rem_euclid(60);
                while t < to {
                    let what = (t.rem_euclid(DAY) / 60) as u64;
                    let value = match *field {
                        "hr" => between(userid, night.day, 2_000 + what, 48, 66),
                        "rr" => between(userid, night.day, 4_000 + what, 11, 17),
                        "snoring" => between(userid, night.day, 6_000 + what, 0, 20),
                        "mvt_score" => between(userid, night.day, 7_000 + what, 0, 40),
                        _ => between(userid, night.day, 8_000 + what, 20, 90),
                    };
                    points.insert(t.to_string(), json!(value));
                    t += 60;
                }
                stage.insert((*field).to_owned(), Value::Object(points));
            }
            series.push(Value::Object(stage));
        }
    }
    Ok(json!({ "series": series, "model": SLEEP_MONITOR }))
}

fn summary_values(userid: u64, night: &Night) -> Map<String, Value> {
    let duration = |state: i64| -> i64 {
        night
            .stages
            .iter()
            .filter(|s| s.2 == state)
            .map(|s| s.1 - s.0)
            .sum()
    };
    let (awake, light, deep, rem) = (duration(0), duration(1), duration(2), duration(3));
    let in_bed = night.end - night.start;
    let asleep = light + deep + rem;
    let latency = night.stages.first().map_or(0, |s| s.1 - s.0);
    let day = night.day;
    let values = json!({
        "total_timeinbed": in_bed,
        "total_sleep_time": asleep,
        "asleepduration": asleep,
        "lightsleepduration": light,
        "remsleepduration": rem,
        "deepsleepduration": deep,
        "sleep_efficiency": (asleep as f64 / in_bed.max(1) as f64 * 100.0).round() / 100.0,
        "sleep_latency": latency,
        "wakeup_latency": 0,
        "wakeupduration": awake,
        "wakeupcount": night.stages.iter().filter(|s| s.2 == 0).count().saturating_sub(1),
        "waso": awake - latency,
        "nb_rem_episodes": night.stages.iter().filter(|s| s.2 == 3).count(),
        "out_of_bed_count": between(userid, day, 62, 0, 2),
        "hr_average": between(userid, day, 63, 52, 62),
        "hr_min": between(userid, day, 64, 44, 51),
        "hr_max": between(userid, day, 65, 70, 95),
        "rr_average": between(userid, day, 66, 13, 15),
        "rr_min": between(userid, day, 67, 9, 12),
        "rr_max": between(userid, day, 68, 16, 21),
        "breathing_disturbances_intensity": between(userid, day, 69, 0, 30),
        "snoring": between(userid, day, 70, 0, 1_800),
        "snoringepisodecount": between(userid, day, 71, 0, 8),
        "sleep_score": between(userid, day, 72, 55, 95),
    });
    match values {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `getsummary`: one summary per night, oldest first.
pub(crate) fn getsummary(call: &Call<'_>) -> Result<Value, Reject> {
    let selection = call.selection()?;
    let fields = call.fields(SUMMARY_FIELDS, SUMMARY_FIELDS);
    let userid = call.userid;
    let device = seed::device_id(userid, MAT);
    let summaries: Vec<Value> = nights(call)
        .into_iter()
        .filter(|n| match selection {
            Selection::Days(d) => (d.first..=d.last).contains(&n.day),
            Selection::UpdatedSince(since) => n.end + 600 >= since,
        })
        .map(|n| {
            json!({
                "id": (userid << 24) | n.day as u64,
                "timezone": seed::TIMEZONE,
                "model": SLEEP_MONITOR,
                "model_id": MAT_MODEL_ID,
                "startdate": n.start,
                "enddate": n.end,
                "date": seed::ymd(n.day),
                "created": n.end + 600,
                "modified": n.end + 600,
                "hash_deviceid": device,
                "completed": true,
                "data": only(&fields, summary_values(userid, &n)),
            })
        })
        .collect();
    let page = call.page(summaries)?;
    Ok(json!({ "series": page.items, "more": page.more, "offset": page.offset }))
}
