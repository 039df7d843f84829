//! Withings' Measure API (`getmeas`): the query and the typed answer.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::json::flag;

/// A `getmeas` query. Empty means every measure type, all dates.
///
/// ```
/// use withings_oauth::{GetMeas, measure_type};
/// let query = GetMeas::new()
///     .meastype(measure_type::WEIGHT)
///     .startdate(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
/// assert_eq!(query.params(), [("meastype", "1".to_owned()), ("startdate", "1700000000".to_owned())]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetMeas {
    meastypes: Vec<u32>,
    category: Option<u8>,
    startdate: Option<DateTime<Utc>>,
    enddate: Option<DateTime<Utc>>,
    lastupdate: Option<DateTime<Utc>>,
    offset: Option<u64>,
}

impl GetMeas {
    /// Every measure type, all dates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a measure type (see [`measure_type`]); several are sent as `meastypes`.
    pub fn meastype(mut self, meastype: u32) -> Self {
        self.meastypes.push(meastype);
        self
    }

    /// `1` for real measures, `2` for the user's objectives.
    pub fn category(mut self, category: u8) -> Self {
        self.category = Some(category);
        self
    }

    /// Measures taken at or after this time.
    pub fn startdate(mut self, at: DateTime<Utc>) -> Self {
        self.startdate = Some(at);
        self
    }

    /// Measures taken at or before this time.
    pub fn enddate(mut self, at: DateTime<Utc>) -> Self {
        self.enddate = Some(at);
        self
    }

    /// Measures added or changed since this time (for syncing).
    pub fn lastupdate(mut self, at: DateTime<Utc>) -> Self {
        self.lastupdate = Some(at);
        self
    }

    /// The `offset` of the previous answer, when it said there is [`more`](MeasureGroups::more).
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The form parameters besides `action=getmeas`.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        match self.meastypes.as_slice() {
            [] => {}
            [one] => params.push(("meastype", one.to_string())),
            many => params.push((
                "meastypes",
                many.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
        }
        if let Some(category) = self.category {
            params.push(("category", category.to_string()));
        }
        for (name, at) in [
            ("startdate", self.startdate),
            ("enddate", self.enddate),
            ("lastupdate", self.lastupdate),
        ] {
            if let Some(at) = at {
                params.push((name, at.timestamp().to_string()));
            }
        }
        if let Some(offset) = self.offset {
            params.push(("offset", offset.to_string()));
        }
        params
    }
}

/// Withings' measure type codes (the `type` of a [`Measure`]); a few common ones.
pub mod measure_type {
    /// Weight (kg).
    pub const WEIGHT: u32 = 1;
    /// Height (m).
    pub const HEIGHT: u32 = 4;
    /// Fat free mass (kg).
    pub const FAT_FREE_MASS: u32 = 5;
    /// Fat ratio (%).
    pub const FAT_RATIO: u32 = 6;
    /// Fat mass weight (kg).
    pub const FAT_MASS_WEIGHT: u32 = 8;
    /// Diastolic blood pressure (mmHg).
    pub const DIASTOLIC_BLOOD_PRESSURE: u32 = 9;
    /// Systolic blood pressure (mmHg).
    pub const SYSTOLIC_BLOOD_PRESSURE: u32 = 10;
    /// Heart pulse (bpm).
    pub const HEART_PULSE: u32 = 11;
}

/// The body of a `getmeas` answer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct MeasureGroups {
    /// When the answer was made (unix seconds).
    #[serde(default)]
    pub updatetime: Option<i64>,
    /// The user's time zone, e.g. `Europe/Paris`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The groups, each one a weighing or a blood pressure reading.
    #[serde(rename = "measuregrps", default)]
    pub groups: Vec<MeasureGroup>,
    /// Whether more groups remain: ask again with [`GetMeas::offset`].
    #[serde(default, deserialize_with = "flag")]
    pub more: bool,
    /// The offset to ask for the rest with.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Measures taken together.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct MeasureGroup {
    /// The group's id.
    pub grpid: u64,
    /// How the measures were captured (device, manual...).
    #[serde(default)]
    pub attrib: i64,
    /// When they were taken (unix seconds).
    pub date: i64,
    /// `1` real measures, `2` objectives.
    #[serde(default)]
    pub category: i64,
    /// The measures.
    #[serde(default)]
    pub measures: Vec<Measure>,
}

impl MeasureGroup {
    /// When the measures were taken, if the date is representable.
    pub fn taken_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.date, 0)
    }

    /// The group's measure of `kind` (see [`measure_type`]).
    pub fn measure(&self, kind: u32) -> Option<&Measure> {
        self.measures.iter().find(|m| m.kind == i64::from(kind))
    }
}

/// One measure: `value × 10^unit`, in the unit of its type.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Measure {
    /// The mantissa.
    pub value: i64,
    /// The type (see [`measure_type`]).
    #[serde(rename = "type")]
    pub kind: i64,
    /// The power of ten to scale `value` by.
    pub unit: i32,
}

impl Measure {
    /// `value × 10^unit`: 72345 with unit -3 is 72.345.
    pub fn real_value(&self) -> f64 {
        // Dividing by a positive power of ten is exact where multiplying by 10^-n is not.
        if self.unit < 0 {
            self.value as f64 / 10f64.powi(self.unit.saturating_neg())
        } else {
            self.value as f64 * 10f64.powi(self.unit)
        }
    }
}
