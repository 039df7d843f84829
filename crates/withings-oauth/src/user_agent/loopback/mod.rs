//! The system browser as user agent: a listener on a loopback address receives the redirect.
//!
//! [`LoopbackAgent`] here; [`BrowserOrPasteAgent`] (browser, then loopback or paste) in
//! `browser_or_paste`; binding the addresses in `bind`; the HTTP server and its limits in
//! `server`; its pages in `pages`. What the listener protects is told once, in
//! [`guide::loopback`](crate::guide::loopback).

use std::convert::Infallible;
use std::fmt;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tracing::debug;
use url::Url;

use crate::user_agent::agent::{AgentFuture, Prepared, UserAgent, UserAgentError};

mod bind;
mod browser_or_paste;
mod launch;
mod pages;
mod server;

use bind::{Listeners, bind, bind_exact};
pub use browser_or_paste::BrowserOrPasteAgent;
use launch::{DEFAULT_TIMEOUT, open_in_browser};
use server::{Listening, wait_for_callback};

type UrlCallback = Arc<dyn Fn(&Url) + Send + Sync>;

/// Opens the authorize page in the system browser and receives the redirect on a loopback
/// listener. See [`guide::loopback`](crate::guide::loopback) for what the listener accepts and
/// what it protects.
///
/// Only for redirect URIs `http://127.0.0.1:<port>/path`, `http://[::1]:<port>/path` and
/// `http://localhost:<port>/path`; any other is refused in [`UserAgent::prepare`] with
/// [`UserAgentError::UnsupportedRedirectUri`].
///
/// # Showing the URL
/// The callback given to [`on_authorize_url`](Self::on_authorize_url) gets the authorize URL
/// before the browser is opened, every time: print it as a fallback link, show a spinner, or
/// hand it to a browser of your own. Without a callback the agent writes nothing when the browser
/// opens, and one line with the URL to standard error when it can't open one (or
/// [`open_browser(false)`](Self::open_browser)), since the user could not log in otherwise.
#[derive(Clone)]
pub struct LoopbackAgent {
    open_browser: bool,
    timeout: Duration,
    on_authorize_url: Option<UrlCallback>,
}

impl Default for LoopbackAgent {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LoopbackAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopbackAgent")
            .field("open_browser", &self.open_browser)
            .field("timeout", &self.timeout)
            .field("on_authorize_url", &self.on_authorize_url.is_some())
            .finish()
    }
}

impl LoopbackAgent {
    /// Opens the system browser, waits up to 5 minutes.
    pub fn new() -> Self {
        Self {
            open_browser: true,
            timeout: DEFAULT_TIMEOUT,
            on_authorize_url: None,
        }
    }

    /// Whether to open the system browser (default `true`). The [`webbrowser`] crate chooses
    /// it, and honours the `BROWSER` environment variable. The browser is given a one-time link
    /// on the listener, not the authorize URL (see [`guide::loopback`](crate::guide::loopback)).
    pub fn open_browser(mut self, open: bool) -> Self {
        self.open_browser = open;
        self
    }

    /// How long to wait for the callback, from the moment the authorize URL is shown
    /// (default 5 minutes). Then the login ends with [`UserAgentError::TimedOut`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Called with the authorize URL when it is ready, before the browser is opened.
    ///
    /// # Security
    /// The URL holds the login's `state`: show it to the user only.
    pub fn on_authorize_url(mut self, f: impl Fn(&Url) + Send + Sync + 'static) -> Self {
        self.on_authorize_url = Some(Arc::new(f));
        self
    }

    /// Shows the URL, then never finishes: it runs beside the listener.
    async fn show(&self, authorize_url: &Url, start: &SecretString) -> Infallible {
        if let Some(f) = &self.on_authorize_url {
            f(authorize_url);
        }
        let opened = if self.open_browser {
            open_in_browser(start).await
        } else {
            Err(io::Error::other("opening a browser is disabled"))
        };
        if let Err(e) = opened {
            debug!(error = %e, "browser not opened");
            if self.on_authorize_url.is_none() {
                let _ = writeln!(
                    io::stderr(),
                    "Open this address in a web browser to log in to Withings: {authorize_url}"
                );
            }
        }
        std::future::pending().await
    }
}

impl UserAgent for LoopbackAgent {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        Box::pin(async move {
            let (redirect_uri, listeners) = bind(redirect_uri).await?;
            Ok(Prepared::with_resource(redirect_uri, listeners))
        })
    }

    fn run<'a>(&'a self, mut prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        Box::pin(async move {
            let redirect_uri = prepared.redirect_uri().clone();
            let listeners = match prepared.take_resource::<Listeners>() {
                Some(listeners) => listeners,
                None => bind_exact(&redirect_uri).await?,
            };
            let (listening, start) = Listening::new(&listeners, redirect_uri, authorize_url)?;
            let wait = wait_for_callback(listeners, listening);
            let both = async {
                tokio::select! {
                    result = wait => result,
                    never = self.show(authorize_url, &start) => match never {},
                }
            };
            tokio::time::timeout(self.timeout, both)
                .await
                .unwrap_or(Err(UserAgentError::TimedOut(self.timeout)))
        })
    }
}

#[cfg(test)]
mod tests;
