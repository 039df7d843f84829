//! `POST /v2/heart`: `list` (an ECG recording every other day, with its heart rate and
//! atrial fibrillation result) and `get` (the signal of one recording: 30 s at 300 Hz, in µV),
//! recorded by the user's watch.

use serde_json::{Value, json};

use super::activity::WATCH;
use super::query::Call;
use super::seed::{self, DAY, between};
use crate::wire::Reject;

const WATCH_MODEL_ID: i64 = 93;
/// Samples per second of a recording.
const SAMPLING_FREQUENCY: i64 = 300;
/// Length of a recording in seconds.
const RECORDING_SECS: i64 = 30;

/// A recording: its signal id and its day.
struct Recording {
    signalid: u64,
    day: i64,
    timestamp: i64,
}

fn recordings(call: &Call<'_>) -> Vec<Recording> {
    let userid = call.userid;
    let first = call.window().first;
    call.window()
        .days()
        .filter(|day| day % 2 == 0)
        .map(|day| Recording {
            signalid: (userid << 24) | (day - first) as u64,
            day,
            timestamp: day * DAY + 12 * 3600 + between(userid, day, 80, 0, 7_200),
        })
        .collect()
}

/// `list`: recordings between `startdate` and `enddate` (each optional), newest first.
pub(crate) fn list(call: &Call<'_>) -> Result<Value, Reject> {
    let (start, end) = (call.int("startdate")?, call.int("enddate")?);
    let userid = call.userid;
    let device = seed::device_id(userid, WATCH);
    let mut found: Vec<Recording> = recordings(call)
        .into_iter()
        .filter(|r| start.is_none_or(|s| r.timestamp >= s) && end.is_none_or(|e| r.timestamp <= e))
        .collect();
    found.reverse();
    let page = call.page(found)?;
    let series: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "deviceid": device,
                "model": WATCH_MODEL_ID,
                "ecg": {
                    "signalid": r.signalid,
                    // 0 negative, 1 positive, 2 inconclusive; one in ten is inconclusive.
                    "afib": if between(userid, r.day, 81, 0, 9) == 0 { 2 } else { 0 },
                },
                "heart_rate": between(userid, r.day, 82, 58, 84),
                "timestamp": r.timestamp,
                "modified": r.timestamp + 60,
                "timezone": seed::TIMEZONE,
            })
        })
        .collect();
    Ok(json!({ "series": series, "more": page.more, "offset": page.offset }))
}

/// `get`: the signal of one of the user's recordings.
pub(crate) fn get(call: &Call<'_>) -> Result<Value, Reject> {
    let signalid = call
        .int("signalid")?
        .ok_or_else(|| Reject::missing("signalid"))?;
    let Some(recording) = recordings(call)
        .into_iter()
        .find(|r| i64::try_from(r.signalid).is_ok_and(|id| id == signalid))
    else {
        return Err(Reject::invalid_param("signalid"));
    };
    let rate = between(call.userid, recording.day, 82, 58, 84);
    // A beat every 60/rate s: a sharp R peak on a flat line, plus a little noise.
    let period = SAMPLING_FREQUENCY * 60 / rate;
    let signal: Vec<i64> = (0..SAMPLING_FREQUENCY * RECORDING_SECS)
        .map(|i| {
            let phase = i % period;
            let noise = (seed::mix(call.userid, recording.day, 10_000 + i as u64) % 21) as i64 - 10;
            let wave = match phase {
                0..=2 => 900 - 300 * phase,
                3..=5 => -150,
                _ => 0,
            };
            wave + noise
        })
        .collect();
    Ok(json!({
        "signal": signal,
        "sampling_frequency": SAMPLING_FREQUENCY,
        "wearposition": 1,
    }))
}
