//! The [`UserAgent`] trait, what `prepare` hands to `run` ([`Prepared`]), and [`UserAgentError`].

use std::any::Any;
use std::fmt;
use std::time::Duration;

use url::Url;

use crate::future::BoxFuture;

/// The future returned by [`UserAgent`] methods: `Send`, so logins can run on any runtime
/// thread, and boxed, so the trait can be used as `dyn UserAgent`.
pub type AgentFuture<'a, T> = BoxFuture<'a, Result<T, UserAgentError>>;

/// A login front end: system browser, embedded webview, manual paste, or your own.
pub trait UserAgent: Send + Sync {
    /// Gets ready for one login, before the authorize URL is built.
    ///
    /// Returns the redirect URI the authorize URL must carry. The default keeps `redirect_uri`
    /// unchanged. An agent may only change the port of a loopback redirect URI whose port is 0
    /// ("any free port"); the flow refuses any other change.
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        Box::pin(async move { Ok(Prepared::new(redirect_uri.clone())) })
    }

    /// Shows `authorize_url` to the user and returns the full URL the browser was redirected to.
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url>;
}

impl<T: UserAgent + ?Sized> UserAgent for &T {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        (**self).prepare(redirect_uri)
    }
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        (**self).run(prepared, authorize_url)
    }
}

impl<T: UserAgent + ?Sized> UserAgent for Box<T> {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        (**self).prepare(redirect_uri)
    }
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        (**self).run(prepared, authorize_url)
    }
}

impl<T: UserAgent + ?Sized> UserAgent for std::sync::Arc<T> {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        (**self).prepare(redirect_uri)
    }
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        (**self).run(prepared, authorize_url)
    }
}

/// What [`UserAgent::prepare`] hands to [`UserAgent::run`]: the redirect URI in use and, for
/// agents that need it, something they set up (a bound listener, say).
pub struct Prepared {
    redirect_uri: Url,
    resource: Option<Box<dyn Any + Send>>,
}

impl Prepared {
    /// Prepared with nothing but the redirect URI.
    pub fn new(redirect_uri: Url) -> Self {
        Self {
            redirect_uri,
            resource: None,
        }
    }

    /// Prepared with a resource the agent takes back in `run` with [`Prepared::take_resource`].
    pub fn with_resource<R: Any + Send>(redirect_uri: Url, resource: R) -> Self {
        Self {
            redirect_uri,
            resource: Some(Box::new(resource)),
        }
    }

    /// The redirect URI the authorize URL carries.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// Takes the resource stored by [`Prepared::with_resource`], if it is an `R`.
    pub fn take_resource<R: Any + Send>(&mut self) -> Option<R> {
        let boxed = self.resource.take()?;
        match boxed.downcast::<R>() {
            Ok(resource) => Some(*resource),
            Err(other) => {
                self.resource = Some(other);
                None
            }
        }
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("has_resource", &self.resource.is_some())
            .finish()
    }
}

/// Why a user agent could not bring back a callback.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserAgentError {
    /// The user closed the window, pressed Ctrl-C or otherwise gave up.
    #[error("the login was cancelled by the user: run the login again to retry")]
    Cancelled,
    /// No callback arrived in time.
    #[error("no login callback arrived within {}s: run the login again and finish it sooner", .0.as_secs())]
    TimedOut(Duration),
    /// The user gave up after input that was not a callback, too many times.
    #[error(
        "no valid redirect URL after {attempts} attempts: copy the whole address from the browser's address bar after allowing access, then run the login again"
    )]
    TooManyAttempts {
        /// How many inputs were refused.
        attempts: u32,
    },
    /// The agent does not support this redirect URI.
    #[error("this login front end cannot use the redirect URI: {reason}")]
    UnsupportedRedirectUri {
        /// What is wrong with it, and what to use instead.
        reason: String,
    },
    /// Reading, writing, binding or launching failed.
    #[error("the login front end failed: {context}: {source}")]
    Io {
        /// What the agent was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The loopback listener's one-time start link was asked for a second time: another
    /// program or user of this machine has it, and with it this login's `state`. The login was
    /// stopped so that no one else's Withings account can end up linked.
    #[error(
        "the one-time login link was opened a second time, by another program or user of this machine; the login was stopped so that no other account can be linked: start the login again"
    )]
    StartLinkReused,
    /// Any other failure of a custom agent.
    #[error("the login front end failed: {0}")]
    Other(String),
}
