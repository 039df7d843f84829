//! [`BrowserOrPasteAgent`]: the system browser, and whichever comes first of the loopback redirect
//! or a paste.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use tracing::debug;
use url::Url;

use super::bind::{Listeners, bind, listen_addr};
use super::launch::{DEFAULT_TIMEOUT, open_in_browser};
use super::server::{Listening, wait_for_callback};
use crate::user_agent::agent::{AgentFuture, Prepared, UserAgent, UserAgentError};
use crate::user_agent::paste::PasteAgent;
use crate::user_agent::texts::{Intro, instructions};

/// How long [`BrowserOrPasteAgent`] waits for the browser to start before showing the prompt.
const BROWSER_START_WAIT: Duration = Duration::from_secs(5);

/// Opens the system browser and accepts whichever comes first: the redirect on a loopback
/// listener (only when the redirect URI is a loopback one) or the address the user pastes, read
/// as [`PasteAgent`] does.
///
/// This is the agent for apps that registered an https callback: the browser shows the login,
/// and its final address, which the app can't receive itself, is pasted back.
///
/// With a listener, the browser is opened at the listener's one-time start link, and the
/// instructions show that link too, never the authorize URL: no `state` in the output. Without
/// one (an https redirect URI), the browser is opened at the authorize URL itself, whose `state`
/// is then on the browser's command line while it starts, and the instructions show it, since
/// the user may have to open it (see [`guide::loopback`](crate::guide::loopback)).
/// A loopback redirect URI whose fixed port another program holds is refused in
/// [`UserAgent::prepare`], as [`LoopbackAgent`](crate::LoopbackAgent) refuses it: the browser
/// would send that program the code.
///
/// The login ends with the first callback, end of input, too many refused inputs, or the
/// [`timeout`](Self::timeout).
pub struct BrowserOrPasteAgent {
    paste: PasteAgent,
    open_browser: bool,
    timeout: Duration,
}

impl fmt::Debug for BrowserOrPasteAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserOrPasteAgent")
            .field("paste", &self.paste)
            .field("open_browser", &self.open_browser)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BrowserOrPasteAgent {
    /// Reads pasted addresses from standard input and writes to standard error, like
    /// [`PasteAgent::stdio`].
    pub fn stdio() -> Self {
        Self::from_paste(PasteAgent::stdio())
    }

    /// Reads pasted addresses from `reader`, writes instructions to `writer`, like
    /// [`PasteAgent::new`].
    pub fn new<R, W>(reader: R, writer: W) -> Self
    where
        R: tokio::io::AsyncBufRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Self::from_paste(PasteAgent::new(reader, writer))
    }

    fn from_paste(paste: PasteAgent) -> Self {
        Self {
            paste,
            open_browser: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Whether to open the system browser (default `true`); when not, or when it can't be
    /// opened, the instructions ask the user to open the URL.
    pub fn open_browser(mut self, open: bool) -> Self {
        self.open_browser = open;
        self
    }

    /// How many refused pastes end the login; see [`PasteAgent::max_attempts`].
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.paste = self.paste.max_attempts(attempts);
        self
    }

    /// How long the whole login may take, from opening the browser to the callback or the paste
    /// (default 5 minutes). Then the listener and the prompt end, and the login ends with
    /// [`UserAgentError::TimedOut`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn wait(
        &self,
        listeners: Option<Listeners>,
        redirect_uri: Url,
        authorize_url: &Url,
    ) -> Result<Url, UserAgentError> {
        // The listener's state and its start link, when there is a listener.
        let served = match &listeners {
            Some(l) => Some(Listening::new(l, redirect_uri.clone(), authorize_url)?),
            None => None,
        };
        let opened = self.open_browser && {
            let target = match &served {
                Some((_, start)) => SecretString::from(start.expose_secret()),
                None => SecretString::from(authorize_url.as_str()),
            };
            match tokio::time::timeout(BROWSER_START_WAIT, open_in_browser(&target)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    debug!(error = %e, "browser not opened");
                    false
                }
                // Still starting (a text browser in this terminal, say): assume it opened.
                Err(_) => true,
            }
        };
        let listening = served.is_some();
        let intro = if opened {
            Intro::BrowserOpened { listening }
        } else {
            Intro::BrowserNotOpened { listening }
        };
        // With a listener the user is shown its one-time start link, never the authorize URL:
        // the output (a terminal's scrollback, a CI log, a shared screen) gets no `state`.
        let address = match &served {
            Some((_, start)) => start.expose_secret(),
            None => authorize_url.as_str(),
        };
        let intro = instructions(address, &redirect_uri, intro);
        let paste = self
            .paste
            .read_callback(&intro, authorize_url, &redirect_uri);
        let (Some(listeners), Some((listening, _))) = (listeners, served) else {
            return paste.await;
        };
        tokio::select! {
            pasted = paste => pasted,
            received = wait_for_callback(listeners, listening) => {
                if received.is_ok() {
                    self.paste.note("\nThe browser sent the login back; nothing to paste.\n").await;
                }
                received
            }
        }
    }
}

impl UserAgent for BrowserOrPasteAgent {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        Box::pin(async move {
            if listen_addr(redirect_uri).is_err() {
                return Ok(Prepared::new(redirect_uri.clone()));
            }
            // A fixed port another program holds is refused, as `LoopbackAgent` does: the
            // browser would send the code to that program.
            let (redirect_uri, listeners) = bind(redirect_uri).await?;
            Ok(Prepared::with_resource(redirect_uri, listeners))
        })
    }

    fn run<'a>(&'a self, mut prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        Box::pin(async move {
            let redirect_uri = prepared.redirect_uri().clone();
            let listeners = prepared.take_resource::<Listeners>();
            let wait = self.wait(listeners, redirect_uri, authorize_url);
            match tokio::time::timeout(self.timeout, wait).await {
                Ok(result) => result,
                Err(_) => {
                    self.paste
                        .note(&format!(
                            "\nNo login came back within {} seconds; the login timed out.\n",
                            self.timeout.as_secs()
                        ))
                        .await;
                    Err(UserAgentError::TimedOut(self.timeout))
                }
            }
        })
    }
}
