//! [`ParkedLogin`]: a [`PendingCallback`] in a form that can be stored between the request that
//! starts a login and the request that receives its callback.

use std::fmt;

use chrono::{DateTime, Utc};
use url::Url;

use super::authorize_request::allowed_redirect_uri;
use super::pending::PendingCallback;
use crate::binding::{BindingHash, BrowserBinding, StateHash};
use crate::config::{Client, ConfigError};
use crate::scope::Scopes;
use crate::secret::CsrfState;

/// A login waiting for its callback, parked in a store by the web server that started it, so
/// that the request (and the server instance) receiving the callback can finish it.
///
/// Made by [`PendingCallback::park_revealing_state`]; turned back into a `PendingCallback`,
/// once, by [`ParkedLogin::restore`]. Not `Clone`: a pending-login store hands it out once
/// ([`PendingLoginStore::take`](crate::PendingLoginStore::take)), and completing what it
/// restores consumes it.
///
/// It holds: the `state` (a secret), the [`StateHash`] it is stored under, the
/// [`BindingHash`] of the browser that started it, the owner (the application's own id for
/// the user, opaque to this crate), the creation time, the redirect URI, the scopes and the
/// demo flag. Its `Debug` shows the creation time and the scopes only.
///
/// ```compile_fail,E0382
/// # fn f(parked: withings_oauth::ParkedLogin, client: &withings_oauth::Client) {
/// let pending = parked.restore(client);
/// let again = parked.restore(client); // use of moved value: restored once
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # fn f(parked: withings_oauth::ParkedLogin) {
/// let copy = parked.clone(); // ParkedLogin is not Clone
/// # }
/// ```
///
/// # Security
/// It reveals the `state`: whoever reads a parked login and the callback's code could finish
/// the login from another browser. Keep parked logins server-side, for minutes
/// ([`DEFAULT_PENDING_LOGIN_TTL`](crate::DEFAULT_PENDING_LOGIN_TTL)), and never log them.
pub struct ParkedLogin {
    state: CsrfState,
    state_hash: StateHash,
    browser: BindingHash,
    owner: String,
    created_at: DateTime<Utc>,
    redirect_uri: Url,
    scopes: Scopes,
    demo: bool,
}

impl fmt::Debug for ParkedLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParkedLogin")
            .field("created_at", &self.created_at)
            .field("scopes", &self.scopes.to_string())
            .finish_non_exhaustive()
    }
}

impl ParkedLogin {
    /// A parked login from its parts: as [`PendingCallback::park_revealing_state`] makes it, or
    /// as read back from a store's columns (see the accessors for what each one is). The
    /// [`StateHash`] is computed from `state`.
    pub fn from_stored(
        state: CsrfState,
        browser: BindingHash,
        owner: String,
        created_at: DateTime<Utc>,
        redirect_uri: Url,
        scopes: Scopes,
        demo: bool,
    ) -> Self {
        Self {
            state_hash: StateHash::of_state(&state),
            state,
            browser,
            owner,
            created_at,
            redirect_uri,
            scopes,
            demo,
        }
    }

    /// Turns it back into the login waiting for its callback, for `client` (the same
    /// application, possibly another server instance).
    ///
    /// Refused if the parked redirect URI is not one `client` may use (see
    /// [`Unauthorized::with_redirect_uri`](crate::Unauthorized::with_redirect_uri)).
    pub fn restore(self, client: &Client) -> Result<PendingCallback, ConfigError> {
        let redirect_uri = allowed_redirect_uri(client, self.redirect_uri)?;
        Ok(PendingCallback::new(
            client.clone(),
            self.scopes,
            redirect_uri,
            self.state,
            self.demo,
            None,
        ))
    }

    /// The key it is stored under: the hash of its `state`.
    pub fn state_hash(&self) -> &StateHash {
        &self.state_hash
    }

    /// The hash of the binding of the browser that started it.
    pub fn browser(&self) -> &BindingHash {
        &self.browser
    }

    /// The application's value for the user who started it (its own user id, say).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// When the login started.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The redirect URI of its authorize URL.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether Withings' demo user was asked for (`mode=demo`).
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// The `state`, for a store to write.
    ///
    /// # Security
    /// Write it only to the pending-login store; never log it.
    pub fn reveal_state(&self) -> &CsrfState {
        &self.state
    }
}

impl PendingCallback {
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
        ParkedLogin::from_stored(
            self.state,
            browser.hash(),
            owner.into(),
            Utc::now(),
            self.redirect_uri,
            self.scopes,
            self.demo,
        )
    }
}
