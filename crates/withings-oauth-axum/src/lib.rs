//! Withings logins for [axum] web servers.
//!
//! On a web server a login spans two requests, maybe served by two instances: the connect
//! route sends the user's browser to Withings, and the callback route receives the code, which
//! must be exchanged within 30 seconds. [`WithingsLogin`] gives both routes, and fresh access
//! tokens afterwards:
//!
//! - **connect** (`GET` or `POST`, default `/withings/connect`) asks the application who the
//!   user is (its *owner* value, e.g. its own user id), parks a login in a
//!   [`PendingLoginStore`](withings_oauth::PendingLoginStore) shared by the instances, binds it
//!   to the browser with a cookie, and redirects to Withings;
//! - **callback** (`GET`, the path of the client's redirect URI) takes that login back, once,
//!   only in the browser that started it, exchanges the code, saves the credentials to the
//!   [`TokenStore`](withings_oauth::TokenStore) through a
//!   [`Session`](withings_oauth::Session), tells the application which Withings user the owner
//!   connected ([`WithingsLoginBuilder::on_connected`]), and redirects to the page the
//!   application chose. Anything else is an error page ([`LoginError`]): denied, expired,
//!   already used, wrong browser, Withings failed.
//! - [`WithingsLogin::access_token`] gives a valid access token for a Withings user, from a
//!   session per user kept by the `WithingsLogin` (restored from the token store when another
//!   instance did the login).
//!
//! # Example
//! A complete application: `/` says whether the signed-in user connected Withings and shows
//! their last weight. Here the application's "authentication" is an `x-user` header: a real
//! one reads its own session.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//!
//! use axum::extract::State;
//! use axum::http::HeaderMap;
//! use axum::response::Html;
//! use axum::routing::get;
//! use axum::Router;
//! use withings_oauth::{
//!     Client, GetMeas, MemoryPendingLogins, MemoryStore, PendingLoginStore, Scope, TokenStore,
//!     UserId, measure_type,
//! };
//! use withings_oauth_axum::WithingsLogin;
//!
//! #[derive(Clone)]
//! struct App {
//!     withings: WithingsLogin,
//!     /// The application's user -> the Withings user they connected.
//!     connected: Arc<Mutex<HashMap<String, UserId>>>,
//! }
//!
//! fn signed_in_user(headers: &HeaderMap) -> Option<String> {
//!     headers.get("x-user")?.to_str().ok().map(str::to_owned)
//! }
//!
//! async fn home(State(app): State<App>, headers: HeaderMap) -> Html<String> {
//!     let Some(me) = signed_in_user(&headers) else {
//!         return Html("Sign in first.".into());
//!     };
//!     let Some(user) = app.connected.lock().unwrap().get(&me).copied() else {
//!         return Html("<form method=post action=/withings/connect><button>Connect Withings</button></form>".into());
//!     };
//!     let weight = match app.withings.session(user).await {
//!         Ok(session) => session
//!             .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
//!             .await
//!             .ok()
//!             .and_then(|groups| {
//!                 groups.groups.first()?.measure(measure_type::WEIGHT).map(|m| m.real_value())
//!             }),
//!         Err(e) if e.login_required() => return Html("Connect Withings again.".into()),
//!         Err(_) => None,
//!     };
//!     Html(format!("Connected as Withings user {user}; last weight: {weight:?} kg"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::builder()
//!         .client_id(std::env::var("WITHINGS_CLIENT_ID")?)
//!         .client_secret(std::env::var("WITHINGS_CLIENT_SECRET")?)
//!         .redirect_uri("https://app.example.com/withings/callback")
//!         .build()?;
//!     // Shared by all instances of the application: in production a database, e.g.
//!     // `withings_oauth_sql::SqlStore` and its `pending_logins()`.
//!     let pending: Arc<dyn PendingLoginStore> = Arc::new(MemoryPendingLogins::new());
//!     let tokens: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
//!     let connected = Arc::new(Mutex::new(HashMap::new()));
//!
//!     let record = connected.clone();
//!     let withings = WithingsLogin::builder(client, pending, tokens, |request| {
//!         signed_in_user(&request.headers)
//!     })
//!     .scopes(Scope::Metrics.into())
//!     .after_login("/")
//!     .on_connected(move |login| {
//!         record.lock().unwrap().insert(login.owner, login.user_id);
//!         async { Ok::<(), std::convert::Infallible>(()) }
//!     })
//!     .build();
//!
//!     let app = Router::new()
//!         .route("/", get(home))
//!         .merge(withings.router())
//!         .with_state(App { withings, connected });
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Security
//! - The cookie that binds a login to its browser is `HttpOnly`, `SameSite=Lax`, and on https
//!   `Secure` with the `__Host-` prefix. A callback opened in another browser, even with a
//!   valid `state` and code, is refused ([`LoginError::OtherBrowser`]) and leaves the login in
//!   place: the browser that started it can still finish it. `SameSite=Strict` would break
//!   every login: the callback is a navigation from Withings' site, and browsers send `Strict`
//!   cookies only on same-site requests.
//! - A login is taken from the store once: a replayed callback finds nothing
//!   ([`LoginError::Unknown`]), even when two instances receive it at the same moment.
//! - The callback URL is rebuilt from the configured redirect URI, never from the request's
//!   `Host` header.
//! - No page, log or error holds a `state`, a code, a cookie value or a token.
//!
//! What it leaves to you: authenticating your users (the owner function), serving over https,
//! and protecting the connect route against cross-site requests like your other state-changing
//! routes (a `POST` form with your own CSRF protection; the worst a forged connect does is send
//! the user to Withings' consent page).

#![deny(missing_docs)]

mod cookie;
mod error;
mod login;
mod routes;

pub use error::LoginError;
pub use login::{Connected, WithingsLogin, WithingsLoginBuilder};

/// The README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
