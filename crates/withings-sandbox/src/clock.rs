//! The sandbox's clock: real time plus an offset that tests can only move forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every expiry (codes, nonces, tokens, rate-limit windows) is measured on this clock, so
/// [`SandboxHandle::advance_clock`](crate::SandboxHandle::advance_clock) ages all of them.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_nanos: AtomicU64,
}

impl Clock {
    pub(crate) fn now(&self) -> SystemTime {
        later(
            SystemTime::now(),
            Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed)),
        )
    }

    pub(crate) fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Saturate instead of wrapping: a huge advance just means "far future".
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(by))
            });
    }
}

/// A thousand years: longer than any test runs, and representable after any time the clock
/// can show (real time plus at most `u64::MAX` nanoseconds, about 584 years) on every platform.
const FAR_AHEAD: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// `t + by`, or, when that time can't be represented (a lifetime of `Duration::MAX`), a time
/// at least a thousand years after `t`: "never expires" for all practical purposes, and never
/// a panic while the state lock is held.
pub(crate) fn later(t: SystemTime, by: Duration) -> SystemTime {
    t.checked_add(by)
        .or_else(|| t.checked_add(FAR_AHEAD))
        // Unreachable for the times the clock shows; `t` itself still beats panicking.
        .unwrap_or(t)
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let clock = Clock::default();
        let before = unix_secs(clock.now());
        clock.advance(Duration::from_secs(3600));
        assert!(unix_secs(clock.now()) >= before + 3600);
    }

    #[test]
    fn later_never_overflows() {
        let now = SystemTime::now();
        assert_eq!(
            later(now, Duration::from_secs(30)),
            now + Duration::from_secs(30)
        );
        assert!(later(now, Duration::MAX) >= now + FAR_AHEAD);
        let far = later(now, Duration::from_nanos(u64::MAX));
        assert!(later(far, Duration::MAX) > far);
    }

    #[test]
    fn huge_advance_saturates() {
        let clock = Clock::default();
        clock.advance(Duration::MAX);
        clock.advance(Duration::MAX);
        assert!(unix_secs(clock.now()) > 500 * 365 * 24 * 3600);
    }
}
