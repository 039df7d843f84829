//! [`PasteAgent`]: the user opens the authorize URL, allows access, and pastes the address the
//! browser lands on. How pasting works is told in [`guide::agents`](crate::guide::agents).

use std::fmt;
use std::io;

use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::Mutex;
use url::Url;

use crate::callback::{CallbackError, screen_callback};
use crate::user_agent::agent::{AgentFuture, Prepared, UserAgent, UserAgentError};
use crate::user_agent::texts::{Intro, complaint, copy_advice, instructions, not_an_address};

mod line;

use line::{Input, Line, MAX_LINE, Output};

/// Blank lines tolerated before giving up, so an endless stream of newlines ends.
const MAX_BLANK_LINES: u32 = 20;

/// A user agent that prints the authorize URL and reads the redirect URL back from the user.
///
/// Output goes to the writer (stderr for [`PasteAgent::stdio`]): the authorize URL, what to do,
/// that the code is valid 30 seconds, and one message per refused input. The pasted text is never
/// written back, since it holds the code.
///
/// Ends with:
/// - the callback URL, once an input is this login's callback (a code, or a denial);
/// - [`UserAgentError::TooManyAttempts`] after [`max_attempts`](Self::max_attempts) refused inputs
///   (blank lines don't count);
/// - [`UserAgentError::Cancelled`] at end of input (Ctrl-D, a closed pipe).
pub struct PasteAgent {
    io: Mutex<PasteIo>,
    max_attempts: u32,
}

struct PasteIo {
    input: Input,
    output: Output,
}

impl PasteAgent {
    /// Reads from the process's standard input, writes to standard error.
    ///
    /// Standard input is read by a background thread, one line at a time and only while a login
    /// is waiting for one, so the runtime never blocks on it. If a login ends while a read is
    /// outstanding (a [`BrowserOrPasteAgent`](crate::BrowserOrPasteAgent) whose
    /// browser answered first), the next line typed goes to the next login that reads standard
    /// input through this crate.
    pub fn stdio() -> Self {
        Self::with_io(Input::Stdin, Output::Stderr)
    }

    /// Reads lines from `reader`, writes instructions and messages to `writer`.
    pub fn new<R, W>(reader: R, writer: W) -> Self
    where
        R: AsyncBufRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_io(
            Input::Reader(Box::new(reader)),
            Output::Writer(Box::new(writer)),
        )
    }

    fn with_io(input: Input, output: Output) -> Self {
        Self {
            io: Mutex::new(PasteIo { input, output }),
            max_attempts: 3,
        }
    }

    /// How many refused inputs end the login with [`UserAgentError::TooManyAttempts`]
    /// (default 3; 0 counts as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Writes `text` to the output, ignoring failures: for news that needs no answer.
    #[cfg(feature = "loopback")]
    pub(crate) async fn note(&self, text: &str) {
        let _ = self.io.lock().await.output.write(text).await;
    }

    /// Writes `intro`, then reads inputs until one is this login's callback.
    pub(crate) async fn read_callback(
        &self,
        intro: &str,
        authorize_url: &Url,
        redirect_uri: &Url,
    ) -> Result<Url, UserAgentError> {
        let mut io = self.io.lock().await;
        io.output
            .write(intro)
            .await
            .map_err(io_error("writing the login instructions"))?;
        let mut refused = 0u32;
        let mut blank = 0u32;
        let mut prompt = String::from("Paste the address here and press Enter: ");
        loop {
            io.output
                .write(&prompt)
                .await
                .map_err(io_error("writing the prompt"))?;
            let line = io
                .input
                .next_line()
                .await
                .map_err(io_error("reading the pasted address"))?;
            let complaint = match line {
                Line::Eof => {
                    let _ = io
                        .output
                        .write("\nNo address was pasted; the login is cancelled.\n")
                        .await;
                    return Err(UserAgentError::Cancelled);
                }
                Line::Text(text) if pasted_text(&text).is_empty() => {
                    blank += 1;
                    if blank > MAX_BLANK_LINES {
                        let _ = io
                            .output
                            .write("Too many empty lines; the login is cancelled.\n")
                            .await;
                        return Err(UserAgentError::Cancelled);
                    }
                    continue;
                }
                Line::Text(text) => match parse_pasted(pasted_text(&text), redirect_uri) {
                    None => not_an_address(redirect_uri),
                    Some(candidate) => match screen_callback(authorize_url, &candidate) {
                        Ok(()) | Err(CallbackError::Denied { .. }) => {
                            let _ = io.output.write("Got it.\n").await;
                            return Ok(candidate);
                        }
                        Err(e) => complaint(&e, redirect_uri),
                    },
                },
                Line::TooLong => format!(
                    "That line is longer than {MAX_LINE} bytes, so it is not the address. {}",
                    copy_advice(redirect_uri)
                ),
                Line::NotUtf8 => format!("That is not text. {}", copy_advice(redirect_uri)),
            };
            refused += 1;
            if refused >= self.max_attempts {
                let _ = io
                    .output
                    .write(&format!("{complaint}\nNo valid address after {refused} attempts; the login is cancelled.\n"))
                    .await;
                return Err(UserAgentError::TooManyAttempts { attempts: refused });
            }
            io.output
                .write(&format!("{complaint}\n"))
                .await
                .map_err(io_error("writing a message"))?;
            prompt = format!(
                "Try again (attempt {} of {}): ",
                refused + 1,
                self.max_attempts
            );
        }
    }
}

impl fmt::Debug for PasteAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasteAgent")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl UserAgent for PasteAgent {
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        Box::pin(async move {
            let intro = instructions(
                authorize_url.as_str(),
                prepared.redirect_uri(),
                Intro::Paste,
            );
            self.read_callback(&intro, authorize_url, prepared.redirect_uri())
                .await
        })
    }
}

/// The input without surrounding whitespace and quotes (terminals and chat tools add them).
fn pasted_text(line: &str) -> &str {
    line.trim()
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '<' | '>'))
        .trim()
}

/// A pasted address, or just its query (`code=..&state=..`, with or without `?`), as a URL.
fn parse_pasted(text: &str, redirect_uri: &Url) -> Option<Url> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Url::parse(text).ok();
    }
    let query = text.strip_prefix('?').unwrap_or(text);
    if !query.contains('=') || query.contains(char::is_whitespace) || query.contains('#') {
        return None;
    }
    let mut url = redirect_uri.clone();
    url.set_query(Some(query));
    Some(url)
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> UserAgentError {
    move |source| UserAgentError::Io {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests;
