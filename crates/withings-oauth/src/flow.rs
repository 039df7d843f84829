//! The login as types: [`Unauthorized`] → [`PendingCallback`] → [`Authorized`].
//!
//! Each step consumes the previous one, so a callback can't be completed twice and a refresh
//! can't be tried before login. See the [crate docs](crate#the-flow-as-types) for the diagram.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use tracing::{Instrument, info, info_span, warn};
use url::Url;

use crate::callback::check_callback;
use crate::config::{Client, is_loopback};
use crate::credentials::{Credentials, UserId};
use crate::error::{ApiError, ConfigError, Error};
use crate::scope::Scopes;
use crate::state::new_state;
use crate::token::{Grant, request_token};
use crate::user_agent::UserAgent;

/// A login that has not started: the client, the scopes to ask for, and options.
#[derive(Debug)]
pub struct Unauthorized {
    client: Client,
    scopes: Scopes,
    redirect_uri: Url,
    demo: bool,
}

impl Unauthorized {
    /// A login for `client` asking for `scopes`.
    pub fn new(client: &Client, scopes: Scopes) -> Self {
        Self {
            client: client.clone(),
            scopes,
            redirect_uri: client.redirect_uri().clone(),
            demo: false,
        }
    }

    /// Asks Withings to log in its demo user (`mode=demo`).
    pub fn demo_mode(mut self) -> Self {
        self.demo = true;
        self
    }

    /// Uses `redirect_uri` instead of the configured one. Only the port of a loopback redirect
    /// URI configured with port 0 may change (RFC 8252 §7.3); anything else is refused. A
    /// loopback redirect URI without a port is port 80, as a server that compares redirect URIs
    /// exactly reads it, so its port may not change either.
    pub fn with_redirect_uri(mut self, redirect_uri: Url) -> Result<Self, ConfigError> {
        let configured = self.client.redirect_uri();
        if &redirect_uri != configured {
            let mut same_but_port = redirect_uri.clone();
            // Port 0: any free port (RFC 8252 §7.3), see the loopback agent.
            let port_free = is_loopback(configured) && configured.port() == Some(0);
            if !port_free
                || same_but_port.set_port(configured.port()).is_err()
                || &same_but_port != configured
            {
                return Err(ConfigError::InvalidRedirectUri(format!(
                    "{redirect_uri} differs from the configured {configured}; only the port of a loopback redirect URI with port 0 may change"
                )));
            }
        }
        self.redirect_uri = redirect_uri;
        Ok(self)
    }

    /// Makes a fresh `state` and the authorize URL: the login now waits for its callback.
    pub fn begin(self) -> Result<PendingCallback, ConfigError> {
        if self.scopes.is_empty() {
            return Err(ConfigError::NoScopes);
        }
        let state = new_state()?;
        let authorize_url = authorize_url(
            &self.client,
            &self.scopes,
            &self.redirect_uri,
            state.expose_secret(),
            self.demo,
        );
        info!(
            client_id = self.client.client_id(),
            scopes = %self.scopes,
            demo = self.demo,
            "authorize URL built"
        );
        Ok(PendingCallback {
            client: self.client,
            scopes: self.scopes,
            redirect_uri: self.redirect_uri,
            state,
            authorize_url,
        })
    }

    /// Logs in Withings' demo account directly (`action=getdemoaccess`, signed), with no browser.
    pub async fn demo_access(self) -> Result<Authorized, ApiError> {
        let span = info_span!(
            "withings_oauth.demo_access",
            client_id = self.client.client_id()
        );
        let credentials = crate::token::demo_access(&self.client, &self.scopes)
            .instrument(span)
            .await?;
        Ok(Authorized::new(self.client, credentials))
    }
}

/// Builds `{account}/oauth2_user/authorize2?...` as the protocol says.
pub(crate) fn authorize_url(
    client: &Client,
    scopes: &Scopes,
    redirect_uri: &Url,
    state: &str,
    demo: bool,
) -> Url {
    let mut url = client.account_endpoint("oauth2_user/authorize2");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client.client_id())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("scope", &scopes.to_string())
            .append_pair("state", state);
        if demo {
            q.append_pair("mode", "demo");
        }
    }
    url
}

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
    state: SecretString,
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
                    info!(user_id = %credentials.user_id, scopes = %credentials.scopes, "code exchanged");
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

