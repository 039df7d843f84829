//! [`FleetError`]: why a fleet could not hand out a token or make a call. No message holds a
//! token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use withings_oauth::{SessionError, UserId};

/// Why a fleet could not hand out a token or make a call. No message holds a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// Withings rejected the user's refresh token, the access was revoked, or the store has no
    /// login for the user.
    #[error(
        "user {user} must authorize the app again: the refresh token was rejected or revoked, or no login is stored"
    )]
    NeedsReauthorization {
        /// The user.
        user: UserId,
    },
    /// The user's last refresh failed; no new one is tried before `retry_at`, so that a
    /// failing account can't flood Withings.
    #[error(
        "the last refresh of user {user} failed; the next one is not tried before {retry_at} (in {} s)",
        retry_in.as_secs().max(1)
    )]
    CoolingDown {
        /// The user.
        user: UserId,
        /// When the cooldown ends.
        retry_at: DateTime<Utc>,
        /// How long until then.
        retry_in: Duration,
    },
    /// The store failed to save a refreshed pair a moment ago: the instance sends no refresh
    /// until it saves again, since a pair it can't keep would cost the user's login. The
    /// user's current token is not fresh enough to hand out meanwhile.
    #[error(
        "the token store could not save a refreshed login a moment ago; no refresh is sent for {} s, so that none is lost: check the store (its disk, its database)",
        retry_in.as_secs().max(1)
    )]
    StoreNotSaving {
        /// How long until a refresh is tried again.
        retry_in: Duration,
    },
    /// Withings still answered 601 (too many requests) after the retries with backoff.
    #[error(
        "Withings' rate limit was still reached after {attempts} attempts: retry in a minute, or lower the fleet's rate limit"
    )]
    RateLimited {
        /// Attempts made.
        attempts: u32,
    },
    /// The session failed: the store, or Withings.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl FleetError {
    /// How long to wait before asking again, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FleetError::CoolingDown { retry_in, .. } | FleetError::StoreNotSaving { retry_in } => {
                Some(*retry_in)
            }
            FleetError::RateLimited { .. } => Some(Duration::from_secs(60)),
            _ => None,
        }
    }

    /// Whether the user must authorize the app again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, FleetError::NeedsReauthorization { .. })
    }
}
