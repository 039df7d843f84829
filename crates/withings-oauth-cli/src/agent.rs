//! The user agents the CLI offers, and the one the demo uses to play the user.

use std::io::BufRead;

use url::Url;
use withings_oauth::user_agent::{AgentFuture, Prepared, UserAgentError, screen_callback};
use withings_oauth::{Client, UserAgent};

use crate::cli::{AgentArg, LoginArgs};
use crate::error::CliError;

/// The agent `--agent` asks for.
pub(crate) fn choose(args: &LoginArgs, client: &Client) -> Result<Box<dyn UserAgent>, CliError> {
    let _ = client;
    match args.agent {
        AgentArg::Paste => Ok(Box::new(StdinPaste { max_attempts: 3 })),
        AgentArg::Auto | AgentArg::Browser => Err(CliError::config(
            "the browser login is not available in this build: use --agent paste",
        )),
        AgentArg::Webview => Err(webview_missing()),
    }
}

fn webview_missing() -> CliError {
    CliError::config(
        "this withings-oauth was built without the embedded window: rebuild it with \
         `cargo install withings-oauth-cli --features webview` (on Linux this needs the GTK and \
         WebKitGTK development packages, e.g. libwebkit2gtk-4.1-dev), or use --agent browser or --agent paste",
    )
}

/// Prints the authorize URL on stderr and reads the address the browser ended on from stdin.
struct StdinPaste {
    max_attempts: u32,
}

impl UserAgent for StdinPaste {
    fn run<'a>(&'a self, _prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        let authorize_url = authorize_url.clone();
        let max_attempts = self.max_attempts;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || paste_loop(&authorize_url, max_attempts))
                .await
                .map_err(|e| UserAgentError::Other(e.to_string()))?
        })
    }
}

fn paste_loop(authorize_url: &Url, max_attempts: u32) -> Result<Url, UserAgentError> {
    eprintln!("Open this URL in a browser and allow access:\n\n  {authorize_url}\n");
    eprintln!(
        "Then copy the whole address of the page the browser ends on (it starts with the redirect URI) and paste it here:"
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    for attempt in 1..=max_attempts {
        line.clear();
        let n = stdin
            .lock()
            .read_line(&mut line)
            .map_err(|source| UserAgentError::Io {
                context: "reading the pasted address".into(),
                source,
            })?;
        if n == 0 {
            return Err(UserAgentError::Cancelled);
        }
        let candidate = match Url::parse(line.trim()) {
            Ok(url) => url,
            Err(_) => {
                eprintln!(
                    "That is not a URL ({attempt}/{max_attempts}): paste the whole address, starting with http"
                );
                continue;
            }
        };
        match screen_callback(authorize_url, &candidate) {
            Err(e) if e.is_foreign() => {
                eprintln!("{e} ({attempt}/{max_attempts}): paste the address again");
            }
            // A denial or a missing code is this login's answer: the flow reports it.
            _ => return Ok(candidate),
        }
    }
    Err(UserAgentError::TooManyAttempts {
        attempts: max_attempts,
    })
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

/// The system browser with a loopback listener, for `demo --browser`.
pub(crate) fn demo_browser() -> Result<Box<dyn UserAgent>, CliError> {
    Err(CliError::config(
        "the browser login is not available in this build: run the demo without --browser",
    ))
}