/// A logged-in user: the client and the user's [`Credentials`].
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

impl Authorized {
    pub(crate) fn new(client: Client, credentials: Credentials) -> Self {
        Self {
            client,
            credentials,
        }
    }

    /// Restores a login from credentials saved earlier (see
    /// [`Credentials::reveal_for_storage`] and [`Credentials::from_stored`]).
    ///
    /// # Security
    /// Restore each stored pair once and keep only the newest: after a refresh, the previous
    /// refresh token dies. Two `Authorized` built from the same credentials that both refresh
    /// break the chain, and the user must log in again.
    pub fn restore_from_stored(client: &Client, credentials: Credentials) -> Self {
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

    /// The user.
    pub fn user_id(&self) -> UserId {
        self.credentials.user_id
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        &self.credentials.access_token
    }

    pub(crate) fn refresh_token(&self) -> &SecretString {
        &self.credentials.refresh_token
    }

    /// When the access token expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.credentials.expires_at
    }

    /// Whether the access token expires within `margin` of `now`.
    pub fn expires_within(&self, margin: TimeDelta, now: DateTime<Utc>) -> bool {
        self.credentials.expires_within(margin, now)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.credentials.scopes
    }

    /// Refreshes the tokens; see [`crate::refresh::refresh`].
    pub async fn refresh(self) -> Result<Authorized, crate::refresh::RefreshError> {
        crate::refresh::refresh(self).await
    }

    /// Revokes the app's access to the user's data (`action=revoke`, signed): both tokens die.
    ///
    /// On failure the login is handed back in the error, still usable.
    pub async fn revoke(self) -> Result<(), RevokeError> {
        let span = info_span!("withings_oauth.revoke", client_id = self.client.client_id(), user_id = %self.user_id());
        match crate::token::revoke(&self.client, self.user_id())
            .instrument(span)
            .await
        {
            Ok(()) => {
                info!(user_id = %self.user_id(), "access revoked");
                Ok(())
            }
            Err(source) => Err(RevokeError {
                source,
                authorized: Box::new(self),
            }),
        }
    }
}

/// A failed revoke, handing the login back.
#[derive(Debug, thiserror::Error)]
#[error("revoking access failed: {source}")]
pub struct RevokeError {
    /// What went wrong.
    #[source]
    pub source: ApiError,
    authorized: Box<Authorized>,
}

impl RevokeError {
    /// The login, unchanged.
    pub fn into_authorized(self) -> Authorized {
        *self.authorized
    }
}

/// Logs in with `agent` in one call: prepare the agent, build the authorize URL, wait for the
/// callback, check it and exchange the code.
///
/// ```no_run
/// # async fn run(agent: &dyn withings_oauth::UserAgent) -> Result<(), Box<dyn std::error::Error>> {
/// use withings_oauth::{Client, Scope, Scopes, authorize};
///
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback")
///     .build()?;
/// // `agent`: any front end, chosen at run time (browser, webview, paste...).
/// let authorized = authorize(&client, Scopes::from(Scope::Metrics), agent).await?;
/// println!("logged in user {}", authorized.user_id());
/// # Ok(())
/// # }
/// ```
pub async fn authorize<A: UserAgent + ?Sized>(
    client: &Client,
    scopes: Scopes,
    agent: &A,
) -> Result<Authorized, Error> {
    login(Unauthorized::new(client, scopes), agent).await
}

