//! Time: the [`Clock`] sessions read, and a cheap read of the system's wall clock for their
//! fast path.

use chrono::{DateTime, Utc};

/// Where a session reads the time. Tests inject their own to age tokens without waiting.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
///
/// A session on this clock checks its token's expiry on every call with a cheap read of the
/// wall clock (on Linux the coarse realtime clock, which advances once a kernel tick, every 1 to
/// 4 ms), and refreshes that much earlier than its margin says, so that it never hands out a
/// token the precise clock would call expired. Being a wall clock, it jumps forward after a
/// suspend: a resumed machine never gets a token that expired while it slept.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Microseconds since the Unix epoch, read the cheap way a session on this clock reads
    /// them on its fast path: it may lag the precise clock by one tick (up to 4 ms), which the
    /// moment of [`Session::fresh_token_until`](crate::Session::fresh_token_until) already
    /// allows for. Much cheaper than [`now`](Clock::now) (about 60 ns).
    ///
    /// ```
    /// use withings_oauth::SystemClock;
    ///
    /// let cheap = SystemClock::now_micros();
    /// let precise = chrono::Utc::now().timestamp_micros();
    /// assert!(cheap <= precise && precise - cheap < 1_000_000);
    /// ```
    #[inline]
    pub fn now_micros() -> i64 {
        system_micros()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Microseconds since the Unix epoch on the system's wall clock, read cheaply: `Utc::now()`
/// takes about 60 ns, as much as twice a whole naive token cache read.
///
/// On Linux the coarse realtime clock, read from the vDSO without a system call; it lags the
/// precise clock by up to [`system_resolution_micros`]. A wall clock, not a CPU counter: it
/// counts the time a machine spent suspended.
///
/// Inlined into the callers' fast paths, other crates' too (`SystemClock::now_micros`), and
/// converted with two integer operations rather than through a `Duration` (a call of its own):
/// see docs/benchmarks.md, "Inlined, and measured against the build before".
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(crate) fn system_micros() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    // `tv_nsec` is in 0..1_000_000_000 whatever the sign of `tv_sec` (before 1970), so this
    // rounds down, as `DateTime::timestamp_micros` does. It is an `i64`, but a C `long` where
    // rustix goes through libc (32 bits on 32-bit Android).
    #[allow(clippy::useless_conversion)]
    let nanos = i64::from(now.tv_nsec);
    now.tv_sec
        .saturating_mul(1_000_000)
        .saturating_add(nanos / 1_000)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
pub(crate) fn system_micros() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// How far [`system_micros`] may lag the precise clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn system_resolution_micros() -> i64 {
    static RESOLUTION: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *RESOLUTION.get_or_init(|| {
        let resolution = rustix::time::clock_getres(rustix::time::ClockId::RealtimeCoarse);
        std::time::Duration::try_from(resolution)
            .ok()
            .and_then(|r| i64::try_from(r.as_micros()).ok())
            .unwrap_or(0)
            // Rounded up: a 4 ms tick is 4,000 µs, never less.
            .saturating_add(1)
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn system_resolution_micros() -> i64 {
    0
}
