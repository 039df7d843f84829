//! Per-user health: when the tokens were last renewed, the failures since, the cooldown that
//! keeps a failing user from being retried at once, and the terminal "needs
//! re-authorization".

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// What a fleet knows about one user's refreshes, without any secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserHealth {
    /// When this instance last got new tokens for the user (its own refresh, or one another
    /// instance stored).
    pub last_refresh: Option<DateTime<Utc>>,
    /// When a refresh of the user last failed.
    pub last_failure: Option<DateTime<Utc>>,
    /// Failed refreshes since the last success.
    pub failures: u32,
    /// While a cooldown lasts, when it ends: no refresh of the user is tried before.
    pub retry_at: Option<DateTime<Utc>>,
    /// Withings rejected the user's refresh token (or the access was revoked): nothing is
    /// tried for the user until a new login is in the store.
    pub needs_reauthorization: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Health {
    pub(crate) public: UserHealth,
    /// `public.retry_at` on the runtime's clock.
    pub(crate) retry_at: Option<Instant>,
    /// For a user who needs re-authorization: when to look in the store for a new login.
    pub(crate) recheck_at: Option<Instant>,
}

/// How long a user waits after failures: `base` after the first, doubling, at most `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cooldown {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Cooldown {
    pub(crate) fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

impl Health {
    /// The cooldown left, if the user is cooling down.
    pub(crate) fn cooling(&self, now: Instant) -> Option<Duration> {
        self.retry_at
            .filter(|at| *at > now)
            .map(|at| at.duration_since(now))
    }

    pub(crate) fn succeeded(&mut self, renewed: bool) {
        if renewed {
            self.public.last_refresh = Some(Utc::now());
        }
        self.public.failures = 0;
        self.public.retry_at = None;
        self.retry_at = None;
    }

    /// Records a failure; returns the cooldown that starts.
    pub(crate) fn failed(&mut self, cooldown: Cooldown) -> Duration {
        self.public.failures = self.public.failures.saturating_add(1);
        self.public.last_failure = Some(Utc::now());
        let wait = cooldown.after(self.public.failures);
        self.retry_at = Some(Instant::now() + wait);
        self.public.retry_at = Some(Utc::now() + wait);
        wait
    }

    /// Records that the user must authorize again; `false` if that was known already.
    pub(crate) fn needs_reauthorization(&mut self, recheck_after: Duration) -> bool {
        let new = !self.public.needs_reauthorization;
        self.public.needs_reauthorization = true;
        self.public.last_failure = Some(Utc::now());
        self.recheck_at = Some(Instant::now() + recheck_after);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_double_up_to_their_maximum() {
        let cooldown = Cooldown {
            base: Duration::from_secs(30),
            max: Duration::from_secs(600),
        };
        let waits: Vec<u64> = (1..=7).map(|n| cooldown.after(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(cooldown.after(u32::MAX).as_secs(), 600);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_a_cooldown_and_a_success_ends_it() {
        let cooldown = Cooldown {
            base: Duration::from_secs(30),
            max: Duration::from_secs(600),
        };
        let mut health = Health::default();
        health.failed(cooldown);
        assert!(health.cooling(Instant::now()).is_some());
        assert_eq!(health.public.failures, 1);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(health.cooling(Instant::now()).is_none());
        health.failed(cooldown);
        health.succeeded(true);
        assert_eq!(health.public.failures, 0);
        assert!(health.public.retry_at.is_none() && health.public.last_refresh.is_some());
    }
}
