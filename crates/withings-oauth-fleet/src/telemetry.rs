//! What a fleet records through the [`metrics`] facade: the rate limiter's waits and grants,
//! refreshes refused while a user cools down or the store fails to save, the cache's size and evictions, sweeps and their
//! renewals, and the stored users by state. Nothing is recorded unless the application installs
//! a recorder; the fresh path of [`Fleet::access_token`](crate::Fleet::access_token) records
//! nothing. No label value is a user id. docs/operations.md lists every metric.

use std::time::Duration;

/// Counter: requests the rate limiter let go.
pub(crate) const LIMITER_GRANTS: &str = "withings_oauth_rate_limiter_grants_total";
/// Histogram: how long a request waited for the rate limiter.
pub(crate) const LIMITER_WAIT: &str = "withings_oauth_rate_limiter_wait_seconds";
/// Counter: refreshes (the core crate's metric), here with the outcomes `cooling_down` and
/// `store_not_saving`.
pub(crate) const REFRESHES: &str = "withings_oauth_refreshes_total";
/// Gauge: users with a session in the cache.
pub(crate) const CACHED_USERS: &str = "withings_oauth_fleet_cached_users";
/// Counter: users evicted from the cache to make room.
pub(crate) const EVICTIONS: &str = "withings_oauth_fleet_cache_evictions_total";
/// Counter: sweeps run.
pub(crate) const SWEEPS: &str = "withings_oauth_fleet_sweeps_total";
/// Counter: idle users a sweep handled, by `outcome` (renewed, failed, claimed_elsewhere).
pub(crate) const SWEEP_RENEWALS: &str = "withings_oauth_fleet_sweep_renewals_total";
/// Gauge: stored users by `state` (fresh, due, login_required), counted by the last sweep.
pub(crate) const USERS: &str = "withings_oauth_fleet_users";

/// Records a request the rate limiter let go after `waited`.
pub(crate) fn granted(waited: Duration) {
    metrics::counter!(LIMITER_GRANTS).increment(1);
    metrics::histogram!(LIMITER_WAIT).record(waited.as_secs_f64());
}

/// Records a refresh not tried because the user cools down after failures.
pub(crate) fn cooling_down() {
    metrics::counter!(REFRESHES, "outcome" => "cooling_down").increment(1);
}

/// Records a refresh not sent because the store failed to save a refreshed pair a moment ago.
pub(crate) fn store_not_saving() {
    metrics::counter!(REFRESHES, "outcome" => "store_not_saving").increment(1);
}

/// Records the cache's size after a change, and whether the change evicted a user.
pub(crate) fn cache_changed(users: usize, evicted: bool) {
    metrics::gauge!(CACHED_USERS).set(users as f64);
    if evicted {
        metrics::counter!(EVICTIONS).increment(1);
    }
}

/// What a sweep found among the stored users.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct States {
    /// Access token still valid.
    pub(crate) fresh: usize,
    /// Access token expired: refreshed on the next call, or by a sweep once idle.
    pub(crate) due: usize,
    /// The user must log in again.
    pub(crate) login_required: usize,
}

/// Records one sweep: what it did and the users it counted.
pub(crate) fn swept(report: &crate::SweepReport, states: States) {
    metrics::counter!(SWEEPS).increment(1);
    for (outcome, n) in [
        ("renewed", report.renewed),
        ("failed", report.failed),
        ("claimed_elsewhere", report.claimed_elsewhere),
    ] {
        metrics::counter!(SWEEP_RENEWALS, "outcome" => outcome).increment(n as u64);
    }
    for (state, n) in [
        ("fresh", states.fresh),
        ("due", states.due),
        ("login_required", states.login_required),
    ] {
        metrics::gauge!(USERS, "state" => state).set(n as f64);
    }
}
