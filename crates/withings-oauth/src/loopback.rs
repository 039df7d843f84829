//! The system browser as user agent: a listener on a loopback address receives the redirect.
//!
//! # Which agent fits which registration
//! | callback registered at Withings | agent |
//! |---|---|
//! | `http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...` or `http://localhost:<port>/...` | [`LoopbackAgent`] |
//! | an `https` URL (what Withings' dashboard asks for) | [`BrowserOrPasteAgent`] (browser, then paste), or [`PasteAgent`] |
//! | a desktop app with a window of its own | the `withings-oauth-webview` crate |
//!
//! Withings' documentation says callbacks must be https and must not be `localhost` or an IP,
//! so a loopback listener can't be the only way in: [`BrowserOrPasteAgent`] opens the browser
//! and takes whichever comes first, the redirect on the loopback listener (when the redirect URI
//! is a loopback one) or the address pasted by the user.
//!
//! # The listener
//! - It binds the redirect URI's own address, loopback only, never a wildcard address: `127.0.0.1`
//!   (or another `127.x.y.z`) and `[::1]` as written. `localhost` is bound on both `127.0.0.1`
//!   and `[::1]`, on the same port: browsers may resolve it to either, and a program holding the
//!   address left free would receive the callback. Where the system has no IPv6, `localhost` is
//!   served on `127.0.0.1` alone. Prefer the IP literal `http://127.0.0.1:<port>/...`, as
//!   RFC 8252 §8.3 recommends.
//! - Only port 0 means "any free port": the listener is bound in [`UserAgent::prepare`], and the
//!   real port goes into the authorize URL, for servers that accept any port on a loopback
//!   callback (RFC 8252 §7.3). A redirect URI without a port means port 80, the default port of
//!   `http`, as a server that compares redirect URIs exactly reads it; binding it needs
//!   privileges on most systems.
//! - The browser is opened at a one-time link on the listener,
//!   `http://127.0.0.1:<port>/start/<random>` (`http://[::1]:<port>/...` for `[::1]`), which
//!   redirects to the authorize URL. So the login's `state` is never on a command line, where
//!   any local program can read it (in `/proc/<pid>/cmdline`, say). The link works once; a
//!   second visit gets HTTP 404.
//! - The callback path answers a small page saying whether the login worked. A request that is
//!   not this login's callback (wrong `state`, no `state`, a repeated parameter) gets HTTP 400
//!   and the listener keeps waiting. Other paths get 404, other methods 405, request bodies 400.
//! - Each connection is served on its own task, one request per connection, within the limits
//!   below.
//! - Dropping the login's future closes the listener and every connection at once.
//!
//! # Limits
//! | what | limit |
//! |---|---|
//! | request line and headers | 8 KiB, at most 48 headers; more gets HTTP 431 |
//! | time to send the request line and headers | 5 s from connecting, then the connection is closed |
//! | time a connection stays open | 15 s, whatever it does |
//! | connections at once | 64; one more closes the oldest connection that has not sent its request line and headers, so a new connection is always served |
//! | the whole login | [`LoopbackAgent::timeout`], [`BrowserOrPasteAgent::timeout`]: 5 minutes unless set |
//!
//! # What other local programs can and can't do
//! A program that does not know the `state` can't end or hijack the login:
//! - forged callbacks get HTTP 400 and the listener keeps waiting for the real one;
//! - idle, slow or oversized connections are closed by the limits above, and can't keep the
//!   real callback out;
//! - with `localhost`, no other program can hold the second loopback address;
//! - the `state` is not on the browser's command line, only the one-time start link is.
//!
//! What the listener can't prevent:
//! - A program that reads the start link from the browser's command line and opens it first
//!   gets the authorize URL; the browser then shows "link not valid or already used", and the
//!   user should start the login again.
//! - Without a listener, [`BrowserOrPasteAgent`] (an `https` redirect URI, or a fixed loopback
//!   port already taken) opens the browser at the authorize URL itself: its `state` is on the
//!   browser's command line while the browser starts.
//! - The callback on `http://127.0.0.1` is not encrypted: any program that can watch the
//!   loopback interface (root, say) sees the code and `state`.
//! - [`LoopbackAgent::on_authorize_url`] gets the real authorize URL, `state` included: the
//!   application decides where it goes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use withings_oauth::loopback::LoopbackAgent;
//! use withings_oauth::{Client, Scope, Scopes, authorize};
//!
//! let client = Client::builder()
//!     .client_id("my-client-id")
//!     .client_secret("my-client-secret")
//!     .redirect_uri("http://127.0.0.1:0/callback") // any free port
//!     .build()?;
//! let agent = LoopbackAgent::new()
//!     .timeout(Duration::from_secs(120))
//!     .on_authorize_url(|url| eprintln!("If no browser opens, visit {url}"));
//! let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await?;
//! # let _ = authorized;
//! # Ok(())
//! # }
//! ```
//!
//! [`PasteAgent`]: crate::paste::PasteAgent

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, TRANSFER_ENCODING,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, warn};
use url::{Host, Position, Url};

