//! The manual user agent: the user opens the authorize URL, allows access, and pastes the
//! address the browser lands on.
//!
//! # Which agent fits which registration
//! | callback registered at Withings | agent |
//! |---|---|
//! | an `https` URL (what Withings' dashboard asks for) | [`PasteAgent`], or [`BrowserOrPasteAgent`] to open the browser for the user |
//! | `http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...` or `http://localhost:<port>/...` | [`LoopbackAgent`] (or [`BrowserOrPasteAgent`], which also accepts a paste) |
//! | a desktop app with a window of its own | the `withings-oauth-webview` crate |
//!
//! [`PasteAgent`] works everywhere, including over SSH and in containers with no browser: the
//! browser can be on another machine. After "Allow", Withings sends the browser to the redirect
//! URI with `?code=..&state=..`; the page there may well fail to load, but the address bar holds
//! what the login needs. The user pastes that address (or just its `code=..&state=..` part).
//!
//! Each input is screened against the login
//! ([`screen_callback`]) before it is returned: garbage or an
//! address from another login gets a message and a new prompt, so a typo does not cost a login.
//! A denial is returned at once, and the flow turns it into
//! [`CallbackError::Denied`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use withings_oauth::paste::PasteAgent;
//! use withings_oauth::user_agent::{Prepared, UserAgent};
//!
//! let redirect_uri: url::Url = "https://app.example.com/withings/callback".parse()?;
//! let authorize_url: url::Url = "https://account.withings.com/oauth2_user/authorize2?response_type=code\
//!     &client_id=id&redirect_uri=https%3A%2F%2Fapp.example.com%2Fwithings%2Fcallback\
//!     &scope=user.metrics&state=s7a7e".parse()?;
//!
//! // What the user would type: first a stray word, then the query part of the address bar.
//! let typed: &'static [u8] = b"oops\ncode=c0de&state=s7a7e\n";
//! let agent = PasteAgent::new(typed, tokio::io::sink());
//! let callback = agent.run(Prepared::new(redirect_uri), &authorize_url).await?;
//! assert_eq!(callback.as_str(), "https://app.example.com/withings/callback?code=c0de&state=s7a7e");
//! # Ok(())
//! # }
//! ```
//!
//! [`LoopbackAgent`]: crate::loopback::LoopbackAgent
//! [`BrowserOrPasteAgent`]: crate::loopback::BrowserOrPasteAgent

use std::fmt;
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::sync::OnceLock;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
};
use tokio::sync::{Mutex, mpsc};
use url::Url;

use crate::error::CallbackError;
use crate::user_agent::{AgentFuture, Prepared, UserAgent, UserAgentError, screen_callback};

/// Longest line accepted. A redirect URL is well under 1 KiB; Withings caps callbacks at 255
/// characters plus the code and state.
const MAX_LINE: usize = 8 * 1024;

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
    /// outstanding (a [`BrowserOrPasteAgent`](crate::loopback::BrowserOrPasteAgent) whose
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
            let intro = instructions(authorize_url, prepared.redirect_uri(), Intro::Paste);
            self.read_callback(&intro, authorize_url, prepared.redirect_uri())
                .await
        })
    }
}

/// What the user has been told already, which changes the instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "loopback"), allow(dead_code))]
pub(crate) enum Intro {
    /// Nothing opened: the user opens the URL.
    Paste,
    /// A browser was opened at the URL; a loopback listener may also be waiting.
    BrowserOpened {
        /// Whether a loopback listener will catch the redirect by itself.
        listening: bool,
    },
    /// The browser could not be opened (or opening it is disabled).
    BrowserNotOpened {
        /// Whether a loopback listener will catch the redirect by itself.
        listening: bool,
    },
}

