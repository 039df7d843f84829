//! Refreshing: an [`Authorized`] in, a new [`Authorized`] out.
//!
//! Withings rotates the refresh token on every refresh, and the old one dies once the new access
//! token is used (or 8 hours later). So a refresh consumes the old login and the caller must
//! store the new one before using it. When a refresh fails and the old refresh token is still
//! good, the error hands the old login back, so nothing is lost.

use std::fmt;

use tracing::{Instrument, info, info_span, warn};

use super::authorized::{Authorized, HandBack};
use crate::api::error::ApiError;
use crate::api::token::{Grant, request_token};
use crate::store::LeaseTerm;

/// Refreshes `authorized` (`grant_type=refresh_token`).
///
/// On failure, [`RefreshError::into_login`] gives the old login back unless Withings said the
/// refresh token is dead ([`RefreshError::login_required`]).
pub async fn refresh(authorized: Authorized) -> Result<Authorized, RefreshError> {
    refresh_under(authorized, None).await
}

/// [`refresh`] under a refresh lease: the request leaves only while `fence` (the lease's term)
/// holds, with a timeout that ends before it; otherwise [`ApiError::LeaseEnded`], the login
/// handed back unspent.
pub(crate) async fn refresh_under(
    authorized: Authorized,
    fence: Option<&LeaseTerm>,
) -> Result<Authorized, RefreshError> {
    let client = authorized.client().clone();
    let span = info_span!("withings_oauth.refresh", client_id = client.client_id(), user_id = %authorized.user_id());
    let result = request_token(
        &client,
        Grant::Refresh {
            refresh_token: authorized.refresh_token(),
            user_id: authorized.user_id(),
            fence,
        },
        authorized.scopes(),
    )
    .instrument(span.clone())
    .await;
    let _guard = span.enter();
    match result {
        Ok(credentials) => {
            info!(expires_at = %credentials.expires_at(), scopes = %credentials.scopes(), "tokens refreshed");
            Ok(Authorized::new(client, credentials))
        }
        Err(ApiError::InvalidRefreshToken) => {
            warn!("refresh token rejected: the user must log in again");
            Err(RefreshError {
                source: ApiError::InvalidRefreshToken,
                previous: HandBack::none(),
            })
        }
        Err(source) => {
            // Withings keeps the old refresh token alive until the new access token is used, so
            // whatever happened to this request, the old pair still works.
            warn!(error = %source, "refresh failed; the previous credentials are kept");
            Err(RefreshError {
                source,
                previous: HandBack::login(authorized),
            })
        }
    }
}

impl Authorized {
    /// Refreshes the tokens; see [`refresh`].
    pub async fn refresh(self) -> Result<Authorized, RefreshError> {
        refresh(self).await
    }
}

/// A failed refresh. Holds the previous login when it is still usable: the same shape as
/// [`RevokeError`](crate::RevokeError) ([`login`](Self::login), [`into_login`](Self::into_login)).
pub struct RefreshError {
    source: ApiError,
    previous: HandBack,
}

impl RefreshError {
    /// Whether the user must log in again: Withings rejected the refresh token.
    pub fn login_required(&self) -> bool {
        !self.previous.is_some()
    }

    /// Whether retrying later may succeed (timeouts, 5xx, rate limit...).
    pub fn is_transient(&self) -> bool {
        self.source.is_transient()
    }

    /// What went wrong.
    pub fn error(&self) -> &ApiError {
        &self.source
    }

    /// The previous login, if still usable.
    pub fn login(&self) -> Option<&Authorized> {
        self.previous.get()
    }

    /// Takes the previous login back, if still usable.
    pub fn into_login(self) -> Option<Authorized> {
        self.previous.take()
    }

    /// Splits into the error and the previous login.
    pub fn into_parts(self) -> (ApiError, Option<Authorized>) {
        (self.source, self.previous.take())
    }
}

impl fmt::Debug for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshError")
            .field("source", &self.source)
            .field("previous_kept", &self.previous.is_some())
            .finish()
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refreshing the tokens failed: {}", self.source)?;
        if self.previous.is_some() {
            f.write_str(" (the previous tokens are still valid and were kept)")?;
        }
        Ok(())
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