use crate::config::is_loopback;
use crate::error::CallbackError;
use crate::paste::{Intro, PasteAgent, instructions};
use crate::state::{new_state, same_state};
use crate::user_agent::{AgentFuture, Prepared, UserAgent, UserAgentError, screen_callback};

/// Time a client has to send its request headers once it connected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);
/// Largest request head (request line and headers). A browser's callback request is ~1 KiB.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// hyper's read buffer; its minimum is 8 KiB.
const MAX_BUF_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 48;
/// Connections served at once; one more evicts the oldest that has not sent its request head.
const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long [`BrowserOrPasteAgent`] waits for the browser to start before showing the prompt.
const BROWSER_START_WAIT: Duration = Duration::from_secs(5);
/// Default for the whole login of either agent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Ports tried for `localhost` on port 0 before giving up, when `[::1]` has the `127.0.0.1`
/// port taken.
const LOCALHOST_BIND_ATTEMPTS: usize = 8;
/// Path prefix of the one-time link the browser is opened at.
const START_PREFIX: &str = "/start/";

type UrlCallback = Arc<dyn Fn(&Url) + Send + Sync>;

/// Opens the authorize page in the system browser and receives the redirect on a loopback
/// listener. See the [module docs](self) for what the listener accepts and what it protects.
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
    /// on the listener, not the authorize URL (see the [module docs](self)).
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

/// Opens the system browser and accepts whichever comes first: the redirect on a loopback
/// listener (only when the redirect URI is a loopback one) or the address the user pastes, read
/// as [`PasteAgent`] does.
///
/// This is the agent for apps that registered an https callback: the browser shows the login,
/// and its final address, which the app can't receive itself, is pasted back.
///
/// With a listener, the browser is opened at the listener's one-time start link; without one
/// (an https redirect URI, or a fixed loopback port already taken, which is not an error: the
/// agent then waits for a paste only), it is opened at the authorize URL itself, whose `state`
/// is then on the browser's command line while it starts (see the [module docs](self)).
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
        let intro = instructions(authorize_url, &redirect_uri, intro);
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
            let Ok(listen) = listen_addr(redirect_uri) else {
                return Ok(Prepared::new(redirect_uri.clone()));
            };
            match bind(redirect_uri).await {
                Ok((redirect_uri, listeners)) => {
                    Ok(Prepared::with_resource(redirect_uri, listeners))
                }
                // The port is fixed, so the authorize URL is right anyway; pasting still works.
                Err(e) if listen.addr.port() != 0 => {
                    warn!(error = %e, "no loopback listener: waiting for a pasted address only");
                    Ok(Prepared::new(redirect_uri.clone()))
                }
                Err(e) => Err(e),
            }
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

/// Where the listener for a redirect URI listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListenAddr {
    /// The redirect URI's address; port 0 for any free port.
    addr: SocketAddr,
    /// `localhost`: `[::1]` too, on the same port.
    also_ipv6: bool,
}

/// The address to listen on for `redirect_uri`.
fn listen_addr(redirect_uri: &Url) -> Result<ListenAddr, UserAgentError> {
    let unsupported = |why: &str| UserAgentError::UnsupportedRedirectUri {
        reason: format!(
            "{redirect_uri} {why}; a loopback listener needs http://127.0.0.1:<port>/..., \
             http://[::1]:<port>/... or http://localhost:<port>/... (port 0 for any). For an https \
             callback use PasteAgent or BrowserOrPasteAgent"
        ),
    };
    if redirect_uri.scheme() != "http" {
        return Err(unsupported("is not plain http"));
    }
    if !is_loopback(redirect_uri) {
        return Err(unsupported("is not on a loopback address"));
    }
    let (ip, also_ipv6) = match redirect_uri.host() {
        Some(Host::Ipv4(ip)) => (IpAddr::V4(ip), false),
        Some(Host::Ipv6(ip)) => (IpAddr::V6(ip), false),
        // `localhost`, the only loopback name.
        _ => (IpAddr::V4(Ipv4Addr::LOCALHOST), true),
    };
    // No port is port 80, as a server comparing redirect URIs exactly reads it; only an
    // explicit 0 asks for any free port.
    let Some(port) = redirect_uri.port_or_known_default() else {
        return Err(unsupported("has no port"));
    };
    Ok(ListenAddr {
        addr: SocketAddr::new(ip, port),
        also_ipv6,
    })
}

