//! The stored record of a login: [`StoredCredentials`], the one place where tokens leave their
//! secret types, and the way back.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credentials::{Credentials, UserId, is_token_text, is_token_type};
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken};

impl Credentials {
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
        if !is_token_type(&stored.token_type) {
            return Err(StoredCredentialsError::InvalidToken("token type"));
        }
        Ok(Credentials {
            user_id: stored.user_id,
            access_token: AccessToken::new(stored.access_token),
            refresh_token: RefreshToken::new(stored.refresh_token),
            expires_at: stored.expires_at,
            scopes: stored.scopes,
            token_type: stored.token_type,
        })
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
