//! Deterministic fake data: every value is a function of the user id, the day and what it
//! is, so the same user has the same weight, steps and nights on the same day in every run.

use std::time::SystemTime;

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};

use crate::clock::unix_secs;

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;
/// How many days of data every user has.
pub(crate) const DAYS: i64 = 30;
/// The `timezone` of every record. Days are UTC days.
pub(crate) const TIMEZONE: &str = "UTC";

/// The days every user has seeded data for: the 30 whole UTC days before the day the sandbox
/// started, so that no seeded record lies in the future of the sandbox clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) first: i64,
    pub(crate) last: i64,
}

impl Window {
    /// The window ending the day before `start`.
    pub(crate) fn before(start: SystemTime) -> Self {
        let today = i64::try_from(unix_secs(start)).unwrap_or(0).div_euclid(DAY);
        Self {
            first: today - DAYS,
            last: today - 1,
        }
    }

    /// The window whose last day is the UTC day of `last`.
    pub(crate) fn through(last: SystemTime) -> Self {
        let last = i64::try_from(unix_secs(last)).unwrap_or(0).div_euclid(DAY);
        Self {
            first: last - (DAYS - 1),
            last,
        }
    }

    /// Every day of the window, oldest first.
    pub(crate) fn days(self) -> impl DoubleEndedIterator<Item = i64> {
        self.first..=self.last
    }
}

/// A well-mixed 64-bit value for `(userid, day, what)` (SplitMix64's finaliser).
pub(crate) fn mix(userid: u64, day: i64, what: u64) -> u64 {
    let mut z = userid
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((day as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(what.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value in `lo..=hi` for `(userid, day, what)`.
pub(crate) fn between(userid: u64, day: i64, what: u64, lo: i64, hi: i64) -> i64 {
    let span = (hi - lo + 1).max(1) as u64;
    lo + (mix(userid, day, what) % span) as i64
}

/// The 40 hex characters Withings uses as a device id, for one of the user's devices.
pub(crate) fn device_id(userid: u64, device: &str) -> String {
    let digest = Sha256::digest(format!("{userid}:{device}").as_bytes());
    hex::encode(&digest[..20])
}

/// `Y-m-d` of a day number (days since 1970-01-01).
pub(crate) fn ymd(day: i64) -> String {
    NaiveDate::from_num_days_from_ce_opt(epoch_ce() + i32::try_from(day).unwrap_or(0))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The day number of a `Y-m-d` date.
pub(crate) fn parse_ymd(raw: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").ok()?;
    Some(i64::from(date.num_days_from_ce() - epoch_ce()))
}

/// 1970-01-01 in days from the common era.
fn epoch_ce() -> i32 {
    NaiveDate::from_ymd_opt(1970, 1, 1).map_or(719_163, |d| d.num_days_from_ce())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(parse_ymd("2019-03-04"), Some(17_959));
        assert_eq!(ymd(17_959), "2019-03-04");
        assert_eq!(parse_ymd("2019-02-30"), None);
        assert_eq!(parse_ymd("yesterday"), None);
    }

    #[test]
    fn values_depend_on_user_and_day_only() {
        assert_eq!(mix(7, 3, 1), mix(7, 3, 1));
        assert_ne!(mix(7, 3, 1), mix(8, 3, 1));
        assert_ne!(mix(7, 3, 1), mix(7, 4, 1));
        for day in 0..100 {
            let v = between(7, day, 2, 10, 20);
            assert!((10..=20).contains(&v));
        }
        assert_eq!(device_id(7, "scale").len(), 40);
        assert_ne!(device_id(7, "scale"), device_id(7, "watch"));
    }

    #[test]
    fn the_window_is_the_thirty_days_before_the_start() {
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100 * 86_400 + 5);
        let w = Window::before(start);
        assert_eq!((w.first, w.last), (70, 99));
        assert_eq!(w.days().count(), 30);
        let end = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(99 * 86_400 + 80_000);
        assert_eq!(Window::through(end), w);
    }
}
