//! What a login yields: the user id, the token pair, its expiry and the granted scopes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::json::number_or_digits;
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken};

/// A Withings user id. The wire sends it as a JSON string or number; both become this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(u64);

impl UserId {
    /// The id Withings' demo account is given here: `getdemoaccess` does not say its user id.
    pub const DEMO: UserId = UserId(0);

    /// Wraps a numeric id.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The numeric id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A user id that is neither a non-negative integer nor a string of digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Withings user id is a number, such as 12345678")]
pub struct InvalidUserId;

impl FromStr for UserId {
    type Err = InvalidUserId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidUserId);
        }
        s.parse().map(UserId).map_err(|_| InvalidUserId)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        number_or_digits(deserializer, "userid").map(UserId)
    }
}

/// The user's tokens and what they allow.
///
/// `Debug` never shows the tokens. To store them, use [`Credentials::reveal_for_storage`].
#[derive(Clone)]
pub struct Credentials {
    pub(crate) user_id: UserId,
    pub(crate) access_token: AccessToken,
    pub(crate) refresh_token: RefreshToken,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) scopes: Scopes,
    pub(crate) token_type: String,
}

impl Credentials {
    /// The user the tokens belong to.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The access token, for `Authorization: Bearer ...`.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The refresh token. Not public: a refresh goes through [`Authorized::refresh`](crate::Authorized::refresh),
    /// which consumes the login, so a rotated refresh token can't be used twice.
    pub(crate) fn refresh_token(&self) -> &RefreshToken {
        &self.refresh_token
    }

    /// When the access token expires (computed from the time the request was sent, so early).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The scopes Withings granted (maybe fewer than asked for).
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// The token type, `Bearer`.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// Whether the access token expires within `margin` of `now`.
    pub fn expires_within(&self, margin: TimeDelta, now: DateTime<Utc>) -> bool {
        match now.checked_add_signed(margin) {
            Some(limit) => self.expires_at <= limit,
            None => true,
        }
    }
}

/// Whether a token is non-empty printable ASCII of reasonable length.
pub(crate) fn is_token_text(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a `token_type` is short printable ASCII (it is shown in terminals and logs).
pub(crate) fn is_token_type(t: &str) -> bool {
    !t.is_empty() && t.len() < 32 && t.bytes().all(|b| b.is_ascii_graphic())
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes.to_string())
            .field("token_type", &self.token_type)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_string_and_number() {
        let a: UserId = serde_json::from_str("\"12345678\"").unwrap();
        let b: UserId = serde_json::from_str("12345678").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<UserId>("\"12x\"").is_err());
        assert!(serde_json::from_str::<UserId>("-1").is_err());
    }
}
