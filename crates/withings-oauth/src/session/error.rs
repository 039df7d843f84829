//! [`SessionError`]: why a session could not do what was asked. No message holds a token.

use crate::api::error::ApiError;
use crate::credentials::UserId;
use crate::login::Authorized;
use crate::store::StoreError;

/// Why a session could not do what was asked. No message holds a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The refresh token was rejected, the login was revoked, or the store has no usable login
    /// for the user.
    #[error("user {user} must log in again: the stored login is missing, revoked or expired")]
    LoginRequired {
        /// The user.
        user: UserId,
    },
    /// The token store failed while loading, locking or deleting.
    #[error(transparent)]
    Store(StoreError),
    /// Saving refreshed tokens failed. They are kept in memory, not used yet, and the next
    /// call saves them before using them.
    #[error(
        "saving the new tokens failed: {0}; the new tokens are kept in memory, not used yet, and saved again in the background until the store takes them"
    )]
    TokensNotSaved(StoreError),
    /// [`Session::start`](crate::Session::start) could not save the new login. Nothing was used:
    /// [`SessionError::into_login`] gives the login back to retry with a working store.
    #[error(
        "saving the new login failed: {source}; it was not used: fix the store and start the session again"
    )]
    StartNotSaved {
        /// What the store said.
        source: StoreError,
        /// The login, unused.
        authorized: Box<Authorized>,
    },
    /// A call to Withings failed (a refresh that may succeed later keeps the old tokens).
    #[error(transparent)]
    Api(ApiError),
    /// A refresh made by a concurrent call, which this call waited for, failed. This call did
    /// not try again, so that a failing Withings is not asked once per waiting caller.
    #[error("a concurrent refresh of the tokens failed: {message}")]
    ConcurrentRefreshFailed {
        /// That refresh's error message.
        message: String,
    },
    /// [`Session::call`](crate::Session::call) was given something other than a path on the API host.
    #[error(
        "{path:?} is not a path on the Withings API host: pass a relative path such as \"measure\""
    )]
    InvalidPath {
        /// The path given.
        path: String,
    },
    /// The async runtime shut down during a refresh.
    #[error("the async runtime shut down during a refresh; the stored tokens are the latest saved")]
    Shutdown,
}

impl SessionError {
    /// Whether the user must log in again.
    pub fn login_required(&self) -> bool {
        matches!(self, SessionError::LoginRequired { .. })
    }

    /// The store's error, for [`SessionError::Store`], [`SessionError::TokensNotSaved`] and
    /// [`SessionError::StartNotSaved`].
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            SessionError::Store(e) | SessionError::TokensNotSaved(e) => Some(e),
            SessionError::StartNotSaved { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The unused login of a [`SessionError::StartNotSaved`].
    pub fn into_login(self) -> Option<Authorized> {
        match self {
            SessionError::StartNotSaved { authorized, .. } => Some(*authorized),
            _ => None,
        }
    }
}
