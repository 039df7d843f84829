//! The user agents the CLI offers, and the one the demo uses to play the user.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use url::Url;
use withings_oauth::PasteAgent;
use withings_oauth::is_loopback;
use withings_oauth::{AgentFuture, Prepared, UserAgentError};
use withings_oauth::{BrowserOrPasteAgent, LoopbackAgent};
use withings_oauth::{Client, UserAgent};

use crate::cli::{AgentArg, LoginArgs};
use crate::error::CliError;
use crate::out::note;

/// The agent `--agent` asks for, and the spinner it may show (finish it after the login).
pub(crate) fn choose(
    args: &LoginArgs,
    client: &Client,
) -> Result<(Box<dyn UserAgent>, Spinner), CliError> {
    let spinner = Spinner::default();
    let loopback = is_loopback(client.redirect_uri());
    let agent: Box<dyn UserAgent> = match args.agent {
        AgentArg::Paste => Box::new(PasteAgent::stdio()),
        AgentArg::Auto if !loopback => Box::new(
            BrowserOrPasteAgent::stdio()
                .open_browser(!args.no_browser)
                .timeout(Duration::from_secs(args.timeout)),
        ),
        AgentArg::Browser if !loopback => {
            return Err(CliError::config(format!(
                "--agent browser needs a loopback redirect URI such as http://127.0.0.1:0/callback, registered for the app; {} is not one: use --agent auto or --agent paste",
                client.redirect_uri()
            )));
        }
        AgentArg::Auto | AgentArg::Browser => Box::new(browser_agent(
            !args.no_browser,
            Duration::from_secs(args.timeout),
            spinner.clone(),
        )),
        AgentArg::Webview => webview(Duration::from_secs(args.timeout))?,
    };
    Ok((agent, spinner))
}

/// The system browser with a loopback listener, and a countdown on stderr.
///
/// The authorize URL holds the login's `state`, so it is shown only when the user must copy it
/// by hand: with `--no-browser`, or when no browser could be opened (the loopback agent prints
/// it then). An opened browser gets the listener's one-time link and the terminal shows no URL.
pub(crate) struct BrowserAgent {
    loopback: LoopbackAgent,
    open_browser: bool,
    timeout: Duration,
    spinner: Spinner,
}

fn browser_agent(open_browser: bool, timeout: Duration, spinner: Spinner) -> BrowserAgent {
    let loopback = LoopbackAgent::new()
        .open_browser(open_browser)
        .timeout(timeout);
    let loopback = if open_browser {
        loopback
    } else {
        let spinner = spinner.clone();
        loopback.on_authorize_url(move |url| {
            note!("Open this address in a browser to log in to Withings:");
            note!("\n  {url}\n");
            spinner.start(timeout);
        })
    };
    BrowserAgent {
        loopback,
        open_browser,
        timeout,
        spinner,
    }
}

impl UserAgent for BrowserAgent {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        self.loopback.prepare(redirect_uri)
    }

    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        if self.open_browser {
            note!("Log in to Withings in the browser window that opens.");
            self.spinner.start(self.timeout);
        }
        self.loopback.run(prepared, authorize_url)
    }
}

/// The system browser, for `demo --browser`.
pub(crate) fn demo_browser() -> (BrowserAgent, Spinner) {
    let spinner = Spinner::default();
    let agent = browser_agent(true, Duration::from_secs(300), spinner.clone());
    (agent, spinner)
}

#[cfg(feature = "webview")]
fn webview(timeout: Duration) -> Result<Box<dyn UserAgent>, CliError> {
    Ok(Box::new(
        withings_oauth_webview::WebviewAgent::new().timeout(timeout),
    ))
}

#[cfg(not(feature = "webview"))]
fn webview(_timeout: Duration) -> Result<Box<dyn UserAgent>, CliError> {
    Err(CliError::config(
        "this withings-oauth was built without the embedded window: rebuild it with \
         `cargo install withings-oauth-cli --features webview` (on Linux this needs the GTK and \
         WebKitGTK development packages, e.g. libwebkit2gtk-4.1-dev), or use --agent browser or --agent paste",
    ))
}

/// A spinner with the seconds left, on stderr, only when stderr is a terminal.
#[derive(Clone, Default)]
pub(crate) struct Spinner {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Spinner {
    fn start(&self, timeout: Duration) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let style = ProgressStyle::with_template(
            "{spinner} waiting for the browser ({left} left, Ctrl-C to give up)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "left",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let left = timeout.saturating_sub(state.elapsed()).as_secs();
                let _ = write!(w, "{}:{:02}", left / 60, left % 60);
            },
        );
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.slot().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clears the spinner, if it was shown.
    pub(crate) fn finish(&self) {
        if let Some(bar) = self.slot().take() {
            bar.finish_and_clear();
        }
    }
}

/// Plays the user on a sandbox that auto-approves: opens the authorize URL with an HTTP client
/// and follows the redirect to the callback, as a browser would after "Allow".
pub(crate) struct AutoApproveAgent {
    http: reqwest::Client,
}

impl AutoApproveAgent {
    pub(crate) fn new() -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http })
    }
}

impl UserAgent for AutoApproveAgent {
    fn run<'a>(&'a self, _prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        Box::pin(async move {
            let failed = |what: String| UserAgentError::Other(what);
            let response = self
                .http
                .get(authorize_url.clone())
                .send()
                .await
                .map_err(|e| {
                    failed(format!(
                        "the authorize page did not answer: {}",
                        e.without_url()
                    ))
                })?;
            if !response.status().is_redirection() {
                return Err(failed(format!(
                    "the authorize page answered HTTP {} instead of redirecting: is auto-approve on?",
                    response.status().as_u16()
                )));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| failed("the redirect has no Location".into()))?;
            authorize_url
                .join(location)
                .map_err(|_| failed("the redirect's Location is not a URL".into()))
        })
    }
}
