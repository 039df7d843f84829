//! [`Authorized`]: a logged-in user, revoking its access, and [`HandBack`], the one shape in
//! which a failed call ([`RevokeError`], [`RefreshError`](crate::RefreshError)) hands a login
//! back.

use std::fmt;
use std::ops::Deref;

use tracing::{Instrument, info, info_span};

use crate::api::error::ApiError;
use crate::config::Client;
use crate::credentials::Credentials;

/// A logged-in user: the client and the user's [`Credentials`], whose getters (`user_id()`,
/// `access_token()`, `expires_at()`, `scopes()`...) it shares through `Deref`.
///
/// Not `Clone`: refreshing consumes it and gives back a new one, so a rotated refresh token
/// can't be used again.
///
/// ```compile_fail,E0382
/// # async fn f(authorized: withings_oauth::Authorized) {
/// let _ = authorized.refresh().await;
/// let _ = authorized.refresh().await; // use of moved value: the refresh token has rotated
/// # }
/// ```
pub struct Authorized {
    client: Client,
    credentials: Credentials,
}

impl fmt::Debug for Authorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorized")
            .field("client_id", &self.client.client_id())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Deref for Authorized {
    type Target = Credentials;

    fn deref(&self) -> &Credentials {
        &self.credentials
    }
}

impl Authorized {
    pub(crate) fn new(client: Client, credentials: Credentials) -> Self {
        Self {
            client,
            credentials,
        }
    }

    /// A login for credentials obtained earlier (read back from a store with
    /// [`Credentials::from_stored`], say).
    ///
    /// # Security
    /// Restore each stored pair once and keep only the newest: after a refresh, the previous
    /// refresh token dies. Two `Authorized` built from the same credentials that both refresh
    /// break the chain, and the user must log in again.
    pub fn from_credentials(client: &Client, credentials: Credentials) -> Self {
        Self::new(client.clone(), credentials)
    }

    /// The client this login belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Gives up the login, keeping the credentials.
    pub fn into_credentials(self) -> Credentials {
        self.credentials
    }

    /// Revokes the app's access to the user's data (`action=revoke`, signed): both tokens die.
    ///
    /// On failure the login is handed back in the error, still usable.
    pub async fn revoke(self) -> Result<(), RevokeError> {
        let span = info_span!("withings_oauth.revoke", client_id = self.client.client_id(), user_id = %self.user_id());
        match crate::api::token::revoke(&self.client, self.user_id())
            .instrument(span)
            .await
        {
            Ok(()) => {
                info!(user_id = %self.user_id(), "access revoked");
                Ok(())
            }
            Err(source) => Err(RevokeError {
                source,
                handed_back: HandBack::login(self),
            }),
        }
    }
}

/// A login handed back by a failed call, when it is still usable. Boxed: errors stay small.
#[derive(Default)]
pub(crate) struct HandBack(Option<Box<Authorized>>);

impl HandBack {
    /// Hands `login` back.
    pub(crate) fn login(login: Authorized) -> Self {
        Self(Some(Box::new(login)))
    }

    /// Nothing to hand back: the login is dead.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn get(&self) -> Option<&Authorized> {
        self.0.as_deref()
    }

    pub(crate) fn take(self) -> Option<Authorized> {
        self.0.map(|b| *b)
    }

    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for HandBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The login's own `Debug` hides its tokens; here only whether it was kept matters.
        f.write_str(if self.0.is_some() {
            "login kept"
        } else {
            "no login"
        })
    }
}

/// A failed revoke, handing the login back unchanged: the same shape as
/// [`RefreshError`](crate::RefreshError) ([`login`](Self::login), [`into_login`](Self::into_login)).
#[derive(Debug, thiserror::Error)]
#[error("revoking access failed: {source}")]
pub struct RevokeError {
    /// What went wrong.
    #[source]
    pub source: ApiError,
    handed_back: HandBack,
}

impl RevokeError {
    /// What went wrong.
    pub fn error(&self) -> &ApiError {
        &self.source
    }

    /// The login, unchanged.
    pub fn login(&self) -> Option<&Authorized> {
        self.handed_back.get()
    }

    /// Takes the login back, unchanged (always there after a failed revoke).
    pub fn into_login(self) -> Option<Authorized> {
        self.handed_back.take()
    }
}
