//! What a login yields: the user id, the token pair, its expiry and the granted scopes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::scope::Scopes;

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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Number(u64),
            Text(String),
        }
        match Wire::deserialize(deserializer)? {
            Wire::Number(n) => Ok(UserId(n)),
            Wire::Text(s) => s
                .parse()
                .map_err(|_| serde::de::Error::custom("userid is not a number")),
        }
    }
}

/// The user's tokens and what they allow.
///
/// `Debug` never shows the tokens. To store them, use [`Credentials::reveal_for_storage`].
#[derive(Clone)]
pub struct Credentials {
    pub(crate) user_id: UserId,
    pub(crate) access_token: SecretString,
    pub(crate) refresh_token: SecretString,
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
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
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

    /// Copies the credentials, secrets included, into a plain serializable form.
    ///
    /// # Security
    /// The result holds both tokens in clear text. Write it only to storage that is as private
    /// as a password file (mode 0600, an OS keychain), and drop it right after.
    pub fn reveal_for_storage(&self) -> StoredCredentials {
        StoredCredentials {
            format: StoredCredentials::FORMAT,
            user_id: self.user_id,
            access_token: self.access_token.expose_secret().to_owned(),
            refresh_token: self.refresh_token.expose_secret().to_owned(),
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
            token_type: self.token_type.clone(),
        }
    }

    /// Rebuilds credentials from their stored form, checking them.
    pub fn from_stored(stored: StoredCredentials) -> Result<Self, StoredCredentialsError> {
        if stored.format != StoredCredentials::FORMAT {
            return Err(StoredCredentialsError::UnsupportedFormat(stored.format));
        }
        for (name, token) in [
            ("access token", &stored.access_token),
            ("refresh token", &stored.refresh_token),
        ] {
            if !is_token_text(token) {
                return Err(StoredCredentialsError::InvalidToken(name));
            }
        }
        if !crate::wire::is_token_type(&stored.token_type) {
            return Err(StoredCredentialsError::InvalidToken("token type"));
        }
        Ok(Credentials {
            user_id: stored.user_id,
            access_token: SecretString::from(stored.access_token),
            refresh_token: SecretString::from(stored.refresh_token),
            expires_at: stored.expires_at,
            scopes: stored.scopes,
            token_type: stored.token_type,
        })
    }
}

/// Whether a token is non-empty printable ASCII of reasonable length.
pub(crate) fn is_token_text(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic())
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

/// The stored form of [`Credentials`], with the tokens in clear text. Made only by
/// [`Credentials::reveal_for_storage`] or by deserializing; `Debug` still hides the tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCredentials {
    /// Format version, currently 1.
    pub format: u32,
    /// The user.
    pub user_id: UserId,
    /// The access token, in clear.
    pub access_token: String,
    /// The refresh token, in clear.
    pub refresh_token: String,
    /// Expiry of the access token.
    pub expires_at: DateTime<Utc>,
    /// Granted scopes, comma-separated.
    pub scopes: Scopes,
    /// `Bearer`.
    pub token_type: String,
}

impl StoredCredentials {
    /// The format version this library writes.
    pub const FORMAT: u32 = 1;
}

impl fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("format", &self.format)
            .field("user_id", &self.user_id)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Stored credentials that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoredCredentialsError {
    /// Written by another version of the format.
    #[error(
        "the stored credentials use format {0}, which this version does not read: log in again"
    )]
    UnsupportedFormat(u32),
    /// A token is empty or holds characters a token never has.
    #[error("the stored {0} is empty or damaged: log in again")]
    InvalidToken(&'static str),
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
