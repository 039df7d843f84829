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
//! use withings_oauth::{AgentFuture, Prepared, UserAgent, UserAgentError};
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

mod agent;
#[cfg(feature = "loopback")]
pub(crate) mod loopback;
pub(crate) mod paste;
mod scripted;
mod texts;

pub use agent::{AgentFuture, Prepared, UserAgent, UserAgentError};
pub use scripted::ScriptedAgent;
