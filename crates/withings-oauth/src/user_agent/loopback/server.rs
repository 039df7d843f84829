//! The listener's HTTP server: the one-time start link, the callback, and the limits that keep
//! other local programs from holding it up.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderValue, LOCATION, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, warn};
use url::{Position, Url};

use super::bind::Listeners;
use super::pages::{Page, page};
use crate::callback::{CallbackError, screen_callback};
use crate::csrf::{new_state, same_state};
use crate::user_agent::agent::UserAgentError;

/// Time a client has to send its request headers once it connected.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may stay open, whatever it does.
pub(super) const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);
/// Largest request head (request line and headers). A browser's callback request is ~1 KiB.
pub(super) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// hyper's read buffer; its minimum is 8 KiB.
const MAX_BUF_BYTES: usize = 16 * 1024;
/// Most headers in one request.
pub(super) const MAX_HEADERS: usize = 48;
/// Connections served at once; one more evicts the oldest that has not sent its request head.
pub(super) const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Path prefix of the one-time link the browser is opened at.
pub(super) const START_PREFIX: &str = "/start/";
/// How long after the start link was opened a callback is held before it is taken: a program
/// that read the link off the browser's command line, opened it first and sent a callback with
/// a code it got in advance is caught when the user's browser asks for the link in that time.
/// A person rarely logs in at Withings faster, so a real callback seldom waits, and never
/// longer than this.
pub(super) const START_LINK_HOLD: Duration = Duration::from_secs(3);

/// What every connection needs to judge a request.
pub(super) struct Listening {
    redirect_uri: Url,
    authorize_url: Url,
    /// The path of the start link, and whether it was used.
    start: Mutex<StartLink>,
    /// Signalled when the start link is asked for a second time: someone else has it.
    reused: Notify,
}

/// The one-time start link.
struct StartLink {
    path: SecretString,
    /// When it was opened, if it was.
    used_at: Option<tokio::time::Instant>,
}

impl Listening {
    /// The listener's state for one login, and the start link to open the browser at.
    pub(super) fn new(
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
            start: Mutex::new(StartLink {
                path: SecretString::from(path),
                used_at: None,
            }),
            reused: Notify::new(),
        };
        Ok((listening, start))
    }
}

impl Listening {
    /// When the start link was opened, if it was.
    fn start_opened_at(&self) -> Option<tokio::time::Instant> {
        self.start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used_at
    }
}

/// One served connection, as the listener tracks it for eviction.
struct Connection {
    task: AbortHandle,
    /// Its request head arrived: it is being answered, and may be this login's callback.
    headed: Arc<AtomicBool>,
}

/// Serves connections until one brings this login's callback; returns its full URL once the
/// browser has its answer page and [`START_LINK_HOLD`] has passed since the start link was
/// opened. Ends with [`UserAgentError::StartLinkReused`] if the start link is asked for a
/// second time before then.
pub(super) async fn wait_for_callback(
    listeners: Listeners,
    listening: Listening,
) -> Result<Url, UserAgentError> {
    let listening = Arc::new(listening);
    // Dropping the set aborts every connection task: a cancelled login leaves nothing behind.
    let mut tasks = JoinSet::new();
    // Oldest first.
    let mut open: VecDeque<Connection> = VecDeque::new();
    // A callback that came soon after the start link was opened, and when it may be taken.
    let mut held: Option<(Url, tokio::time::Instant)> = None;
    loop {
        let until = held
            .as_ref()
            .map_or_else(tokio::time::Instant::now, |(_, until)| *until);
        tokio::select! {
            biased;
            () = listening.reused.notified() => {
                warn!("the one-time start link was opened a second time: the login is stopped");
                return Err(UserAgentError::StartLinkReused);
            }
            () = tokio::time::sleep_until(until), if held.is_some() => {
                if let Some((callback, _)) = held.take() {
                    return Ok(callback);
                }
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                open.retain(|c| c.task.id() != id);
                if let Ok((_, Some(callback))) = done
                    && held.is_none()
                {
                    let opened = listening.start_opened_at();
                    match opened.map(|at| at + START_LINK_HOLD) {
                        Some(until) if until > tokio::time::Instant::now() => {
                            debug!("callback held until the start link is a few seconds old");
                            held = Some((callback, until));
                        }
                        _ => return Ok(callback),
                    }
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

/// The start link: redirects to the authorize URL, once. A second request for it means someone
/// else has the link (and the `state` behind it): the login is stopped.
fn start(path: &str, listening: &Listening) -> Response<Full<Bytes>> {
    let mut link = listening
        .start
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !same_state(link.path.expose_secret(), path) {
        warn!("ignored a start link that is not this login's");
        return page(StatusCode::NOT_FOUND, Page::NotFound);
    }
    if link.used_at.is_some() {
        listening.reused.notify_one();
        return page(StatusCode::NOT_FOUND, Page::StartUsed);
    }
    link.used_at = Some(tokio::time::Instant::now());
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