/// The text shown before the first prompt.
pub(crate) fn instructions(authorize_url: &Url, redirect_uri: &Url, intro: Intro) -> String {
    let open = match intro {
        Intro::Paste | Intro::BrowserNotOpened { .. } => {
            format!(
                "Open this address in a web browser to log in to Withings:\n\n  {authorize_url}\n\n"
            )
        }
        Intro::BrowserOpened { .. } => format!(
            "A browser window should now show the Withings login. If it does not, open this address:\n\n  {authorize_url}\n\n"
        ),
    };
    let listening = matches!(
        intro,
        Intro::BrowserOpened { listening: true } | Intro::BrowserNotOpened { listening: true }
    );
    let after = if listening {
        format!(
            "After you allow access, the login finishes by itself. If the browser shows an error page \
             instead, copy the whole address from its address bar (it starts with {redirect_uri}) \
             and paste it here.\n"
        )
    } else {
        format!(
            "After you allow access, the browser goes to {redirect_uri}; that page may fail to load, \
             which is fine. Copy the whole address from the browser's address bar and paste it here.\n"
        )
    };
    format!("{open}{after}Be quick: the code in that address is valid for 30 seconds.\n")
}

fn copy_advice(redirect_uri: &Url) -> String {
    format!(
        "Copy the whole address from the browser's address bar after allowing access; it starts with {redirect_uri}."
    )
}

fn not_an_address(redirect_uri: &Url) -> String {
    format!(
        "That is not the redirect address. {}",
        copy_advice(redirect_uri)
    )
}

/// Why a candidate was refused, without repeating any of it (it may hold a code).
fn complaint(error: &CallbackError, redirect_uri: &Url) -> String {
    match error {
        CallbackError::NotAUrl => not_an_address(redirect_uri),
        CallbackError::RedirectMismatch { .. } => format!(
            "That address does not go to the redirect URI. {}",
            copy_advice(redirect_uri)
        ),
        CallbackError::MissingState
        | CallbackError::StateMismatch
        | CallbackError::RepeatedParameter(_) => "That address belongs to another login (its state does not match). \
             Open the address shown above, allow access, and paste the address you land on."
            .to_owned(),
        CallbackError::MissingCode => {
            "That address has no authorization code: copy all of it, including everything after '?'."
                .to_owned()
        }
        _ => format!("That address can't be used. {}", copy_advice(redirect_uri)),
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

/// One line of input.
enum Line {
    Text(String),
    TooLong,
    NotUtf8,
    Eof,
}

/// One line read in bounded chunks (`read_until(b'\n')` through `take(limit)`): the first chunk is
/// the line, unless it overflows; then chunks are skipped up to the end of the line, so its tail
/// is not taken for the next input. Both standard input and async readers go through it.
#[derive(Default)]
struct LineRead {
    skipping: bool,
}

impl LineRead {
    /// The most bytes to read for the next chunk: one past the limit shows an overflow.
    fn limit(&self) -> u64 {
        MAX_LINE as u64 + u64::from(!self.skipping)
    }

    /// Takes the next chunk; returns the line once it is complete.
    fn feed(&mut self, mut chunk: Vec<u8>) -> Option<Line> {
        let ends = chunk.is_empty() || chunk.last() == Some(&b'\n');
        if self.skipping {
            return ends.then_some(Line::TooLong);
        }
        if chunk.is_empty() {
            return Some(Line::Eof);
        }
        if chunk.len() > MAX_LINE && !ends {
            self.skipping = true;
            return None;
        }
        if ends {
            chunk.pop();
        }
        Some(match String::from_utf8(chunk) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8,
        })
    }
}

enum Input {
    Reader(Box<dyn AsyncBufRead + Send + Unpin>),
    Stdin,
}

impl Input {
    async fn next_line(&mut self) -> io::Result<Line> {
        match self {
            Input::Reader(reader) => read_line_async(reader).await,
            Input::Stdin => stdin_line().await,
        }
    }
}

async fn read_line_async(reader: &mut (dyn AsyncBufRead + Send + Unpin)) -> io::Result<Line> {
    let mut read = LineRead::default();
    loop {
        let mut chunk = Vec::new();
        (&mut *reader)
            .take(read.limit())
            .read_until(b'\n', &mut chunk)
            .await?;
        if let Some(line) = read.feed(chunk) {
            return Ok(line);
        }
    }
}

fn read_line_blocking(reader: &mut impl io::BufRead) -> io::Result<Line> {
    let mut read = LineRead::default();
    loop {
        let mut chunk = Vec::new();
        reader
            .by_ref()
            .take(read.limit())
            .read_until(b'\n', &mut chunk)?;
        if let Some(line) = read.feed(chunk) {
            return Ok(line);
        }
    }
}

/// The process's standard input, read by one thread for the whole process.
///
/// A blocking read of stdin can't be cancelled, and one running on the runtime's blocking pool
/// would hold up the runtime's shutdown until the user presses Enter. A plain thread, reading
/// only when asked, can be left blocked.
struct StdinReader {
    /// Asks the thread for one line.
    ask: std::sync::mpsc::Sender<()>,
    lines: Mutex<StdinLines>,
}

struct StdinLines {
    rx: mpsc::Receiver<io::Result<Line>>,
    /// A line was asked for and has not been received (its reader was dropped).
    outstanding: bool,
}

fn stdin_reader() -> &'static StdinReader {
    static READER: OnceLock<StdinReader> = OnceLock::new();
    READER.get_or_init(|| {
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel(1);
        // If the thread can't start, the senders are dropped and every read sees the error below.
        let _ = std::thread::Builder::new()
            .name("withings-oauth-stdin".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let line = read_line_blocking(&mut io::stdin().lock());
                    let done = !matches!(line, Ok(Line::Text(_) | Line::TooLong | Line::NotUtf8));
                    if tx.blocking_send(line).is_err() || done {
                        break;
                    }
                }
            });
        StdinReader {
            ask,
            lines: Mutex::new(StdinLines {
                rx,
                outstanding: false,
            }),
        }
    })
}

