//! [`FleetEvent`]: what a fleet tells the application about its users.

use chrono::{DateTime, Utc};
use withings_oauth::UserId;

/// Something that happened to a user's login, sent to every
/// [`Fleet::subscribe`](crate::Fleet::subscribe)r of this instance. Each instance reports what
/// it saw: an application running several should tell its users from one of them, or dedupe.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// New tokens for the user: this instance refreshed them, or adopted those another
    /// instance stored.
    Refreshed {
        /// The user.
        user: UserId,
        /// When the new access token expires.
        expires_at: DateTime<Utc>,
    },
    /// Withings rejected the user's refresh token: the user must authorize the app again.
    /// Sent once per instance; nothing is tried for the user until a new login is stored.
    NeedsReauthorization {
        /// The user.
        user: UserId,
    },
    /// The app's access was revoked through [`Fleet::revoke`](crate::Fleet::revoke).
    Revoked {
        /// The user.
        user: UserId,
    },
}