/// The sockets of one login's listener, handed from `prepare` to `run`.
struct Listeners {
    /// The redirect URI's address (`127.0.0.1` for `localhost`).
    first: TcpListener,
    /// `[::1]` on the same port, for `localhost`.
    second: Option<TcpListener>,
}

impl Listeners {
    fn port(&self) -> io::Result<u16> {
        Ok(self.first.local_addr()?.port())
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.second {
            None => self.first.accept().await,
            Some(second) => tokio::select! {
                accepted = self.first.accept() => accepted,
                accepted = second.accept() => accepted,
            },
        }
    }
}

/// Binds the listener for `redirect_uri` and returns the redirect URI with the real port.
async fn bind(redirect_uri: &Url) -> Result<(Url, Listeners), UserAgentError> {
    let listen = listen_addr(redirect_uri)?;
    let listeners = if listen.also_ipv6 {
        bind_localhost(listen.addr.port()).await?
    } else {
        Listeners {
            first: bind_one(listen.addr).await?,
            second: None,
        }
    };
    let mut redirect_uri = redirect_uri.clone();
    if listen.addr.port() == 0 {
        let port = listeners
            .port()
            .map_err(|source| bind_error(listen.addr, source))?;
        redirect_uri
            .set_port(Some(port))
            .map_err(|()| UserAgentError::Other("the redirect URI cannot carry a port".into()))?;
    }
    debug!(
        redirect_uri = redirect_uri.as_str(),
        ipv6_too = listeners.second.is_some(),
        "loopback listener bound"
    );
    Ok((redirect_uri, listeners))
}

async fn bind_one(addr: SocketAddr) -> Result<TcpListener, UserAgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| bind_error(addr, source))
}

/// Binds `127.0.0.1:port` and `[::1]` on the same port. With port 0, a port whose `[::1]` side
/// is taken is given up for another one.
async fn bind_localhost(port: u16) -> Result<Listeners, UserAgentError> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut clash = None;
    for _ in 0..LOCALHOST_BIND_ATTEMPTS {
        let first = bind_one(v4).await?;
        let v6 = SocketAddr::from((
            Ipv6Addr::LOCALHOST,
            first.local_addr().map_err(|e| bind_error(v4, e))?.port(),
        ));
        match TcpListener::bind(v6).await {
            Ok(second) => {
                return Ok(Listeners {
                    first,
                    second: Some(second),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if port != 0 {
                    return Err(bind_error(v6, e));
                }
                clash = Some(bind_error(v6, e));
            }
            Err(e) if ipv6_unavailable() => {
                debug!(error = %e, "no IPv6 loopback: serving localhost on 127.0.0.1 only");
                return Ok(Listeners {
                    first,
                    second: None,
                });
            }
            Err(e) => return Err(bind_error(v6, e)),
        }
    }
    Err(clash.unwrap_or_else(|| bind_error(v4, io::ErrorKind::AddrInUse.into())))
}

/// Whether this system has no IPv6 loopback at all (no IPv6 support, or `::1` disabled), as
/// opposed to one port of it being taken.
fn ipv6_unavailable() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err()
}

fn bind_error(addr: SocketAddr, source: io::Error) -> UserAgentError {
    let why = match source.kind() {
        io::ErrorKind::AddrInUse => "the port is taken: is another login or program using it?",
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: register and use a redirect URI with a port of its \
             own, or http://127.0.0.1:0/callback for any free port where the server allows it"
        }
        _ => "is this address available here?",
    };
    UserAgentError::Io {
        context: format!("listening on {addr} for the login callback ({why})"),
        source,
    }
}

/// For `run` without this agent's `prepare`: the port must already be known.
async fn bind_exact(redirect_uri: &Url) -> Result<Listeners, UserAgentError> {
    if listen_addr(redirect_uri)?.addr.port() == 0 {
        return Err(UserAgentError::Other(
            "the loopback listener was not prepared: call the agent's prepare() before run(), or use withings_oauth::authorize".into(),
        ));
    }
    Ok(bind(redirect_uri).await?.1)
}

