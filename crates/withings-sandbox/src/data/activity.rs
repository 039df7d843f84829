//! `POST /v2/measure`: `getactivity` (a summary per day), `getworkouts` (a workout every other
//! day) and `getintradayactivity` (every 15 minutes of the day), tracked by the user's watch.

use serde_json::{Map, Value, json};

use super::query::{Call, Selection, only};
use super::seed::{self, DAY, between};
use crate::wire::Reject;

/// The user's watch: every activity record comes from it.
pub(crate) const WATCH: &str = "watch";
const WATCH_MODEL: &str = "ScanWatch";
const WATCH_MODEL_ID: i64 = 93;

/// The fields of a `getactivity` record, all returned when `data_fields` is absent.
const ACTIVITY_FIELDS: &[&str] = &[
    "steps",
    "distance",
    "elevation",
    "soft",
    "moderate",
    "intense",
    "active",
    "calories",
    "totalcalories",
    "hr_average",
    "hr_min",
    "hr_max",
    "hr_zone_0",
    "hr_zone_1",
    "hr_zone_2",
    "hr_zone_3",
];

/// The `data` fields of a workout.
const WORKOUT_FIELDS: &[&str] = &[
    "calories",
    "intensity",
    "manual_distance",
    "manual_calories",
    "hr_average",
    "hr_min",
    "hr_max",
    "hr_zone_0",
    "hr_zone_1",
    "hr_zone_2",
    "hr_zone_3",
    "pause_duration",
    "algo_pause_duration",
    "spo2_average",
    "steps",
    "distance",
    "elevation",
    "pool_laps",
    "strokes",
    "pool_length",
];

/// The fields of an intraday point.
const INTRADAY_FIELDS: &[&str] = &[
    "steps",
    "elevation",
    "calories",
    "distance",
    "stroke",
    "pool_lap",
    "duration",
    "heart_rate",
    "spo2_auto",
];
/// Those an intraday point carries when `data_fields` is absent.
const INTRADAY_DEFAULT: &[&str] = &[
    "steps",
    "elevation",
    "calories",
    "distance",
    "duration",
    "heart_rate",
];

/// Seconds between two intraday points.
const INTRADAY_STEP: i64 = 15 * 60;
/// The longest span `getintradayactivity` answers; a longer one is cut to its first day.
const INTRADAY_SPAN: i64 = DAY;

/// A record of a day: its day, when it was last modified, its JSON.
struct Record {
    day: i64,
    modified: i64,
    json: Value,
}

fn selected(records: Vec<Record>, selection: Selection) -> Vec<Record> {
    records
        .into_iter()
        .filter(|r| match selection {
            Selection::Days(d) => (d.first..=d.last).contains(&r.day),
            Selection::UpdatedSince(since) => r.modified >= since,
        })
        .collect()
}

