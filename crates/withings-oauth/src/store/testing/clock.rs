//! [`ManualClock`]: a clock tests move by hand.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use crate::time::Clock;

/// A [`Clock`] that stands still until moved: for testing expiry (of tokens, leases, parked
/// logins) without waiting.
///
/// ```
/// use std::sync::Arc;
/// use chrono::{TimeDelta, Utc};
/// use withings_oauth::{Clock, MemoryPendingLogins, testing::ManualClock};
///
/// let start = Utc::now();
/// let clock = Arc::new(ManualClock::new(start));
/// let logins = MemoryPendingLogins::new().with_clock(clock.clone());
/// clock.advance(TimeDelta::minutes(11));
/// assert_eq!(clock.now(), start + TimeDelta::minutes(11));
/// # drop(logins);
/// ```
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    /// Moves the clock by `by` (forward, or back if negative).
    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