/// Opens the system browser at `url`: a start link, or the authorize URL when there is no
/// listener. It goes on the command line of the program that opens the browser.
async fn open_in_browser(url: &SecretString) -> io::Result<()> {
    let url = url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || webbrowser::open(&url))
        .await
        .map_err(io::Error::other)?
}

/// What every connection needs to judge a request.
struct Listening {
    redirect_uri: Url,
    authorize_url: Url,
    /// The path of the start link, until it is used.
    start_path: Mutex<Option<SecretString>>,
}

impl Listening {
    /// The listener's state for one login, and the start link to open the browser at.
    fn new(
        listeners: &Listeners,
        redirect_uri: Url,
        authorize_url: &Url,
    ) -> Result<(Listening, SecretString), UserAgentError> {
        let nonce = new_state().map_err(|e| UserAgentError::Other(e.to_string()))?;
        let path = format!("{START_PREFIX}{}", nonce.expose_secret());
        let addr = listeners
            .first
            .local_addr()
            .map_err(|source| UserAgentError::Io {
                context: "reading the loopback listener's address".into(),
                source,
            })?;
        let start = SecretString::from(format!("http://{addr}{path}"));
        let listening = Listening {
            redirect_uri,
            authorize_url: authorize_url.clone(),
            start_path: Mutex::new(Some(SecretString::from(path))),
        };
        Ok((listening, start))
    }
}

/// One served connection, as the listener tracks it for eviction.
struct Connection {
    task: AbortHandle,
    /// Its request head arrived: it is being answered, and may be this login's callback.
    headed: Arc<AtomicBool>,
}

