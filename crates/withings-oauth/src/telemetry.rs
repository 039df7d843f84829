//! What this crate records through the [`metrics`] facade: refreshes by outcome and their
//! duration, and Withings' answers by status class. Nothing is recorded unless the application
//! installs a recorder (an exporter); the fresh path of [`Session::access_token`] records
//! nothing at all.
//!
//! Names follow Prometheus' conventions (`withings_oauth_` prefix, base units, `_total`
//! counters). Every label value comes from a fixed set in this file: never a user id, a token or
//! a URL. docs/operations.md lists every metric of the workspace.
//!
//! [`Session::access_token`]: crate::Session::access_token

use std::time::Duration;

use crate::api::error::ApiError;
use crate::api::status::StatusFamily;
use crate::session::SessionError;

/// Counter: refresh attempts of a session, by `outcome` ([`RefreshOutcome::label`]).
pub(crate) const REFRESHES: &str = "withings_oauth_refreshes_total";
/// Histogram: how long a refresh attempt took (lease, store and Withings), by `outcome`.
pub(crate) const REFRESH_DURATION: &str = "withings_oauth_refresh_duration_seconds";
/// Counter: answers of Withings (or failures to get one), by `call` and `class`.
pub(crate) const API_ANSWERS: &str = "withings_oauth_api_answers_total";

/// How a refresh attempt of a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    /// Withings issued a new pair and it was saved.
    Ok,
    /// The store held a newer login (another program refreshed): adopted, nothing sent.
    Adopted,
    /// Another program wrote while this one refreshed: the stored login won and was adopted.
    ConflictAdopted,
    /// Withings rejected the refresh token: the user must log in again.
    InvalidRefreshToken,
    /// The store says the user must log in again, or no longer has the user.
    LoginRequired,
    /// A failure worth retrying (timeout, 5xx, connection).
    TransientError,
    /// Withings answered 601.
    RateLimited,
    /// The refresh lease ended before the request could go: nothing was sent.
    LeaseEnded,
    /// The store failed (the refreshed pair, if any, is kept unsaved).
    StoreError,
    /// Anything else (a configuration error, an answer Withings does not send).
    Failed,
}

impl RefreshOutcome {
    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Adopted => "adopted",
            Self::ConflictAdopted => "conflict_adopted",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::LoginRequired => "login_required",
            Self::TransientError => "transient_error",
            Self::RateLimited => "rate_limited",
            Self::LeaseEnded => "lease_ended",
            Self::StoreError => "store_error",
            Self::Failed => "failed",
        }
    }

    /// The outcome of a failed attempt that did not say what it was.
    pub(crate) fn of_error(error: &SessionError) -> Self {
        match error {
            SessionError::Api(ApiError::RateLimited { .. }) => Self::RateLimited,
            SessionError::Api(ApiError::LeaseEnded) => Self::LeaseEnded,
            SessionError::Api(ApiError::InvalidRefreshToken) => Self::InvalidRefreshToken,
            SessionError::Api(e) if e.is_transient() => Self::TransientError,
            SessionError::LoginRequired { .. } => Self::LoginRequired,
            SessionError::Store(_) | SessionError::TokensNotSaved(_) => Self::StoreError,
            _ => Self::Failed,
        }
    }
}

/// Records one refresh attempt.
pub(crate) fn refreshed(outcome: RefreshOutcome, took: Duration) {
    let outcome = outcome.label();
    metrics::counter!(REFRESHES, "outcome" => outcome).increment(1);
    metrics::histogram!(REFRESH_DURATION, "outcome" => outcome).record(took.as_secs_f64());
}

/// Records one answer of Withings to a request to `path` (or the failure to get one).
pub(crate) fn answered<T>(path: &str, result: &Result<T, ApiError>) {
    // The call, not the path: a data call's path is the caller's.
    let call = match path {
        "v2/oauth2" => "token",
        "v2/signature" => "signature",
        _ => "data",
    };
    let class = match result {
        Ok(_) => "ok",
        Err(e) => error_class(e),
    };
    metrics::counter!(API_ANSWERS, "call" => call, "class" => class).increment(1);
}

/// The status class of a failed request: Withings' status family, or what kept an answer from
/// arriving.
fn error_class(error: &ApiError) -> &'static str {
    match error {
        ApiError::RateLimited { .. } => "rate_limited",
        ApiError::InvalidCode | ApiError::InvalidRefreshToken | ApiError::InvalidClient => {
            "invalid_params"
        }
        ApiError::InvalidAccessToken => "authentication_failed",
        ApiError::Withings { family, .. } => match family {
            StatusFamily::AuthenticationFailed => "authentication_failed",
            StatusFamily::ServiceNotAllowed => "service_not_allowed",
            StatusFamily::NotImplemented => "not_implemented",
            StatusFamily::Timeout => "timeout",
            StatusFamily::BadState => "bad_state",
            StatusFamily::TooManyRequests => "rate_limited",
            StatusFamily::InvalidParams => "invalid_params",
            StatusFamily::Other => "other",
        },
        ApiError::HttpStatus { .. } | ApiError::WrongEndpoint { .. } => "http_error",
        ApiError::NotJson { .. }
        | ApiError::Truncated
        | ApiError::EmptyBody
        | ApiError::TooLarge { .. }
        | ApiError::Malformed { .. } => "malformed",
        ApiError::LeaseEnded => "not_sent",
        ApiError::Transport { .. } => "transport_error",
    }
}
