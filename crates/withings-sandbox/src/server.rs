//! The HTTP server: an accept loop serving each connection itself, so that a fault can drop
//! a connection without answering, plus the [`Sandbox`] and [`SandboxHandle`] types.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::config::SandboxConfig;
use crate::counters::Counters;
use crate::data::{MeasureError, NewMeasure};
use crate::fault::{Endpoint, Fault};
use crate::issue::{IssueError, IssuedTokens};
use crate::notify::Subscription;
use crate::state::{CodeInfo, Shared, TokenInfo};
use crate::wire::{LogTag, Reject, error_text};
use crate::{AUTHORIZE_PATH, SIGNATURE_PATH, TOKEN_PATH};
use crate::{admin, authorize, data, notify, signature, token, wire};

/// How long [`Sandbox::shutdown`] waits for in-flight requests before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Put into each request's extensions: notifying it makes the connection task drop the
/// socket without a response.
#[derive(Clone)]
struct DropConnection(Arc<Notify>);

/// A running sandbox server.
///
/// Dropping it stops the server task at once; [`Sandbox::shutdown`] lets in-flight requests
/// finish first.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    base: Url,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Starts a sandbox on `127.0.0.1` with a port chosen by the OS.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a sandbox on `addr`. Port 0 lets the OS choose.
    pub async fn bind(addr: SocketAddr, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base = Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let ledger = match &config.ledger {
            Some(path) => Some(crate::ledger::Ledger::create(path)?),
            None => None,
        };
        let shared = Arc::new(Shared::new(config));
        shared.lock().ledger = ledger;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(shared.clone()), stopped));
        tracing::info!(%addr, "withings-sandbox listening");
        Ok(Sandbox {
            addr,
            base,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> Url {
        self.base.clone()
    }

    /// Base of the authorization host (`/oauth2_user/authorize2`); the same as
    /// [`base_url`](Self::base_url).
    pub fn account_url(&self) -> Url {
        self.base.clone()
    }

    /// Base of the API host (`/v2/oauth2`, `/v2/signature`, `/measure`); the same as
    /// [`base_url`](Self::base_url).
    pub fn api_url(&self) -> Url {
        self.base.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to control and inspect the sandbox; it stays usable (but inert) after the
    /// server stopped.
    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Controls and inspects a running [`Sandbox`]. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
}

impl SandboxHandle {
    /// Moves the sandbox's clock forward. Every expiry (codes, nonces, access tokens, the
    /// refresh grace period, the `getnonce` timestamp window, the rate-limit window) uses
    /// this clock, which is real time plus the sum of all advances.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Applies `fault` to the next `times` requests to `endpoint`. Faults injected for the
    /// same endpoint queue up in order.
    pub fn inject_fault(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.shared.lock().faults.push(endpoint, fault, times);
    }

    /// Lets `skip` more requests to `endpoint` through, then applies `fault` to the next
    /// `times`: `inject_fault_after(Endpoint::Token, Fault::Http500, 2, 1)` fails the third
    /// token request from now.
    pub fn inject_fault_after(&self, endpoint: Endpoint, fault: Fault, skip: u32, times: u32) {
        self.shared
            .lock()
            .faults
            .push_after(endpoint, fault, skip, times);
    }

    /// Removes all pending faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Sets all counters back to zero.
    pub fn reset_counters(&self) {
        self.shared.lock().counters = Counters::default();
    }

    /// Authorization codes not yet exchanged nor expired, oldest first.
    pub fn live_codes(&self) -> Vec<CodeInfo> {
        let now = self.shared.clock.now();
        self.shared.lock().live_codes(now)
    }

    /// Access and refresh tokens still accepted, soonest expiry first.
    pub fn live_tokens(&self) -> Vec<TokenInfo> {
        let now = self.shared.clock.now();
        self.shared.lock().live_tokens(now)
    }

    /// Turns auto-approve on or off (see [`SandboxConfig::auto_approve`]).
    pub fn set_auto_approve(&self, on: bool) {
        self.shared.lock().config.auto_approve = on;
    }

    /// Turns strict rotation on or off (see [`SandboxConfig::strict_rotation`]); it applies
    /// to the next refresh.
    pub fn set_strict_rotation(&self, on: bool) {
        self.shared.lock().config.strict_rotation = on;
    }

    /// Changes the per-client limit (see [`SandboxConfig::rate_limit`]); `None` turns it off.
    /// Requests already made in the current window count against the new limit.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.shared.lock().config.rate_limit = per_minute;
    }

    /// Changes the length of the rate limit's sliding window (see
    /// [`SandboxConfig::rate_limit_window`]).
    pub fn set_rate_limit_window(&self, window: Duration) {
        self.shared.lock().config.rate_limit_window = window;
    }

    /// Mints an access/refresh pair for `userid` and `client_id`, as if the user had logged
    /// in and the app had exchanged the code, without a browser or a request. The access
    /// token lives `expires_in` (`Duration::ZERO`: already expired, so the first data call is
    /// refused and the client must refresh); the refresh token lives as long as any other.
    ///
    /// Tests that need many logged-in users use it with
    /// [`SandboxConfig::seed_users`]. No counter moves and the rate limit does not apply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use withings_sandbox::{Sandbox, SandboxConfig, User, DEFAULT_CLIENT_ID};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sandbox = Sandbox::start(SandboxConfig::default().seed_users(100)).await?;
    /// let handle = sandbox.handle();
    /// for i in 1..=100 {
    ///     let user = User::numbered(i).userid;
    ///     let tokens =
    ///         handle.issue_tokens(user, DEFAULT_CLIENT_ID, &["user.metrics"], Duration::ZERO)?;
    ///     assert_eq!((tokens.userid, tokens.expires_in), (user, 0));
    /// }
    /// assert_eq!(handle.live_tokens().len(), 100); // the refresh tokens; the access ones expired
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`IssueError`] if the client id or the user is unknown, or a scope is not one of
    /// [`KNOWN_SCOPES`](crate::KNOWN_SCOPES).
    ///
    /// # Security
    /// The tokens are returned in plain text, as everything in the sandbox: test data only.
    pub fn issue_tokens(
        &self,
        userid: u64,
        client_id: &str,
        scopes: &[&str],
        expires_in: Duration,
    ) -> Result<IssuedTokens, IssueError> {
        let now = self.shared.clock.now();
        self.shared
            .lock()
            .issue_tokens(userid, client_id, scopes, expires_in, now)
    }

    /// Adds a measure group taken at `date` for `userid`, as if one of the user's devices had
    /// just sent it, and notifies every callback URL subscribed to it (`appli` 4 for a group
    /// with blood pressure or pulse, 1 otherwise). `getmeas` answers it from now on; its
    /// `modified` is the sandbox's present, so a `lastupdate` sync sees it. Returns its
    /// `grpid`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use withings_sandbox::{NewMeasure, Sandbox, SandboxConfig, SEEDED_USERID};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    /// let grpid = sandbox.handle().add_measures(
    ///     SEEDED_USERID,
    ///     SystemTime::now() - Duration::from_secs(60),
    ///     &[NewMeasure::new(1, 71_800, -3)], // 71.8 kg
    /// )?;
    /// assert!(grpid > 0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`MeasureError`] if the user is unknown or `measures` is empty.
    pub fn add_measures(
        &self,
        userid: u64,
        date: std::time::SystemTime,
        measures: &[NewMeasure],
    ) -> Result<u64, MeasureError> {
        let date = i64::try_from(crate::clock::unix_secs(date)).unwrap_or(i64::MAX);
        notify::add_measures(&self.shared, userid, date, measures).map(|(grpid, _)| grpid)
    }

    /// The notification subscriptions of every user and app, oldest first.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.shared.lock().subscriptions.clone()
    }

    /// Changes how many records a data service answers per page (see
    /// [`SandboxConfig::page_size`]).
    pub fn set_page_size(&self, records: usize) {
        self.shared.lock().config.page_size = records;
    }

    /// Adds a callback URL to a registered app. Unknown client ids are ignored.
    pub fn register_callback(&self, client_id: &str, url: &str) {
        if let Some(app) = self.shared.lock().apps.get_mut(client_id)
            && !app.callback_urls.iter().any(|c| c == url)
        {
            app.callback_urls.push(url.to_owned());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route(AUTHORIZE_PATH, get(authorize::page).post(authorize::submit))
        .route(TOKEN_PATH, post(token::handle).get(token::handle))
        .route(
            SIGNATURE_PATH,
            post(signature::handle).get(signature::handle),
        );
    for path in data::PATHS {
        router = router.route(path, post(data::handle).get(data::handle));
    }
    if shared.lock().config.admin_api {
        router = router.nest("/admin", admin::router());
    }
    router
        .fallback(data::unknown_path)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults_and_logging,
        ))
        .with_state(shared)
}