async fn stdin_line() -> io::Result<Line> {
    let reader = stdin_reader();
    let mut lines = reader.lines.lock().await;
    if !lines.outstanding {
        if reader.ask.send(()).is_err() {
            return Ok(Line::Eof);
        }
        lines.outstanding = true;
    }
    let line = lines.rx.recv().await;
    lines.outstanding = false;
    line.unwrap_or(Ok(Line::Eof))
}

enum Output {
    Writer(Box<dyn AsyncWrite + Send + Unpin>),
    Stderr,
}

impl Output {
    async fn write(&mut self, text: &str) -> io::Result<()> {
        match self {
            Output::Writer(w) => {
                w.write_all(text.as_bytes()).await?;
                w.flush().await
            }
            Output::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(text.as_bytes())?;
                err.flush()
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A writer whose output the test can read afterwards.
    #[derive(Clone, Default)]
    pub(crate) struct SharedOutput(Arc<std::sync::Mutex<Vec<u8>>>);

    impl SharedOutput {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl AsyncWrite for SharedOutput {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    const REDIRECT: &str = "https://app.example.com/withings/callback";
    /// The `state` of the logins made by [`authorize_url`].
    pub(crate) const STATE: &str = "the-right-state-0123456789";

    /// The authorize URL of a login with `redirect_uri` and [`STATE`].
    pub(crate) fn authorize_url(redirect_uri: &str) -> Url {
        let mut url: Url = "https://account.withings.com/oauth2_user/authorize2"
            .parse()
            .unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "cid")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "user.metrics")
            .append_pair("state", STATE);
        url
    }

    async fn paste(
        input: &str,
        agent: impl FnOnce(PasteAgent) -> PasteAgent,
    ) -> (Result<Url, UserAgentError>, String) {
        let out = SharedOutput::default();
        let reader = io::Cursor::new(input.as_bytes().to_vec());
        let agent = agent(PasteAgent::new(reader, out.clone()));
        let result = agent
            .run(
                Prepared::new(REDIRECT.parse().unwrap()),
                &authorize_url(REDIRECT),
            )
            .await;
        (result, out.text())
    }

    #[tokio::test]
    async fn garbage_then_wrong_state_then_the_right_address() {
        let input = format!(
            "hello\n{REDIRECT}?code=SECRETCODE1&state=someone-elses\n  \"{REDIRECT}?code=SECRETCODE2&state={STATE}\"  \n"
        );
        let (result, out) = paste(&input, |a| a).await;
        assert_eq!(
            result.unwrap().as_str(),
            format!("{REDIRECT}?code=SECRETCODE2&state={STATE}")
        );
        assert!(out.contains(authorize_url(REDIRECT).as_str()), "{out}");
        assert!(out.contains("valid for 30 seconds"), "{out}");
        assert!(out.contains("That is not the redirect address"), "{out}");
        assert!(out.contains("belongs to another login"), "{out}");
        assert!(
            out.contains("attempt 2 of 3") && out.contains("attempt 3 of 3"),
            "{out}"
        );
        assert!(!out.contains("SECRETCODE"), "{out}");
        assert!(!out.contains("someone-elses"), "{out}");
    }

    #[tokio::test]
    async fn the_query_alone_is_enough_with_or_without_question_mark() {
        for typed in [
            format!("code=C0DE&state={STATE}"),
            format!("?code=C0DE&state={STATE}\r"),
        ] {
            let (result, _) = paste(&format!("{typed}\n"), |a| a).await;
            assert_eq!(
                result.unwrap().as_str(),
                format!("{REDIRECT}?code=C0DE&state={STATE}")
            );
        }
    }

    #[tokio::test]
    async fn a_denial_ends_at_once_but_a_forged_one_does_not() {
        let input = format!(
            "{REDIRECT}?error=access_denied&state=forged\n{REDIRECT}?error=access_denied&state={STATE}\n"
        );
        let (result, out) = paste(&input, |a| a).await;
        assert!(result.unwrap().as_str().contains("error=access_denied"));
        assert!(out.contains("belongs to another login"), "{out}");
    }

    #[tokio::test]
    async fn other_addresses_and_missing_codes_are_refused_with_advice() {
        let input = format!(
            "https://evil.example.com/withings/callback?code=X&state={STATE}\n{REDIRECT}?state={STATE}\n"
        );
        let (result, out) = paste(&input, |a| a.max_attempts(2)).await;
        assert!(matches!(
            result,
            Err(UserAgentError::TooManyAttempts { attempts: 2 })
        ));
        assert!(out.contains("does not go to the redirect URI"), "{out}");
        assert!(out.contains("has no authorization code"), "{out}");
        assert!(!out.contains("evil.example.com"), "{out}");
    }

    #[tokio::test]
    async fn end_of_input_cancels() {
        let (result, out) = paste("\n\nnot it\n", |a| a).await;
        assert!(matches!(result, Err(UserAgentError::Cancelled)));
        assert!(out.contains("cancelled"), "{out}");
    }

    #[tokio::test]
    async fn too_many_attempts_stop_the_login() {
        let right = format!("{REDIRECT}?code=C&state={STATE}\n");
        let (result, out) = paste(&format!("a\nb\nc\n{right}"), |a| a).await;
        match result {
            Err(e @ UserAgentError::TooManyAttempts { attempts: 3 }) => {
                assert!(e.to_string().contains("copy the whole address"));
            }
            other => panic!("expected TooManyAttempts, got {other:?}"),
        }
        assert!(out.contains("after 3 attempts"), "{out}");
        let (result, _) = paste(&format!("a\n{right}"), |a| a.max_attempts(1)).await;
        assert!(matches!(
            result,
            Err(UserAgentError::TooManyAttempts { attempts: 1 })
        ));
    }

    #[tokio::test]
    async fn blank_lines_do_not_count_and_long_lines_are_skipped_whole() {
        let long = "x".repeat(MAX_LINE * 2 + 5);
        let input = format!("\n \n{long}\ncode=C&state={STATE}\n");
        let (result, out) = paste(&input, |a| a.max_attempts(2)).await;
        assert!(result.is_ok(), "{out}");
        assert!(out.contains("longer than"), "{out}");
        assert!(out.contains("attempt 2 of 2"), "{out}");
    }

    #[test]
    fn pasted_text_is_trimmed_of_quotes_and_space() {
        assert_eq!(pasted_text("  '<https://a/b?c=d>'\t"), "https://a/b?c=d");
        let redirect: Url = REDIRECT.parse().unwrap();
        assert!(parse_pasted("just some words", &redirect).is_none());
        assert!(parse_pasted("c0de", &redirect).is_none());
        assert_eq!(
            parse_pasted(
                "HTTPS://app.example.com/withings/callback?code=1",
                &redirect
            )
            .unwrap()
            .as_str(),
            "https://app.example.com/withings/callback?code=1"
        );
    }

    /// Set in a child process of [`stdio_reads_standard_input_and_writes_standard_error`]: which
    /// login the child runs on its real standard input.
    const CHILD_MODE: &str = "WITHINGS_OAUTH_TEST_STDIO_CHILD";

    /// Runs this test binary again as a child, with `mode`, `input` on its standard input (kept
    /// open unless `close_stdin`); returns (exit success, stdout, stderr).
    fn run_child(mode: &str, input: &str, close_stdin: bool) -> (bool, String, String) {
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "paste::tests::stdio_child",
                "--nocapture",
            ])
            .env(CHILD_MODE, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        let held_open = if close_stdin {
            drop(stdin);
            None
        } else {
            Some(stdin)
        };
        let mut finished = false;
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !finished {
            let _ = child.kill();
        }
        drop(held_open);
        let output = child.wait_with_output().unwrap();
        (
            finished && output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[test]
    fn stdio_reads_standard_input_and_writes_standard_error() {
        let input = format!("garbage\n{REDIRECT}?code=SECRETCODE&state={STATE}\n");
        let (ok, stdout, stderr) = run_child("paste", &input, false);
        assert!(ok, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!(
                "CALLBACK {REDIRECT}?code=SECRETCODE&state={STATE}"
            )),
            "{stdout}"
        );
        assert!(stderr.contains("valid for 30 seconds"), "{stderr}");
        assert!(stderr.contains("attempt 2 of 3"), "{stderr}");
        assert!(!stderr.contains("SECRETCODE"), "{stderr}");

        let (ok, stdout, stderr) = run_child("paste", "", true);
        assert!(ok, "{stdout}{stderr}");
        assert!(stdout.contains("CANCELLED"), "{stdout}");
    }

    /// The browser answers while standard input is open and silent: the login ends and the
    /// process exits, without waiting for a line nobody types.
    #[cfg(feature = "loopback")]
    #[test]
    fn a_pending_stdin_read_does_not_hold_up_the_process() {
        let (ok, stdout, stderr) = run_child("browser-or-paste", "", false);
        assert!(ok, "the child did not exit by itself: {stdout}{stderr}");
        assert!(stdout.contains("CALLBACK http://127.0.0.1:"), "{stdout}");
    }

    #[tokio::test]
    #[ignore = "a child process of the stdio tests: it reads the test binary's own stdin"]
    async fn stdio_child() {
        // Not a test of its own: without the variable (`--include-ignored`) there is nothing to do.
        let Ok(mode) = std::env::var(CHILD_MODE) else {
            return;
        };
        let result = match mode.as_str() {
            "paste" => {
                PasteAgent::stdio()
                    .run(
                        Prepared::new(REDIRECT.parse().unwrap()),
                        &authorize_url(REDIRECT),
                    )
                    .await
            }
            #[cfg(feature = "loopback")]
            "browser-or-paste" => {
                let agent = crate::loopback::BrowserOrPasteAgent::stdio().open_browser(false);
                let prepared = agent
                    .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
                    .await
                    .unwrap();
                let redirect = prepared.redirect_uri().clone();
                let authorize = authorize_url(redirect.as_str());
                let port = redirect.port().unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    let request =
                        format!("GET /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\n\r\n");
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer).await;
                });
                agent.run(prepared, &authorize).await
            }
            other => panic!("unknown mode {other}"),
        };
        match result {
            Ok(url) => println!("CALLBACK {url}"),
            Err(UserAgentError::Cancelled) => println!("CANCELLED"),
            Err(e) => panic!("{e}"),
        }
    }

    proptest::proptest! {
        /// Whatever is typed: no panic, nothing typed is written back, and only this login's
        /// callback (or its denial) comes out.
        #[test]
        fn any_input_is_screened_and_never_echoed(
            lines in proptest::collection::vec("ZQX[ -~]{0,40}|ZQX\\PC{0,40}|code=ZQX[a-z]{0,8}&state=[a-zA-Z0-9_-]{0,30}|\\??code=ZQX[a-z]{0,8}&state=the-right-state-0123456789", 1..5),
        ) {
            let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (result, out) = runtime.block_on(paste(&input, |a| a));
            proptest::prop_assert!(!out.contains("ZQX"), "{}", out);
            match result {
                Ok(url) => {
                    let screened = screen_callback(&authorize_url(REDIRECT), &url);
                    proptest::prop_assert!(
                        matches!(screened, Ok(()) | Err(CallbackError::Denied { .. })),
                        "{:?}", screened
                    );
                }
                Err(UserAgentError::Cancelled | UserAgentError::TooManyAttempts { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
