//! Withings logins for [axum] web servers.
//!
//! On a web server a login spans two requests, maybe served by two instances: the connect
//! route sends the user's browser to Withings, and the callback route receives the code, which
//! must be exchanged within 30 seconds. [`WithingsLogin`] gives both routes, and fresh access
//! tokens afterwards:
//!
//! - **connect** (`POST`, default `/withings/connect`) asks the application who the signed-in
//!   user is (a [`LoginOwner`]: the application's own authentication, never a query parameter),
//!   parks a login in a [`PendingLoginStore`](withings_oauth::PendingLoginStore) shared by the
//!   instances, binds it to the browser with a cookie encrypted with the server's
//!   [`CookieKey`], and redirects to Withings;
//! - **callback** (`GET`, the path of the client's redirect URI) takes that login back, once,
//!   only in the browser that started it and only for the user who started it, exchanges the
//!   code, saves the credentials to the [`TokenStore`](withings_oauth::TokenStore) through a
//!   [`Session`](withings_oauth::Session), tells the application which Withings user the owner
//!   connected ([`WithingsLoginBuilder::on_connected`]), and redirects to the page the
//!   application chose. Anything else is an error page ([`LoginError`]): denied, expired,
//!   already used, wrong browser, another user's login, Withings failed.
//! - [`WithingsLogin::access_token`] gives a valid access token for a Withings user, from a
//!   session per user kept by the `WithingsLogin` (restored from the token store when another
//!   instance did the login).
//! - [`refuse_cross_site`]: the CSRF check of the connect route, as a middleware for the
//!   application's other state-changing routes (disconnect, sign-out...).
//!
//! # Example
//! A complete application: `/` says whether the signed-in user connected Withings and shows
//! their last weight. Here the application's "authentication" is an `x-user` header, to keep
//! the example short: a real one reads its own session (the `withings-oauth-web-example`
//! crate signs its users in with `axum-login` and `tower-sessions`).
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//!
//! use axum::extract::{FromRequestParts, State};
//! use axum::http::StatusCode;
//! use axum::http::request::Parts;
//! use axum::response::Html;
//! use axum::routing::{get, post};
//! use axum::Router;
//! use withings_oauth::{
//!     Client, GetMeas, MemoryPendingLogins, MemoryStore, PendingLoginStore, Scope, TokenStore,
//!     UserId, measure_type,
//! };
//! use withings_oauth_axum::{CookieKey, LoginOwner, WithingsLogin, refuse_cross_site};
//!
//! #[derive(Clone)]
//! struct App {
//!     withings: WithingsLogin,
//!     /// The application's user -> the Withings user they connected.
//!     connected: Arc<Mutex<HashMap<String, UserId>>>,
//! }
//!
//! /// The signed-in user (from a header here; from the application's session in real life).
//! struct SignedIn(String);
//!
//! impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
//!     type Rejection = StatusCode;
//!
//!     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
//!         let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
//!         user.map(|u| SignedIn(u.to_owned())).ok_or(StatusCode::UNAUTHORIZED)
//!     }
//! }
//!
//! impl LoginOwner for SignedIn {
//!     fn owner_id(&self) -> String {
//!         self.0.clone()
//!     }
//! }
//!
//! async fn home(State(app): State<App>, SignedIn(me): SignedIn) -> Html<String> {
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
//! async fn disconnect(State(app): State<App>, SignedIn(me): SignedIn) -> &'static str {
//!     let user = app.connected.lock().unwrap().remove(&me);
//!     if let Some(user) = user {
//!         let _ = app.withings.disconnect(user).await;
//!     }
//!     "disconnected"
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
//!     // The same key on every instance, from the configuration.
//!     let cookie_key = CookieKey::from_base64(&std::env::var("APP_COOKIE_KEY")?)?;
//!     let connected = Arc::new(Mutex::new(HashMap::new()));
//!
//!     let record = connected.clone();
//!     let withings = WithingsLogin::builder::<SignedIn>(client, pending, tokens, &cookie_key)
//!         .scopes(Scope::Metrics.into())
//!         .after_login("/")
//!         .on_connected(move |login| {
//!             record.lock().unwrap().insert(login.owner, login.user_id);
//!             async { Ok::<(), std::convert::Infallible>(()) }
//!         })
//!         .build();
//!
//!     let app = Router::new()
//!         .route("/", get(home))
//!         .route("/disconnect", post(disconnect))
//!         // Every state-changing route of the application refuses cross-site requests.
//!         .layer(axum::middleware::from_fn(refuse_cross_site))
//!         .merge(withings.router())
//!         .with_state(App { withings, connected });
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Security
//! - The cookie that binds a login to its browser is encrypted and authenticated with the
//!   server's [`CookieKey`], and holds the time it was issued and the user it was issued to: a
//!   cookie the server did not issue (planted by a sibling subdomain, or by another port's page
//!   on an http host), one issued to another user, or one older than a pending login's
//!   lifetime is ignored, and the browser gets a fresh binding.
//! - It is `HttpOnly`, `SameSite=Lax`, and on https `Secure` with the `__Host-` prefix. A
//!   callback opened in another browser, even with a valid `state` and code, is refused
//!   ([`LoginError::OtherBrowser`]) and leaves the login in place: the browser that started it
//!   can still finish it. `SameSite=Strict` would break every login: the callback is a
//!   navigation from Withings' site, and browsers send `Strict` cookies only on same-site
//!   requests.
//! - The callback finishes a login only for the user who started it ([`LoginError::OtherUser`]
//!   otherwise, before the code is spent): a login an attacker started for their own account
//!   can't be finished in a victim's browser, whatever cookie they planted there.
//! - The connect route is `POST` only, behind [`refuse_cross_site`]: a page of another origin
//!   can't start a login in a signed-in user's browser.
//! - A login is taken from the store once: a replayed callback finds nothing
//!   ([`LoginError::Unknown`]), even when two instances receive it at the same moment.
//! - The callback URL is rebuilt from the configured redirect URI, never from the request's
//!   `Host` header.
//! - No page, log or error holds a `state`, a code, a cookie value or a token; error pages show
//!   no internals (a database's message, a key id), only a reference to the log line that has
//!   them.
//!
//! What it leaves to you: authenticating your users ([`LoginOwner`]), serving over https,
//! keeping the [`CookieKey`] secret and the same on every instance, and guarding your own
//! state-changing routes ([`refuse_cross_site`]).

#![deny(missing_docs)]

mod cookie;
mod cross_site;
mod error;
mod login;
#[cfg(feature = "operations")]
mod operations;
mod owner;
mod routes;
mod telemetry;

pub use cookie::{CookieKey, CookieKeyError};
pub use cross_site::refuse_cross_site;
pub use error::LoginError;
pub use login::{Connected, WithingsLogin, WithingsLoginBuilder};
#[cfg(feature = "operations")]
pub use operations::{install_metrics_recorder, operations_router};
pub use owner::LoginOwner;

/// The README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
