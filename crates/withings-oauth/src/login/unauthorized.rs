//! [`Unauthorized`]: a login that has not started, and the authorize URL it leads to.

use tracing::{Instrument, info, info_span};
use url::Url;

use super::authorize_request::{allowed_redirect_uri, authorize_url};
use super::authorized::Authorized;
use super::pending::PendingCallback;
use crate::api::error::ApiError;
use crate::config::{Client, ConfigError};
use crate::csrf::new_state;
use crate::scope::Scopes;

/// A login that has not started: the client, the scopes to ask for, and options.
#[derive(Debug)]
pub struct Unauthorized {
    client: Client,
    scopes: Scopes,
    pub(super) redirect_uri: Url,
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
        self.redirect_uri = allowed_redirect_uri(&self.client, redirect_uri)?;
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
        Ok(PendingCallback::new(
            self.client,
            self.scopes,
            self.redirect_uri,
            state,
            self.demo,
            Some(authorize_url),
        ))
    }

    /// Logs in Withings' demo account directly (`action=getdemoaccess`, signed), with no browser.
    pub async fn demo_access(self) -> Result<Authorized, ApiError> {
        let span = info_span!(
            "withings_oauth.demo_access",
            client_id = self.client.client_id()
        );
        let credentials = crate::api::token::demo_access(&self.client, &self.scopes)
            .instrument(span)
            .await?;
        Ok(Authorized::new(self.client, credentials))
    }
}
