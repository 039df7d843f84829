//! [`ScriptedAgent`]: a user agent for tests that answers each login with the next scripted
//! step.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use url::Url;

use super::agent::{AgentFuture, Prepared, UserAgent, UserAgentError};

/// A user agent for tests: it answers each login with the next scripted step.
///
/// Each step is a function of the authorize URL (so it can copy the `state`) returning the
/// callback URL or an error.
///
/// ```
/// use withings_oauth::{ScriptedAgent, UserAgentError};
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
