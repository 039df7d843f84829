//! [`PendingCallback`]: a login waiting for its callback, completed once.

use std::fmt;

use tracing::{Instrument, info, info_span, warn};
use url::Url;

use super::authorized::Authorized;
use super::error::Error;
use super::parked::ParkedLogin;
use super::unauthorized::{Unauthorized, authorize_url};
use crate::api::token::{Grant, request_token};
use crate::binding::BrowserBinding;
use crate::callback::check_callback;
use crate::config::{Client, ConfigError};
use crate::scope::Scopes;
use crate::secret::CsrfState;

/// A login waiting for its callback. Not `Clone`: completing it consumes it, so a callback can
/// be used once.
///
/// ```compile_fail,E0599
/// # fn f(pending: withings_oauth::PendingCallback) {
/// let copy = pending.clone(); // PendingCallback is not Clone
/// # }
/// ```
///
/// ```compile_fail,E0382
/// # async fn f(pending: withings_oauth::PendingCallback, url: url::Url) {
/// let _ = pending.complete(&url).await;
/// let _ = pending.complete(&url).await; // use of moved value
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # async fn f(pending: withings_oauth::PendingCallback) {
/// let _ = pending.refresh().await; // only an Authorized can be refreshed
/// # }
/// ```
pub struct PendingCallback {
    client: Client,
    scopes: Scopes,
    redirect_uri: Url,
    state: CsrfState,
    authorize_url: Url,
}

impl fmt::Debug for PendingCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCallback")
            .field("client_id", &self.client.client_id())
            .field("scopes", &self.scopes.to_string())
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("state", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl PendingCallback {
    pub(super) fn new(
        client: Client,
        scopes: Scopes,
        redirect_uri: Url,
        state: CsrfState,
        authorize_url: Url,
    ) -> Self {
        Self {
            client,
            scopes,
            redirect_uri,
            state,
            authorize_url,
        }
    }

    /// The URL to open in a browser.
    ///
    /// # Security
    /// It holds this login's `state`. Show it to the user's browser only.
    pub fn authorize_url(&self) -> &Url {
        &self.authorize_url
    }

    /// The redirect URI the authorize URL carries.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Parks this login for a web server: the request that receives the callback (maybe on
    /// another instance) takes it from a
    /// [`PendingLoginStore`](crate::PendingLoginStore) and [restores](ParkedLogin::restore) it.
    ///
    /// `owner` is the application's value for the user logging in (its own user id, say),
    /// handed back with the login; `browser` binds the login to the browser that started it
    /// (the value of a cookie sent to that browser, see [`BrowserBinding`]).
    ///
    /// # Security
    /// The parked login holds the `state`: see [`ParkedLogin`].
    pub fn park_revealing_state(
        self,
        owner: impl Into<String>,
        browser: &BrowserBinding,
    ) -> ParkedLogin {
        let demo = self
            .authorize_url
            .query_pairs()
            .any(|(k, v)| k == "mode" && v == "demo");
        ParkedLogin::from_stored(
            self.state,
            browser.hash(),
            owner.into(),
            chrono::Utc::now(),
            self.redirect_uri,
            self.scopes,
            demo,
        )
    }

    /// The login [`ParkedLogin::restore`] gives back: the same checks on the redirect URI as
    /// when a login begins, and the same authorize URL.
    pub(super) fn from_parked(
        client: &Client,
        scopes: Scopes,
        redirect_uri: Url,
        state: CsrfState,
        demo: bool,
    ) -> Result<Self, ConfigError> {
        let redirect_uri = Unauthorized::new(client, scopes.clone())
            .with_redirect_uri(redirect_uri)?
            .redirect_uri;
        let authorize_url =
            authorize_url(client, &scopes, &redirect_uri, state.expose_secret(), demo);
        Ok(Self::new(
            client.clone(),
            scopes,
            redirect_uri,
            state,
            authorize_url,
        ))
    }

    /// Checks the full callback URL and, if it is this login's, exchanges its code for tokens.
    ///
    /// The code is valid 30 seconds: call this as soon as the callback arrives.
    pub async fn complete(self, callback: &Url) -> Result<Authorized, Error> {
        let span = info_span!(
            "withings_oauth.complete",
            client_id = self.client.client_id()
        );
        async move {
            let code = match check_callback(callback, &self.redirect_uri, self.state.expose_secret()) {
                Ok(code) => {
                    info!("callback accepted");
                    code
                }
                Err(e) => {
                    warn!(reason = %e, "callback rejected");
                    return Err(Error::Callback(e));
                }
            };
            let grant = Grant::Code {
                code: &code,
                redirect_uri: &self.redirect_uri,
            };
            match request_token(&self.client, grant, &self.scopes).await {
                Ok(credentials) => {
                    info!(user_id = %credentials.user_id(), scopes = %credentials.scopes(), "code exchanged");
                    Ok(Authorized::new(self.client, credentials))
                }
                Err(e) => {
                    warn!(error = %e, "code exchange failed");
                    Err(Error::Api(e))
                }
            }
        }
        .instrument(span)
        .await
    }
}
