//! [`PendingCallback`]: a login waiting for its callback, completed once.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Instrument, info, info_span, warn};
use url::Url;

use super::authorize_request::authorize_url;
use super::authorized::Authorized;
use super::error::Error;
use crate::api::token::{Grant, request_token};
use crate::callback::check_callback;
use crate::config::Client;
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
    pub(super) client: Client,
    pub(super) scopes: Scopes,
    pub(super) redirect_uri: Url,
    pub(super) state: CsrfState,
    pub(super) demo: bool,
    /// Built by [`Unauthorized::begin`](crate::Unauthorized::begin); for a restored login, when
    /// first asked for (its browser already has it).
    authorize_url: OnceLock<Url>,
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
    /// `redirect_uri` must be one `client` may use (see
    /// [`allowed_redirect_uri`](super::authorize_request::allowed_redirect_uri)).
    pub(super) fn new(
        client: Client,
        scopes: Scopes,
        redirect_uri: Url,
        state: CsrfState,
        demo: bool,
        authorize_url: Option<Url>,
    ) -> Self {
        Self {
            client,
            scopes,
            redirect_uri,
            state,
            demo,
            authorize_url: authorize_url.map(OnceLock::from).unwrap_or_default(),
        }
    }

    /// The URL to open in a browser.
    ///
    /// # Security
    /// It holds this login's `state`. Show it to the user's browser only.
    pub fn authorize_url(&self) -> &Url {
        self.authorize_url.get_or_init(|| {
            authorize_url(
                &self.client,
                &self.scopes,
                &self.redirect_uri,
                self.state.expose_secret(),
                self.demo,
            )
        })
    }

    /// The redirect URI the authorize URL carries.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
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