fn activity_values(userid: u64, day: i64) -> Map<String, Value> {
    let steps = between(userid, day, 30, 2_500, 16_000);
    let soft = between(userid, day, 31, 1_800, 9_000);
    let moderate = between(userid, day, 32, 300, 3_600);
    let intense = between(userid, day, 33, 0, 1_800);
    let calories = steps / 25 + intense / 20;
    let values = json!({
        "steps": steps,
        "distance": steps * 7 / 10,
        "elevation": between(userid, day, 34, 0, 25),
        "soft": soft,
        "moderate": moderate,
        "intense": intense,
        "active": moderate + intense,
        "calories": calories,
        "totalcalories": calories + between(userid, day, 35, 1_500, 1_900),
        "hr_average": between(userid, day, 36, 62, 80),
        "hr_min": between(userid, day, 37, 45, 58),
        "hr_max": between(userid, day, 38, 120, 175),
        "hr_zone_0": between(userid, day, 39, 20_000, 40_000),
        "hr_zone_1": between(userid, day, 40, 1_000, 6_000),
        "hr_zone_2": between(userid, day, 41, 0, 1_800),
        "hr_zone_3": between(userid, day, 42, 0, 600),
    });
    match values {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `getactivity`: one record per day, oldest first.
pub(crate) fn getactivity(call: &Call<'_>) -> Result<Value, Reject> {
    let selection = call.selection()?;
    let fields = call.fields(ACTIVITY_FIELDS, ACTIVITY_FIELDS);
    let userid = call.userid;
    let device = seed::device_id(userid, WATCH);
    let records = call
        .window()
        .days()
        .map(|day| {
            let modified = (day + 1) * DAY - 60;
            let mut record = only(&fields, activity_values(userid, day));
            record.insert("date".into(), json!(seed::ymd(day)));
            record.insert("timezone".into(), json!(seed::TIMEZONE));
            record.insert("deviceid".into(), json!(device));
            record.insert("hash_deviceid".into(), json!(device));
            record.insert("brand".into(), json!(1));
            record.insert("is_tracker".into(), json!(true));
            record.insert("modified".into(), json!(modified));
            record.insert("model".into(), json!(WATCH_MODEL));
            record.insert("modelid".into(), json!(WATCH_MODEL_ID));
            Record {
                day,
                modified,
                json: Value::Object(record),
            }
        })
        .collect();
    let page = call.page(selected(records, selection))?;
    let activities: Vec<Value> = page.items.into_iter().map(|r| r.json).collect();
    Ok(json!({ "activities": activities, "more": page.more, "offset": page.offset }))
}

/// `getworkouts`: a workout every other day, oldest first.
pub(crate) fn getworkouts(call: &Call<'_>) -> Result<Value, Reject> {
    let selection = call.selection()?;
    let fields = call.fields(WORKOUT_FIELDS, WORKOUT_FIELDS);
    let userid = call.userid;
    let device = seed::device_id(userid, WATCH);
    let records = call
        .window()
        .days()
        .filter(|day| day % 2 == 1)
        .map(|day| {
            // 1 walk, 2 run, 6 bicycling, 7 swimming.
            let category = [1, 2, 6, 7][between(userid, day, 50, 0, 3) as usize];
            let start = day * DAY + 17 * 3600 + between(userid, day, 51, 0, 3_600);
            let duration = between(userid, day, 52, 1_200, 4_800);
            let steps = if category == 7 { 0 } else { duration * 2 };
            let data = json!({
                "calories": duration / 9,
                "intensity": 0,
                "manual_distance": 0,
                "manual_calories": 0,
                "hr_average": between(userid, day, 53, 110, 150),
                "hr_min": between(userid, day, 54, 70, 100),
                "hr_max": between(userid, day, 55, 155, 185),
                "hr_zone_0": duration / 5,
                "hr_zone_1": duration / 2,
                "hr_zone_2": duration / 4,
                "hr_zone_3": duration / 20,
                "pause_duration": 0,
                "algo_pause_duration": 0,
                "spo2_average": null,
                "steps": steps,
                "distance": if category == 7 { duration / 2 } else { steps * 8 / 10 },
                "elevation": between(userid, day, 56, 0, 12),
                "pool_laps": if category == 7 { duration / 60 } else { 0 },
                "strokes": if category == 7 { duration / 2 } else { 0 },
                "pool_length": if category == 7 { 25 } else { 0 },
            });
            let data = match data {
                Value::Object(map) => only(&fields, map),
                _ => Map::new(),
            };
            let modified = start + duration + 300;
            Record {
                day,
                modified,
                json: json!({
                    "id": (userid << 24) | day as u64,
                    "category": category,
                    "timezone": seed::TIMEZONE,
                    "model": WATCH_MODEL_ID,
                    "attrib": 7,
                    "startdate": start,
                    "enddate": start + duration,
                    "date": seed::ymd(day),
                    "modified": modified,
                    "deviceid": device,
                    "data": data,
                }),
            }
        })
        .collect();
    let page = call.page(selected(records, selection))?;
    let series: Vec<Value> = page.items.into_iter().map(|r| r.json).collect();
    Ok(json!({ "series": series, "more": page.more, "offset": page.offset }))
}

/// `getintradayactivity`: a point every 15 minutes between `startdate` and `enddate` (at most
/// the first 24 h), or of the last day when neither is given.
pub(crate) fn getintradayactivity(call: &Call<'_>) -> Result<Value, Reject> {
    let window = call.window();
    let (start, end) = match (call.int("startdate")?, call.int("enddate")?) {
        (Some(s), Some(e)) => (s, e.min(s.saturating_add(INTRADAY_SPAN))),
        (Some(s), None) => (s, s.saturating_add(INTRADAY_SPAN)),
        (None, Some(e)) => (e.saturating_sub(INTRADAY_SPAN), e),
        (None, None) => (window.last * DAY, (window.last + 1) * DAY),
    };
    let fields = call.fields(INTRADAY_FIELDS, INTRADAY_DEFAULT);
    let userid = call.userid;
    let device = seed::device_id(userid, WATCH);
    // Clamped to the window before any arithmetic, so that no input can overflow it.
    let from = start.max(window.first * DAY);
    let first = from - from.rem_euclid(INTRADAY_STEP);
    let last = ((window.last + 1) * DAY).min(end);
    let mut series = Map::new();
    let mut t = first;
    while t < last {
        if t >= start {
            let day = t.div_euclid(DAY);
            let slot = t.rem_euclid(DAY) / INTRADAY_STEP;
            let what = 1_000 + slot as u64;
            let awake = (7 * 4..23 * 4).contains(&slot);
            let steps = if awake {
                between(userid, day, what, 0, 900)
            } else {
                0
            };
            let (hr_low, hr_high) = if awake { (60, 110) } else { (48, 62) };
            let values = json!({
                "steps": steps,
                "elevation": if awake { between(userid, day, what + 200, 0, 2) } else { 0 },
                "calories": steps / 25,
                "distance": steps * 7 / 10,
                "stroke": 0,
                "pool_lap": 0,
                "duration": if steps > 0 { INTRADAY_STEP } else { 0 },
                "heart_rate": between(userid, day, what + 400, hr_low, hr_high),
                "spo2_auto": between(userid, day, what + 600, 95, 99),
            });
            let mut point = match values {
                Value::Object(map) => only(&fields, map),
                _ => Map::new(),
            };
            point.insert("deviceid".into(), json!(device));
            point.insert("model".into(), json!(WATCH_MODEL));
            point.insert("model_id".into(), json!(WATCH_MODEL_ID));
            series.insert(t.to_string(), Value::Object(point));
        }
        t += INTRADAY_STEP;
    }
    Ok(json!({ "series": series }))
}
