//! `POST /v2/user` `getdevice`: the four devices every user has, each the source of one kind
//! of record (scale: weight; blood pressure monitor: blood pressure; watch: activity, workouts
//! and ECG; sleep analyzer: sleep).

use serde_json::{Value, json};

use super::activity::WATCH;
use super::measure::{BPM, SCALE};
use super::query::Call;
use super::seed::{self, DAY, between};
use super::sleep::MAT;
use crate::wire::Reject;

/// `(key, type, model, model_id)` of each device.
const DEVICES: [(&str, &str, &str, i64); 4] = [
    (SCALE, "Scale", "Body+", 5),
    (BPM, "Blood Pressure Monitor", "BPM Connect", 45),
    (WATCH, "Activity Tracker", "ScanWatch", 93),
    (MAT, "Sleep Monitor", "Aura Sensor V2", 63),
];

/// `getdevice`.
pub(crate) fn getdevice(call: &Call<'_>) -> Result<Value, Reject> {
    let userid = call.userid;
    let window = call.window();
    let devices: Vec<Value> = DEVICES
        .iter()
        .enumerate()
        .map(|(i, (key, kind, model, model_id))| {
            let id = seed::device_id(userid, key);
            let mac: Vec<String> = id.as_bytes()[..12]
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let battery = ["high", "medium", "low"][between(userid, i as i64, 90, 0, 2) as usize];
            let fw = format!(
                "{}.{}",
                2000 + between(userid, i as i64, 91, 0, 99),
                between(userid, i as i64, 92, 0, 9)
            );
            json!({
                "type": kind,
                "model": model,
                "model_id": model_id,
                "battery": battery,
                "deviceid": id,
                "hash_deviceid": id,
                "mac_address": mac.join(":"),
                "fw": fw,
                "timezone": seed::TIMEZONE,
                "network_status": if *key == WATCH { "bluetooth" } else { "wifi" },
                "last_used_network": if *key == WATCH { "bluetooth" } else { "wifi" },
                "first_session_date": (window.first - 365) * DAY,
                "last_session_date": window.last * DAY + 20 * 3600,
            })
        })
        .collect();
    Ok(json!({ "devices": devices }))
}
