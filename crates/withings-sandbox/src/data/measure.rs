//! `POST /measure` `getmeas`: measure groups (weight and body composition every morning,
//! blood pressure every other evening, a height and a weight goal), plus those added through
//! [`SandboxHandle::add_measures`](crate::SandboxHandle::add_measures), filtered by
//! `meastype`/`meastypes`, `category`, `startdate`/`enddate` or `lastupdate`, newest first, in
//! pages.

use serde_json::{Value, json};

use super::query::Call;
use super::seed::{self, DAY, between};
use crate::state::Inner;
use crate::wire::Reject;

/// One measure of a group, as Withings sends it: `value × 10^unit`.
///
/// ```
/// use withings_sandbox::NewMeasure;
/// let weight = NewMeasure::new(1, 72_500, -3); // 72.5 kg
/// assert_eq!(weight.measure_type, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMeasure {
    /// Withings' measure type: 1 weight (kg), 4 height (m), 6 fat ratio (%), 9 diastolic and
    /// 10 systolic blood pressure (mmHg), 11 heart pulse (bpm), ...
    pub measure_type: i64,
    /// The value's digits.
    pub value: i64,
    /// The power of ten the value is multiplied by.
    pub unit: i64,
}

impl NewMeasure {
    /// A measure of `measure_type` worth `value × 10^unit`.
    pub fn new(measure_type: i64, value: i64, unit: i64) -> Self {
        Self {
            measure_type,
            value,
            unit,
        }
    }
}

/// A measure group, seeded or added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MeasureGroup {
    pub(crate) grpid: u64,
    pub(crate) attrib: i64,
    pub(crate) date: i64,
    pub(crate) modified: i64,
    /// 1 real measures, 2 user objectives.
    pub(crate) category: i64,
    pub(crate) device: Option<&'static str>,
    pub(crate) measures: Vec<NewMeasure>,
}

impl MeasureGroup {
    fn to_json(&self, userid: u64, types: Option<&[i64]>) -> Value {
        let device = self.device.map(|d| seed::device_id(userid, d));
        let measures: Vec<Value> = self
            .measures
            .iter()
            .filter(|m| types.is_none_or(|t| t.contains(&m.measure_type)))
            .map(|m| json!({ "value": m.value, "type": m.measure_type, "unit": m.unit }))
            .collect();
        json!({
            "grpid": self.grpid,
            "attrib": self.attrib,
            "date": self.date,
            "created": self.modified,
            "modified": self.modified,
            "category": self.category,
            "deviceid": device,
            "hash_deviceid": device,
            "measures": measures,
            "comment": null,
        })
    }
}

/// The device that measured the seeded groups of each kind.
pub(crate) const SCALE: &str = "scale";
pub(crate) const BPM: &str = "bpm";

/// The user's seeded groups, oldest first.
pub(crate) fn seeded(call: &Call<'_>) -> Vec<MeasureGroup> {
    let window = call.window();
    let userid = call.userid;
    // A baseline per user, then a small daily drift around it.
    let base_weight = between(userid, 0, 1, 58_000, 95_000);
    let base_fat = between(userid, 0, 2, 14_000, 32_000);
    let grpid = |day: i64, kind: u64| (userid << 24) | (((day - window.first) as u64) << 4) | kind;
    let mut groups = vec![
        MeasureGroup {
            grpid: grpid(window.first, 0),
            attrib: 2,
            date: window.first * DAY + 8 * 3600,
            modified: window.first * DAY + 8 * 3600 + 60,
            category: 1,
            device: None,
            measures: vec![NewMeasure::new(4, between(userid, 0, 3, 155, 195), -2)],
        },
        MeasureGroup {
            grpid: grpid(window.first, 1),
            attrib: 2,
            date: window.first * DAY + 8 * 3600 + 120,
            modified: window.first * DAY + 8 * 3600 + 180,
            category: 2,
            device: None,
            measures: vec![NewMeasure::new(1, base_weight - 3_000, -3)],
        },
    ];
    for day in window.days() {
        let at = day * DAY + 7 * 3600 + between(userid, day, 10, 0, 3_599);
        let weight = base_weight + between(userid, day, 11, -600, 600);
        let fat_ratio = base_fat + between(userid, day, 12, -400, 400);
        let fat_mass = weight * fat_ratio / 100_000;
        groups.push(MeasureGroup {
            grpid: grpid(day, 2),
            attrib: 0,
            date: at,
            modified: at + 60,
            category: 1,
            device: Some(SCALE),
            measures: vec![
                NewMeasure::new(1, weight, -3),
                NewMeasure::new(5, weight - fat_mass, -3),
                NewMeasure::new(6, fat_ratio, -3),
                NewMeasure::new(8, fat_mass, -3),
            ],
        });
        if day % 2 == 0 {
            let at = day * DAY + 20 * 3600 + between(userid, day, 20, 0, 3_599);
            groups.push(MeasureGroup {
                grpid: grpid(day, 3),
                attrib: 0,
                date: at,
                modified: at + 60,
                category: 1,
                device: Some(BPM),
                measures: vec![
                    NewMeasure::new(9, between(userid, day, 21, 68, 88), 0),
                    NewMeasure::new(10, between(userid, day, 22, 108, 135), 0),
                    NewMeasure::new(11, between(userid, day, 23, 55, 80), 0),
                ],
            });
        }
    }
    groups
}

