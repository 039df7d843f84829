//! [`Error`]: why a login failed.

use crate::api::error::ApiError;
use crate::callback::CallbackError;
use crate::config::ConfigError;
use crate::user_agent::UserAgentError;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The user agent brought back no callback.
    #[error(transparent)]
    UserAgent(#[from] UserAgentError),
    /// The callback was refused (including "authorization denied").
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// Withings refused the code exchange, or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Error {
    /// Whether the user refused access.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Callback(CallbackError::Denied { .. }))
    }
}