/// Like [`authorize`], starting from a configured [`Unauthorized`] (demo mode, say).
pub async fn login<A: UserAgent + ?Sized>(
    unauthorized: Unauthorized,
    agent: &A,
) -> Result<Authorized, Error> {
    let prepared = agent.prepare(&unauthorized.redirect_uri).await?;
    let pending = unauthorized
        .with_redirect_uri(prepared.redirect_uri().clone())?
        .begin()?;
    let authorize_url = pending.authorize_url().clone();
    let callback = agent.run(prepared, &authorize_url).await?;
    pending.complete(&callback).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client(redirect: &str) -> Client {
        Client::builder()
            .client_id("cid")
            .client_secret("csecret")
            .redirect_uri(redirect)
            .build()
            .unwrap()
    }

    #[test]
    fn authorize_url_has_exactly_the_protocol_parameters() {
        let c = client("https://app.example.com/cb");
        let pending = Unauthorized::new(&c, "user.metrics,user.activity".parse().unwrap())
            .demo_mode()
            .begin()
            .unwrap();
        let url = pending.authorize_url();
        assert_eq!(
            url.origin().ascii_serialization(),
            "https://account.withings.com"
        );
        assert_eq!(url.path(), "/oauth2_user/authorize2");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "mode"
            ]
        );
        assert_eq!(pairs[0].1, "code");
        assert_eq!(pairs[2].1, "https://app.example.com/cb");
        assert_eq!(pairs[3].1, "user.metrics,user.activity");
        assert!(pairs[4].1.len() >= 22);
        assert_eq!(pairs[5].1, "demo");
        assert!(!format!("{pending:?}").contains(&pairs[4].1));
    }

    #[test]
    fn empty_scopes_are_refused() {
        let c = client("https://app.example.com/cb");
        assert_eq!(
            Unauthorized::new(&c, Scopes::empty()).begin().unwrap_err(),
            ConfigError::NoScopes
        );
    }

    #[test]
    fn only_a_free_loopback_port_may_change() {
        let c = client("http://127.0.0.1:0/cb");
        let ok = Unauthorized::new(&c, Scopes::all())
            .with_redirect_uri("http://127.0.0.1:4567/cb".parse().unwrap());
        assert!(ok.is_ok());
        let bad = Unauthorized::new(&c, Scopes::all())
            .with_redirect_uri("http://127.0.0.1:4567/other".parse().unwrap());
        assert!(bad.is_err());
        for fixed in [
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80/cb",
        ] {
            let bad = Unauthorized::new(&client(fixed), Scopes::all())
                .with_redirect_uri("http://127.0.0.1:4567/cb".parse().unwrap());
            assert!(bad.is_err(), "{fixed}");
        }
        let https = client("https://app.example.com/cb");
        let bad = Unauthorized::new(&https, Scopes::all())
            .with_redirect_uri("https://evil.example.com/cb".parse().unwrap());
        assert!(bad.is_err());
    }

    proptest! {
        #[test]
        fn authorize_url_round_trips(
            scopes in proptest::collection::vec("[a-z][a-z._-]{0,15}", 1..5),
            state in "\\PC{1,60}",
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5}){1,2}",
            path in "(/[a-zA-Z0-9 ._~%!$&'()*+,;=:@-]{0,12}){1,3}",
            query in proptest::option::of("[a-z]{1,5}=[a-zA-Z0-9 &=?/]{0,10}"),
            demo: bool,
        ) {
            let mut redirect = Url::parse(&format!("https://{host}")).unwrap();
            redirect.set_path(&path);
            if let Some(q) = &query { redirect.set_query(Some(q)); }
            let c = client(redirect.as_str());
            let scopes: Scopes = scopes.iter().map(|s| s.parse().unwrap()).collect();
            let url = authorize_url(&c, &scopes, c.redirect_uri(), &state, demo);
            let back: Vec<(String, String)> = Url::parse(url.as_str()).unwrap().query_pairs().into_owned().collect();
            let get = |k: &str| back.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
            prop_assert_eq!(get("response_type"), vec!["code".to_owned()]);
            prop_assert_eq!(get("client_id"), vec!["cid".to_owned()]);
            prop_assert_eq!(get("redirect_uri"), vec![c.redirect_uri().to_string()]);
            prop_assert_eq!(get("state"), vec![state.clone()]);
            let got_scopes: Scopes = get("scope")[0].parse().unwrap();
            prop_assert_eq!(got_scopes, scopes);
            prop_assert_eq!(get("mode").len(), usize::from(demo));
        }
    }
}