/// Runs on every request: sweeps expired state, logs, and applies an injected fault.
async fn faults_and_logging(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let fault = {
        let now = shared.clock.now();
        let mut inner = shared.lock();
        inner.maybe_purge(now);
        let fault = Endpoint::from_path(&path).and_then(|e| inner.faults.take(e));
        if fault.is_some() {
            inner.counters.faults_applied += 1;
        }
        fault
    };
    let response = match fault {
        None => next.run(req).await,
        Some(Fault::Delay(by)) => {
            let response = next.run(req).await;
            tokio::time::sleep(by).await;
            response
        }
        Some(Fault::DropConnection) => {
            let kill = req.extensions().get::<DropConnection>().cloned();
            let _ = wire::read_body(req.into_body()).await;
            if let Some(DropConnection(kill)) = kill {
                tracing::info!(%method, %path, "fault: dropping the connection");
                kill.notify_one();
                // The connection task drops this future together with the socket.
                std::future::pending::<()>().await;
            }
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "connection drop unavailable",
            )
                .into_response()
        }
        Some(Fault::Http500) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(
                "<html><head><title>500 Internal Server Error</title></head><body>\
                  <h1>500 Internal Server Error</h1></body></html>",
            ),
        )
            .into_response(),
        Some(Fault::MalformedBody) => (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json")],
            r#"{"status":0,"body":{"access_tok"#,
        )
            .into_response(),
        Some(Fault::HtmlPage) => (
            StatusCode::OK,
            Html(
                "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>\
                  <p>The service is down for maintenance.</p></body></html>",
            ),
        )
            .into_response(),
        Some(Fault::TooManyRequests) => {
            Reject::new(601, error_text::TOO_MANY_REQUESTS).into_response()
        }
    };
    let tag = response
        .extensions()
        .get::<LogTag>()
        .cloned()
        .unwrap_or_default();
    let status = response.status().as_u16();
    // Method, path, action and user: never a parameter's value, so never a token.
    match (tag.action.as_deref(), tag.userid) {
        (Some(action), Some(userid)) => {
            tracing::info!(%method, %path, action, userid, status, "request");
        }
        (Some(action), None) => tracing::info!(%method, %path, action, status, "request"),
        (None, Some(userid)) => tracing::info!(%method, %path, userid, status, "request"),
        (None, None) => tracing::info!(%method, %path, status, "request"),
    }
    response
}

/// Accepts connections until told to stop, then drains them gracefully.
async fn serve(listener: TcpListener, app: Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(connection(stream, app.clone(), stopped.clone()));
            }
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let service = TowerToHyperService::new(app);
    let ext = DropConnection(kill.clone());
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ext.clone());
        hyper::service::Service::call(&service, req)
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        // Dropping `conn` closes the socket with no response written.
        () = kill.notified() => return,
        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = conn.as_mut() => {}
        () = kill.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    /// Tests hold a sandbox across threads and across `catch_unwind` (to clean up after a
    /// failed assertion), so neither may lose these traits.
    #[test]
    fn the_sandbox_and_its_handle_cross_threads_and_catch_unwind() {
        fn check<T: Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
        check::<super::Sandbox>();
        check::<super::SandboxHandle>();
    }
}
