//! The interactive part of a login: showing the authorize page to a person and bringing back the
//! callback URL.
//!
//! A [`UserAgent`] is chosen at run time (`&dyn UserAgent`), so an application can offer several
//! front ends. A login with an agent has two steps:
//!
//! 1. [`UserAgent::prepare`] runs before the authorize URL is built. An agent that must bind
//!    something first (a loopback listener on port 0) does it here and returns the redirect URI
//!    that will really be used, with whatever it needs later stored in the [`Prepared`] value.
//! 2. [`UserAgent::run`] gets the authorize URL and returns the full callback URL the browser was
//!    sent to (`https://app.example/cb?code=..&state=..`). It does not check the callback: the
//!    flow does that ([`PendingCallback::complete`](crate::PendingCallback::complete)).
//!
//! Writing an agent only requires `run`; `prepare` defaults to "use the configured redirect URI".
//!
//! ```
//! use withings_oauth::user_agent::{AgentFuture, Prepared, UserAgent, UserAgentError};
//! use url::Url;
//!
//! /// Hands the authorize URL to some other system and waits for the callback.
//! struct Kiosk;
//!
//! impl UserAgent for Kiosk {
//!     fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
//!         Box::pin(async move {
//!             let _ = (prepared, authorize_url);
//!             Err(UserAgentError::Cancelled)
//!         })
//!     }
//! }
//! let agent: Box<dyn UserAgent> = Box::new(Kiosk);
//! # let _ = agent;
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

/// The boxed future returned by [`UserAgent`] methods: `Send`, so logins can run on any runtime
/// thread, and boxed, so the trait can be used as `dyn UserAgent`.
pub type AgentFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, UserAgentError>> + Send + 'a>>;

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
    /// Any other failure of a custom agent.
    #[error("the login front end failed: {0}")]
    Other(String),
}

/// A user agent for tests: it answers each login with the next scripted step.
///
/// Each step is a function of the authorize URL (so it can copy the `state`) returning the
/// callback URL or an error.
///
/// ```
/// use withings_oauth::user_agent::{ScriptedAgent, UserAgentError};
///
/// let agent = ScriptedAgent::new()
///     .then(|authorize_url| {
///         let state = authorize_url
///             .query_pairs()
///             .find(|(k, _)| k == "state")
///             .map(|(_, v)| v.into_owned())
///             .unwrap_or_default();
///         Ok(format!("https://app.example.com/cb?code=abc&state={state}").parse().unwrap())
///     })
///     .then(|_| Err(UserAgentError::Cancelled));
/// # let _ = agent;
/// ```
#[derive(Default)]
pub struct ScriptedAgent {
    steps: Mutex<VecDeque<ScriptedStep>>,
}

type ScriptedStep = Box<dyn FnOnce(Url) -> AgentFuture<'static, Url> + Send>;

impl ScriptedAgent {
    /// An agent with no steps: every login is [`UserAgentError::Cancelled`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step computed at once from the authorize URL.
    pub fn then<F>(self, step: F) -> Self
    where
        F: FnOnce(&Url) -> Result<Url, UserAgentError> + Send + 'static,
    {
        self.then_async(move |url| async move { step(&url) })
    }

    /// Adds a step that needs to wait for something (an HTTP call to a test server, say).
    pub fn then_async<F, Fut>(self, step: F) -> Self
    where
        F: FnOnce(Url) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Url, UserAgentError>> + Send + 'static,
    {
        self.steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(Box::new(move |url| Box::pin(step(url))));
        self
    }
}

impl fmt::Debug for ScriptedAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.steps.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("ScriptedAgent")
            .field("steps_left", &n)
            .finish()
    }
}

impl UserAgent for ScriptedAgent {
    fn run<'a>(&'a self, _prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        let step = self
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        let authorize_url = authorize_url.clone();
        Box::pin(async move {
            match step {
                Some(step) => step(authorize_url).await,
                None => Err(UserAgentError::Cancelled),
            }
        })
    }
}

/// Checks a candidate callback against the login whose authorize URL is `authorize_url`, without
/// consuming anything: the same checks as
/// [`PendingCallback::complete`](crate::PendingCallback::complete) makes before exchanging the
/// code (redirect target, single `state` and `code`, `state` compared in constant time, denial).
///
/// Agents that can keep waiting use it to ignore callbacks that are not this login's
/// ([`CallbackError::is_foreign`](crate::CallbackError::is_foreign)).
pub fn screen_callback(authorize_url: &Url, candidate: &Url) -> Result<(), crate::CallbackError> {
    let (state, redirect_uri) = crate::callback::authorize_url_parts(authorize_url)
        .ok_or(crate::CallbackError::MissingState)?;
    crate::callback::check_callback(candidate, &redirect_uri, &state).map(drop)
}

/// Whether `candidate` goes to `redirect_uri`: same scheme, host (compared case-insensitively),
/// port (an omitted port counts as the scheme's default) and path; query, fragment and user info
/// are not looked at.
///
/// This is the rule [`PendingCallback::complete`](crate::PendingCallback::complete) applies to a
/// callback before believing anything in it. An agent that watches navigations (an embedded
/// webview, say) uses it to recognise the one that carries the callback; it then hands the whole
/// URL to the flow, which checks `state` and `code`.
///
/// ```
/// use url::Url;
/// use withings_oauth::user_agent::is_redirect_target;
///
/// let redirect_uri = Url::parse("https://app.example.com/withings/callback")?;
/// let caught = Url::parse("https://APP.example.com:443/withings/callback?code=c&state=s")?;
/// assert!(is_redirect_target(&caught, &redirect_uri));
///
/// let elsewhere = Url::parse("https://app.example.com/withings/callback/?code=c")?;
/// assert!(!is_redirect_target(&elsewhere, &redirect_uri));
/// let other_port = Url::parse("https://app.example.com:8443/withings/callback")?;
/// assert!(!is_redirect_target(&other_port, &redirect_uri));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn is_redirect_target(candidate: &Url, redirect_uri: &Url) -> bool {
    crate::callback::same_target(candidate, redirect_uri)
}