/// Serves connections until one brings this login's callback; returns its full URL once the
/// browser has its answer page.
async fn wait_for_callback(
    listeners: Listeners,
    listening: Listening,
) -> Result<Url, UserAgentError> {
    let listening = Arc::new(listening);
    // Dropping the set aborts every connection task: a cancelled login leaves nothing behind.
    let mut tasks = JoinSet::new();
    // Oldest first.
    let mut open: VecDeque<Connection> = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                open.retain(|c| c.task.id() != id);
                if let Ok((_, Some(callback))) = done {
                    return Ok(callback);
                }
            }
            accepted = listeners.accept() => match accepted {
                Ok((stream, peer)) => {
                    if open.len() >= MAX_CONNECTIONS && !evict_idle(&mut open) {
                        // Every connection is being answered; they end within moments.
                        warn!(%peer, "too many connections to the loopback listener; closing the new one");
                        continue;
                    }
                    debug!(%peer, "loopback connection");
                    let headed = Arc::new(AtomicBool::new(false));
                    let serve = serve_connection(stream, listening.clone(), headed.clone());
                    let task = tasks.spawn(serve);
                    open.push_back(Connection { task, headed });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a loopback connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// Closes the oldest connection that has not sent its request head, so that idle connections
/// can't keep the browser's out. Connections with a request can't be closed: one may be the
/// callback. Returns whether one was closed.
fn evict_idle(open: &mut VecDeque<Connection>) -> bool {
    let Some(i) = open.iter().position(|c| !c.headed.load(Ordering::Acquire)) else {
        return false;
    };
    if let Some(idle) = open.remove(i) {
        idle.task.abort();
        debug!("closed the oldest idle loopback connection to make room");
    }
    true
}

/// Serves one connection (one request: no keep-alive) and returns the callback if it was this
/// login's.
async fn serve_connection(
    stream: TcpStream,
    listening: Arc<Listening>,
    headed: Arc<AtomicBool>,
) -> Option<Url> {
    let accepted: Arc<Mutex<Option<Url>>> = Arc::default();
    let service = {
        let accepted = accepted.clone();
        service_fn(move |request: Request<Incoming>| {
            headed.store(true, Ordering::Release);
            let response = respond(&request, &listening, &accepted);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUF_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
        debug!(error = %e, "loopback connection ended with an error");
    }
    accepted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

fn respond(
    request: &Request<Incoming>,
    listening: &Listening,
    accepted: &Mutex<Option<Url>>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != listening.redirect_uri.path() {
        if !path.starts_with(START_PREFIX) {
            return page(StatusCode::NOT_FOUND, Page::NotFound);
        }
        if request.method() != Method::GET {
            return method_not_allowed();
        }
        return start(path, listening);
    }
    if request.method() != Method::GET {
        return method_not_allowed();
    }
    let has_body = request.headers().contains_key(TRANSFER_ENCODING)
        || request
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return page(StatusCode::BAD_REQUEST, Page::NotThisLogin);
    }
    // The redirect URI's own origin, not the Host header, which the client chooses.
    let origin = &listening.redirect_uri[..Position::BeforePath];
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(candidate) = Url::parse(&format!("{origin}{path_and_query}")) else {
        return page(StatusCode::BAD_REQUEST, Page::NotThisLogin);
    };
    let outcome = match screen_callback(&listening.authorize_url, &candidate) {
        Err(e) if e.is_foreign() => {
            warn!(reason = %e, "ignored a request that is not this login's callback");
            return page(StatusCode::BAD_REQUEST, Page::NotThisLogin);
        }
        Ok(()) => Page::Success,
        Err(CallbackError::Denied { .. }) => Page::Denied,
        Err(_) => Page::Failed,
    };
    let mut slot = accepted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(candidate);
    page(StatusCode::OK, outcome)
}

/// The start link: redirects to the authorize URL, once.
fn start(path: &str, listening: &Listening) -> Response<Full<Bytes>> {
    let mut slot = listening
        .start_path
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let valid = slot
        .as_ref()
        .is_some_and(|start| same_state(start.expose_secret(), path));
    if !valid {
        warn!("ignored a start link that is not valid or was already used");
        return page(StatusCode::NOT_FOUND, Page::StartUsed);
    }
    *slot = None;
    // A serialized URL is printable ASCII, which a header value always takes.
    let Ok(location) = HeaderValue::from_str(listening.authorize_url.as_str()) else {
        return page(StatusCode::NOT_FOUND, Page::StartUsed);
    };
    let mut response = page(StatusCode::FOUND, Page::Redirecting);
    response.headers_mut().insert(LOCATION, location);
    response
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = page(StatusCode::METHOD_NOT_ALLOWED, Page::NotThisLogin);
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
    response
}

#[derive(Clone, Copy)]
enum Page {
    Success,
    Denied,
    Failed,
    NotThisLogin,
    NotFound,
    Redirecting,
    StartUsed,
}

fn page(status: StatusCode, which: Page) -> Response<Full<Bytes>> {
    let (title, text) = match which {
        Page::Success => (
            "Logged in",
            "Withings sent the login back to the application. You can close this window.",
        ),
        Page::Denied => (
            "Access denied",
            "Access to your Withings data was denied, so the application is not logged in. \
             You can close this window; start the login again to allow access.",
        ),
        Page::Failed => (
            "Login not finished",
            "Withings sent no authorization code. You can close this window and start the login again.",
        ),
        Page::NotThisLogin => (
            "Not this login",
            "This address is waiting for a different login. If you started a login, use the \
             browser window it opened.",
        ),
        Page::NotFound => ("Not found", "Nothing here."),
        Page::Redirecting => ("Redirecting", "Going to the Withings login."),
        Page::StartUsed => (
            "Link already used",
            "This login link is not valid or was already used. If no Withings login page \
             opened, close this window and start the login again.",
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}</style>\
         </head><body><h1 id=\"title\">{title}</h1><p id=\"message\">{text}</p></body></html>"
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The address bar holds the code: no page may learn it from a Referer.
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paste::tests::{STATE, SharedOutput, authorize_url};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::task::JoinHandle;

    /// Sends `request` to `addr` and returns the whole answer.
    async fn send_to(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
        answer
    }

    async fn send(port: u16, request: &str) -> String {
        send_to(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), request).await
    }

    fn get(path_and_query: &str) -> String {
        format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    /// A listener for `configured`, waiting on its own task: the redirect URI, the start link.
    async fn listen(configured: &str) -> (Url, String, JoinHandle<Result<Url, UserAgentError>>) {
        let (redirect_uri, listeners) = bind(&configured.parse().unwrap()).await.unwrap();
        let authorize = authorize_url(redirect_uri.as_str());
        let (listening, start) =
            Listening::new(&listeners, redirect_uri.clone(), &authorize).unwrap();
        let wait = tokio::spawn(wait_for_callback(listeners, listening));
        (redirect_uri, start.expose_secret().to_owned(), wait)
    }

    #[test]
    fn only_loopback_http_redirect_uris_are_supported() {
        let addr = |s: &str| listen_addr(&s.parse().unwrap());
        let at = |a: &str, also_ipv6| ListenAddr {
            addr: a.parse().unwrap(),
            also_ipv6,
        };
        assert_eq!(
            addr("http://127.0.0.1:0/cb").unwrap(),
            at("127.0.0.1:0", false)
        );
        assert_eq!(
            addr("http://localhost:8123/cb").unwrap(),
            at("127.0.0.1:8123", true)
        );
        assert_eq!(addr("http://[::1]:0/cb").unwrap(), at("[::1]:0", false));
        // No port is http's port 80, whether written or not: never "any port".
        for port_80 in ["http://127.0.0.1/cb", "http://127.0.0.1:80/cb"] {
            assert_eq!(
                addr(port_80).unwrap(),
                at("127.0.0.1:80", false),
                "{port_80}"
            );
        }
        assert_eq!(addr("http://[::1]/cb").unwrap(), at("[::1]:80", false));
        for bad in [
            "https://app.example.com/cb",
            "https://127.0.0.1:8123/cb",
            "http://192.168.1.2:8123/cb",
            "http://0.0.0.0:8123/cb",
            "http://example.com/cb",
        ] {
            match addr(bad) {
                Err(UserAgentError::UnsupportedRedirectUri { reason }) => {
                    assert!(reason.contains("BrowserOrPasteAgent"), "{reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_privileged_port_error_suggests_port_0() {
        let err = bind_error(
            "127.0.0.1:80".parse().unwrap(),
            io::ErrorKind::PermissionDenied.into(),
        );
        assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:80"), "{text}");
        assert!(text.contains("http://127.0.0.1:0/callback"), "{text}");
    }

    #[tokio::test]
    async fn prepare_binds_a_free_port_on_both_loopback_addresses_for_localhost() {
        let agent = LoopbackAgent::new();
        let configured: Url = "http://localhost:0/callback".parse().unwrap();
        let mut prepared = agent.prepare(&configured).await.unwrap();
        let port = prepared.redirect_uri().port().unwrap();
        assert_ne!(port, 0);
        assert_eq!(prepared.redirect_uri().host_str(), Some("localhost"));
        assert_eq!(prepared.redirect_uri().path(), "/callback");
        let listeners = prepared.take_resource::<Listeners>().unwrap();
        let first = listeners.first.local_addr().unwrap();
        assert_eq!(first, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        match &listeners.second {
            Some(second) => assert_eq!(
                second.local_addr().unwrap(),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port))
            ),
            None => assert!(
                ipv6_unavailable(),
                "IPv6 works here, yet [::1] was not bound"
            ),
        }
    }

    /// Another program holding `[::1]:P` would get the callback of a browser that resolves
    /// `localhost` to `::1`: the login must not start on `127.0.0.1` alone.
    #[tokio::test]
    async fn localhost_is_refused_when_another_program_holds_its_ipv6_side() {
        // The thief's port may be in use on 127.0.0.1 by an unrelated program: pick another.
        for _ in 0..20 {
            let Ok(thief) = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
                assert!(ipv6_unavailable());
                return;
            };
            let port = thief.local_addr().unwrap().port();
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                continue;
            }
            let configured: Url = format!("http://localhost:{port}/callback").parse().unwrap();
            let err = LoopbackAgent::new().prepare(&configured).await.unwrap_err();
            if err.to_string().contains(&format!("127.0.0.1:{port}")) {
                continue; // taken on IPv4 between the check and the bind
            }
            assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
            assert!(err.to_string().contains(&format!("[::1]:{port}")), "{err}");
            // The IPv4 side it bound first is released again.
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
            return;
        }
        panic!("no port was free on 127.0.0.1 while taken on [::1] in 20 tries");
    }

    #[tokio::test]
    async fn a_localhost_callback_over_ipv6_ends_the_wait() {
        if ipv6_unavailable() {
            return;
        }
        let (redirect_uri, _, wait) = listen("http://localhost:0/callback").await;
        let port = redirect_uri.port().unwrap();
        let answer = send_to(
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            &get(&format!("/callback?code=C&state={STATE}")),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let callback = wait.await.unwrap().unwrap();
        assert_eq!(callback.host_str(), Some("localhost"));
    }

    #[tokio::test]
    async fn the_start_link_redirects_to_the_authorize_url_once() {
        let (redirect_uri, start, wait) = listen("http://127.0.0.1:0/callback").await;
        let start: Url = start.parse().unwrap();
        assert_eq!(start.host_str(), Some("127.0.0.1"));
        assert_eq!(start.port(), redirect_uri.port());
        assert!(start.path().starts_with(START_PREFIX), "{start}");
        assert!(start.query().is_none());
        assert!(!start.as_str().contains(STATE));
        let port = redirect_uri.port().unwrap();

        let guessed = send(port, &get("/start/guessed")).await;
        assert!(guessed.starts_with("HTTP/1.1 404"), "{guessed}");
        let post = send(
            port,
            &format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                start.path()
            ),
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");

        let first = send(port, &get(start.path())).await;
        assert!(first.starts_with("HTTP/1.1 302"), "{first}");
        let location = first
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .expect("a Location header");
        assert_eq!(location, authorize_url(redirect_uri.as_str()).as_str());

        let second = send(port, &get(start.path())).await;
        assert!(second.starts_with("HTTP/1.1 404"), "{second}");
        assert!(second.contains("already used"), "{second}");
        assert!(!wait.is_finished());
    }

    #[tokio::test]
    async fn foreign_callbacks_get_400_and_the_right_one_ends_the_wait() {
        let (redirect_uri, _, wait) = listen("http://127.0.0.1:0/callback").await;
        let port = redirect_uri.port().unwrap();

        let wrong = send(port, &get("/callback?code=C&state=forged")).await;
        assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
        assert!(wrong.contains("different login"), "{wrong}");
        let favicon = send(port, &get("/favicon.ico")).await;
        assert!(favicon.starts_with("HTTP/1.1 404"), "{favicon}");
        let post = send(
            port,
            &format!("POST /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let body = send(
            port,
            &format!("GET /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
        )
        .await;
        assert!(body.starts_with("HTTP/1.1 400"), "{body}");
        let huge = send(
            port,
            &format!(
                "GET /callback HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(MAX_HEADER_BYTES * 2)
            ),
        )
        .await;
        assert!(huge.starts_with("HTTP/1.1 431"), "{huge}");
        assert!(!wait.is_finished());

        let right = send(port, &get(&format!("/callback?code=C0DE&state={STATE}"))).await;
        assert!(right.starts_with("HTTP/1.1 200"), "{right}");
        assert!(right.contains("You can close this window"), "{right}");
        assert!(!right.contains("C0DE"));
        let callback = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            callback.as_str(),
            format!("http://127.0.0.1:{port}/callback?code=C0DE&state={STATE}")
        );
    }

    #[tokio::test]
    async fn a_denial_with_the_right_state_ends_the_wait_with_a_denied_page() {
        let agent = LoopbackAgent::new()
            .open_browser(false)
            .on_authorize_url(|_| {});
        let prepared = agent
            .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
            .await
            .unwrap();
        let redirect_uri = prepared.redirect_uri().clone();
        let port = redirect_uri.port().unwrap();
        let authorize = authorize_url(redirect_uri.as_str());
        let browser = tokio::spawn(async move {
            send(
                port,
                &get(&format!("/callback?error=access_denied&state={STATE}")),
            )
            .await
        });
        let callback = agent.run(prepared, &authorize).await.unwrap();
        assert!(callback.query().unwrap().contains("error=access_denied"));
        let page = browser.await.unwrap();
        assert!(page.contains("Access denied"), "{page}");
    }

    #[tokio::test]
    async fn it_times_out_and_frees_the_port() {
        let shown = Arc::new(Mutex::new(None::<Url>));
        let agent = LoopbackAgent::new()
            .open_browser(false)
            .timeout(Duration::from_millis(200))
            .on_authorize_url({
                let shown = shown.clone();
                move |url| *shown.lock().unwrap() = Some(url.clone())
            });
        let prepared = agent
            .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
            .await
            .unwrap();
        let port = prepared.redirect_uri().port().unwrap();
        let authorize = authorize_url(prepared.redirect_uri().as_str());
        let err = agent.run(prepared, &authorize).await.unwrap_err();
        assert!(matches!(err, UserAgentError::TimedOut(d) if d == Duration::from_millis(200)));
        assert_eq!(shown.lock().unwrap().as_ref(), Some(&authorize));
        TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    }

    #[tokio::test]
    async fn https_redirect_uris_are_refused_with_advice() {
        let err = LoopbackAgent::new()
            .prepare(&"https://app.example.com/withings/callback".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("PasteAgent"), "{err}");
    }

    #[tokio::test]
    async fn browser_or_paste_takes_the_loopback_redirect_or_the_paste() {
        // The loopback redirect arrives while nothing is pasted.
        let (reader, _keep_open) = tokio::io::duplex(64);
        let out = SharedOutput::default();
        let agent = BrowserOrPasteAgent::new(tokio::io::BufReader::new(reader), out.clone())
            .open_browser(false);
        let prepared = agent
            .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
            .await
            .unwrap();
        let port = prepared.redirect_uri().port().unwrap();
        let authorize = authorize_url(prepared.redirect_uri().as_str());
        let browser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            send(port, &get(&format!("/callback?code=C&state={STATE}"))).await
        });
        let callback = agent.run(prepared, &authorize).await.unwrap();
        assert_eq!(callback.port(), Some(port));
        assert!(browser.await.unwrap().starts_with("HTTP/1.1 200"));
        let text = out.text();
        assert!(text.contains("finishes by itself"), "{text}");
        assert!(text.contains("nothing to paste"), "{text}");

        // An https redirect URI: no listener, the paste ends it.
        let https: Url = "https://app.example.com/withings/callback".parse().unwrap();
        let typed = format!("{https}?code=C&state={STATE}\n");
        let agent =
            BrowserOrPasteAgent::new(io::Cursor::new(typed.into_bytes()), tokio::io::sink())
                .open_browser(false);
        let prepared = agent.prepare(&https).await.unwrap();
        assert_eq!(prepared.redirect_uri(), &https);
        let callback = agent
            .run(prepared, &authorize_url(https.as_str()))
            .await
            .unwrap();
        assert_eq!(callback.host_str(), Some("app.example.com"));
    }

    #[tokio::test]
    async fn browser_or_paste_times_out_and_frees_the_port() {
        let (reader, _keep_open) = tokio::io::duplex(64);
        let out = SharedOutput::default();
        let agent = BrowserOrPasteAgent::new(tokio::io::BufReader::new(reader), out.clone())
            .open_browser(false)
            .timeout(Duration::from_millis(300));
        let prepared = agent
            .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
            .await
            .unwrap();
        let port = prepared.redirect_uri().port().unwrap();
        let authorize = authorize_url(prepared.redirect_uri().as_str());
        let run = agent.run(prepared, &authorize);
        let err = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the agent's own timeout ends the login")
            .unwrap_err();
        assert!(matches!(err, UserAgentError::TimedOut(d) if d == Duration::from_millis(300)));
        assert!(out.text().contains("the login timed out"), "{}", out.text());
        TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    }

    #[tokio::test]
    async fn a_taken_fixed_port_fails_loopback_but_browser_or_paste_falls_back_to_paste() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let redirect_uri: Url = format!("http://127.0.0.1:{port}/callback").parse().unwrap();

        let err = LoopbackAgent::new()
            .prepare(&redirect_uri)
            .await
            .unwrap_err();
        assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );

        let typed = format!("{redirect_uri}?code=C&state={STATE}\n");
        let out = SharedOutput::default();
        let agent = BrowserOrPasteAgent::new(io::Cursor::new(typed.into_bytes()), out.clone())
            .open_browser(false);
        let prepared = agent.prepare(&redirect_uri).await.unwrap();
        assert_eq!(prepared.redirect_uri(), &redirect_uri);
        let callback = agent
            .run(prepared, &authorize_url(redirect_uri.as_str()))
            .await
            .unwrap();
        assert_eq!(callback.port(), Some(port));
        let text = out.text();
        assert!(text.contains("Copy the whole address"), "{text}");
        assert!(!text.contains("finishes by itself"), "{text}");
    }

    #[tokio::test]
    async fn an_ipv6_loopback_redirect_is_served_on_ipv6_loopback() {
        let configured: Url = "http://[::1]:0/callback".parse().unwrap();
        let (redirect_uri, listeners) = match bind(&configured).await {
            Ok(bound) => bound,
            // A host without IPv6 gets a typed error naming the address, not a panic.
            Err(e @ UserAgentError::Io { .. }) => {
                assert!(e.to_string().contains("[::1]:0"), "{e}");
                return;
            }
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(redirect_uri.host_str(), Some("[::1]"));
        assert!(listeners.second.is_none());
        let addr = listeners.first.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
        let authorize = authorize_url(redirect_uri.as_str());
        let (listening, start) =
            Listening::new(&listeners, redirect_uri.clone(), &authorize).unwrap();
        assert!(
            start
                .expose_secret()
                .starts_with(&format!("http://[::1]:{}/start/", addr.port()))
        );
        let wait = tokio::spawn(wait_for_callback(listeners, listening));
        let answer = send_to(addr, &get(&format!("/callback?code=C&state={STATE}"))).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let callback = wait.await.unwrap().unwrap();
        assert_eq!(callback.host_str(), Some("[::1]"));
        assert_eq!(callback.port(), Some(addr.port()));
    }
}