/// `getmeas`.
pub(crate) fn getmeas(call: &Call<'_>) -> Result<Value, Reject> {
    let types: Option<Vec<i64>> = match call.int("meastype")? {
        Some(one) => Some(vec![one]),
        None => call.int_list("meastypes")?,
    };
    let category = call.int("category")?;
    if category.is_some_and(|c| c != 1 && c != 2) {
        return Err(Reject::invalid_param("category"));
    }
    let (start, end) = (call.int("startdate")?, call.int("enddate")?);
    let lastupdate = call.int("lastupdate")?;

    let mut groups = seeded(call);
    if let Some(added) = call.inner.added.get(&call.userid) {
        groups.extend(added.iter().cloned());
    }
    groups.retain(|g| {
        category.is_none_or(|c| g.category == c)
            && start.is_none_or(|s| g.date >= s)
            && end.is_none_or(|e| g.date <= e)
            && lastupdate.is_none_or(|u| g.modified >= u)
            && types
                .as_deref()
                .is_none_or(|t| g.measures.iter().any(|m| t.contains(&m.measure_type)))
    });
    // Newest first, as Withings answers.
    groups.sort_by_key(|g| std::cmp::Reverse((g.date, g.grpid)));
    let page = call.page(groups)?;
    let measuregrps: Vec<Value> = page
        .items
        .iter()
        .map(|g| g.to_json(call.userid, types.as_deref()))
        .collect();
    Ok(json!({
        "updatetime": call.now_secs(),
        "timezone": seed::TIMEZONE,
        "measuregrps": measuregrps,
        "more": i32::from(page.more),
        "offset": page.offset,
    }))
}

/// The `appli` of the notification a new group triggers: 4 for blood pressure and pulse, 1
/// for the rest (weight and body composition).
pub(crate) fn appli_of(measures: &[NewMeasure]) -> u32 {
    if measures.iter().any(|m| matches!(m.measure_type, 9..=11)) {
        4
    } else {
        1
    }
}

/// Why [`SandboxHandle::add_measures`](crate::SandboxHandle::add_measures) added nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeasureError {
    /// No user has this user id (the demo user, [`DEMO_USERID`](crate::DEMO_USERID), always
    /// exists).
    UnknownUser,
    /// A group needs at least one measure.
    NoMeasure,
}

impl std::fmt::Display for MeasureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownUser => {
                "no user has this user id: add it to the config (with_user, seed_users) first"
            }
            Self::NoMeasure => "a measure group needs at least one measure",
        })
    }
}

impl std::error::Error for MeasureError {}

impl Inner {
    /// Adds a group of measures taken at `date` (unix seconds) for `userid`, created `now`.
    /// Returns its `grpid`.
    pub(crate) fn add_measures(
        &mut self,
        userid: u64,
        date: i64,
        measures: &[NewMeasure],
        now: i64,
    ) -> Result<u64, MeasureError> {
        if userid != crate::DEMO_USERID && !self.users.iter().any(|u| u.userid == userid) {
            return Err(MeasureError::UnknownUser);
        }
        if measures.is_empty() {
            return Err(MeasureError::NoMeasure);
        }
        // Seeded groups use ids with the user id in the high bits; added ones stay below.
        let grpid = self.next_grpid;
        self.next_grpid += 1;
        let device = if appli_of(measures) == 4 { BPM } else { SCALE };
        self.added.entry(userid).or_default().push(MeasureGroup {
            grpid,
            attrib: 0,
            date,
            modified: now,
            category: 1,
            device: Some(device),
            measures: measures.to_vec(),
        });
        Ok(grpid)
    }
}
