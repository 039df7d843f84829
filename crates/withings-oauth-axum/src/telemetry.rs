//! What the routes record through the [`metrics`] facade: pending logins parked, taken, expired
//! and refused, and logins by outcome. Nothing is recorded unless the application installs a
//! recorder. Label values are fixed names: never a user id, an owner, a `state` or a URL.
//! docs/operations.md lists every metric.

use crate::error::LoginError;

/// Counter: pending logins by `event` (parked, taken, expired, refused) and, for a refused one,
/// `reason` (other_browser, unknown: never parked, purged, or already used, as by a replay).
pub(crate) const PENDING_LOGINS: &str = "withings_oauth_pending_logins_total";
/// Counter: callbacks by `outcome`: `ok`, or the kind of the error page shown
/// ([`LoginError::kind`]).
pub(crate) const LOGINS: &str = "withings_oauth_logins_total";

/// Records a login parked by the connect route.
pub(crate) fn parked() {
    metrics::counter!(PENDING_LOGINS, "event" => "parked", "reason" => "").increment(1);
}

/// Records what became of a take by the callback route.
pub(crate) fn taken(result: &Result<(), &LoginError>) {
    let (event, reason) = match result {
        Ok(()) => ("taken", ""),
        Err(LoginError::Expired) => ("expired", ""),
        Err(LoginError::OtherBrowser) => ("refused", "other_browser"),
        Err(LoginError::Unknown) => ("refused", "unknown"),
        Err(_) => ("refused", "store_error"),
    };
    metrics::counter!(PENDING_LOGINS, "event" => event, "reason" => reason).increment(1);
}

/// Records how a callback ended.
pub(crate) fn finished(result: &Result<(), LoginError>) {
    let outcome = match result {
        Ok(()) => "ok",
        Err(error) => error.kind(),
    };
    metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}
