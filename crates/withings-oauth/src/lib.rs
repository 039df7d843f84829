//! Withings OAuth 2.0, as a typestate workflow: log in, refresh, revoke, and never lose a token.
//!
//! Withings' API speaks OAuth 2.0 with twists: a `{status, body}` envelope, errors with HTTP 200,
//! comma-separated scopes, 30-second single-use codes, and refresh tokens that rotate on every
//! refresh. This crate models the login as types, so the mistakes that lose users' tokens do not
//! compile.
//!
//! # Contents
//! - [The flow as types](#the-flow-as-types)
//! - [Logging in](#logging-in)
//! - [Server-side logins](#server-side-logins)
//! - [Refreshing](#refreshing)
//! - [Storing credentials](#storing-credentials)
//! - [Signed calls](#signed-calls)
//! - [Errors](#errors)
//! - [Security](#security)
//!
//! # The flow as types
//! ```text
//!  Unauthorized ──begin()──▶ PendingCallback ──complete(callback)──▶ Authorized
//!       │                                                           │   ▲
//!       └──────────────demo_access()────────────────────────────────┘   │ refresh()
//!                                                                       └─┘ (consumes, returns new)
//!  Authorized ──revoke()──▶ (gone)
//! ```
//! Each arrow consumes the value it starts from: a callback can't be completed twice, a refresh
//! can't happen before login, and a refreshed-away login can't be refreshed again.
//!
//! # Logging in
//! A [`UserAgent`] shows the authorize page and brings back the callback URL; [`authorize`] does
//! the whole login. Here a scripted agent and a mock token endpoint stand in for the browser and
//! Withings:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use withings_oauth::{Client, Scope, Scopes, authorize};
//! use withings_oauth::ScriptedAgent;
//! # let server = wiremock::MockServer::start().await;
//! # wiremock::Mock::given(wiremock::matchers::path("/v2/oauth2"))
//! #     .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(
//! #         r#"{"status":0,"body":{"userid":"12345678","access_token":"a075","refresh_token":"f631",
//! #            "expires_in":10800,"scope":"user.metrics","token_type":"Bearer"}}"#))
//! #     .mount(&server).await;
//! # let base_url: url::Url = server.uri().parse()?;
//!
//! let client = Client::builder()
//!     .client_id("my-client-id")
//!     .client_secret("my-client-secret")
//!     .redirect_uri("https://app.example.com/withings/callback")
//!     .base_url(base_url) // a local sandbox; omit for the real Withings
//!     .build()?;
//!
//! // A browser would show the page; this agent answers as if the user clicked "Allow".
//! let agent = ScriptedAgent::new().then(|authorize_url| {
//!     let state = authorize_url.query_pairs().find(|(k, _)| k == "state").unwrap().1;
//!     Ok(format!("https://app.example.com/withings/callback?code=c0de&state={state}").parse().unwrap())
//! });
//!
//! let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await?;
//! assert_eq!(authorized.user_id().get(), 12345678);
//! assert!(authorized.scopes().contains(&Scope::Metrics));
//! # Ok(())
//! # }
//! ```
//!
//! Step by step, the same login is [`Unauthorized::begin`] (which makes the `state` and the
//! authorize URL), then [`PendingCallback::complete`] with the callback URL.
//!
//! # Server-side logins
//! On a web server, the request that sends the browser to Withings and the request that
//! receives the callback are two requests, maybe served by two instances. The first parks the
//! login ([`PendingCallback::park_revealing_state`]) in a [`PendingLoginStore`] shared by the
//! instances, bound to the browser by a cookie ([`BrowserBinding`]); the second takes it back,
//! once, with the callback's [`StateHash`] and the cookie, and completes it at once (the code
//! lives 30 seconds). The `withings-oauth-axum` crate does both as routes. A store keeps at
//! most [`DEFAULT_PENDING_LOGINS_PER_OWNER`] logins per owner, dropping the oldest.
//! [`MemoryPendingLogins`] serves one process; `withings-oauth-sql`'s `SqlPendingLogins`
//! serves instances sharing a database.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use withings_oauth::{
//!     BrowserBinding, Client, MemoryPendingLogins, PendingLoginError, PendingLoginStore, Scope,
//!     Scopes, StateHash, Unauthorized,
//! };
//! # let client = Client::builder().client_id("id").client_secret("secret")
//! #     .redirect_uri("https://app.example.com/withings/callback").build()?;
//! let pending_logins = MemoryPendingLogins::new();
//!
//! // GET /connect: park the login, set the cookie, redirect to the authorize URL.
//! let browser = BrowserBinding::new_random()?;
//! let pending = Unauthorized::new(&client, Scopes::from(Scope::Metrics)).begin()?;
//! let authorize_url = pending.authorize_url().clone();
//! pending_logins.put(pending.park_revealing_state("app-user-42", &browser)).await?;
//!
//! // GET /callback?code=...&state=...: take it back with the cookie, once.
//! # let state = authorize_url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
//! # let callback: url::Url = format!("https://app.example.com/withings/callback?code=c&state={state}").parse()?;
//! let state_hash = StateHash::of_callback(&callback).expect("a state");
//! let parked = pending_logins.take(&state_hash, &browser.hash()).await?;
//! assert_eq!(parked.owner(), "app-user-42");
//! let pending = parked.restore(&client)?;
//! // pending.complete(&callback).await? exchanges the code.
//! let again = pending_logins.take(&state_hash, &browser.hash()).await;
//! assert!(matches!(again.unwrap_err(), PendingLoginError::Unknown));
//! # drop(pending);
//! # Ok(())
//! # }
//! ```
//!
//! # Refreshing
//! [`Authorized::refresh`] (or [`refresh()`]) consumes the login and returns a new one.
//! If the refresh fails while the old refresh token is still good (connection refused, timeout,
//! HTTP 5xx, rate limit...), the error hands the old login back:
//!
//! ```no_run
//! # async fn f(authorized: withings_oauth::Authorized) -> Result<withings_oauth::Authorized, withings_oauth::RefreshError> {
//! match authorized.refresh().await {
//!     Ok(fresh) => Ok(fresh), // store it before using its access token
//!     Err(e) if e.login_required() => Err(e), // the refresh token is dead: log in again
//!     Err(e) => {
//!         let old = e.into_login().expect("kept unless login is required");
//!         Ok(old) // try again later
//!     }
//! }
//! # }
//! ```
//!
//! # Storing credentials
//! Secrets are [`secrecy::SecretString`], which does not serialize. To store a login, call
//! [`Credentials::reveal_for_storage`] (the name says what it does) and write the
//! [`StoredCredentials`]; to restore, [`Credentials::from_stored`] then
//! [`Authorized::from_credentials`].
//!
//! # Signed calls
//! With [`AuthMethod::Signature`] the token calls send a nonce and an HMAC-SHA256 signature
//! instead of the secret. Revoke ([`Authorized::revoke`]) and demo access
//! ([`Unauthorized::demo_access`]) are always signed. See [`sign`].
//!
//! # Errors
//! [`Error`] for a login, [`ApiError`] for any call to Withings (with dedicated variants for an
//! invalid code, an invalid refresh token, an invalid client and the rate limit), and
//! [`RefreshError`] for a refresh. Every message says what to do next.
//!
//! # Security
//! What this crate guarantees:
//! - `state` is 256 bits from the operating system's CSPRNG and is compared in constant time;
//!   a callback must go to the registered redirect URI and carry exactly one `state` and `code`.
//! - Client secret, code, state and tokens are `SecretString` from the moment they are read until
//!   they are written to the wire or to storage; no `Debug` or `Display` of this crate's types
//!   and errors, and no `tracing` field, contains them or a raw response body. If Withings'
//!   error text repeats a secret of the request, it is masked.
//! - Plain `http` is refused except on loopback addresses; the default HTTP client does not
//!   follow redirects and has timeouts; answers larger than a limit are refused.
//! - The loopback listener ([`LoopbackAgent`], [`guide::loopback`]) binds loopback addresses
//!   only (both `127.0.0.1` and `[::1]` for `localhost`), ignores callbacks that are not this
//!   login's and keeps waiting, so a local program that does not know the `state` can't end or
//!   hijack the login; it limits header size, header time and connections, and opens the
//!   browser at a one-time local link rather than passing the `state` on a command line. A
//!   second request for that link ends the login ([`UserAgentError::StartLinkReused`]): someone
//!   else has it. A fixed port another program holds is refused by both loopback agents, since
//!   the browser would send that program the code. The paste agent ([`PasteAgent`]) never
//!   echoes what was pasted.
//! - A parked login ([`ParkedLogin`]) is handed out once by a [`PendingLoginStore`], only to
//!   the browser holding the cookie of the login it started, and only within its lifetime
//!   ([`DEFAULT_PENDING_LOGIN_TTL`]); a callback from another browser leaves it in place.
//! - Sessions ([`Session`]) refresh one at a time per user (across processes through the
//!   store's lease), store a refreshed pair before anyone can use it, and never overwrite a
//!   newer login: every write is a compare-and-swap ([`TokenStore`]).
//! - An access token Withings says lives less than [`MIN_TOKEN_LIFETIME`] is used that long, and
//!   a session refreshes a short-lived token at half its life: a server bug can't make every
//!   call a refresh.
//! - Errors say whether retrying later may help ([`ApiError::is_transient`]) and whether the
//!   program's configuration is wrong ([`ApiError::is_configuration`]).
//!
//! What it leaves to you:
//! - Where credentials are stored and how private that is ([`StoredCredentials`] is clear text).
//! - Refreshing once at a time: two refreshes racing with one refresh token break the chain.
//!   Hold one [`Authorized`] per user and refresh it under a lock, or use a session that does.
//! - Storing the new credentials before using the new access token: using it kills the old
//!   refresh token.
//! - Protecting the authorize URL (it carries the `state`) and the machine's browser.

#![deny(missing_docs)]

// Modules; their dependency order is drawn in docs/architecture.md.
mod api;
mod binding;
mod callback;
mod config;
mod credentials;
mod csrf;
mod future;
pub mod guide;
mod json;
mod login;
mod pending_login;
mod scope;
mod secret;
mod session;
mod store;
mod telemetry;
mod time;
mod user_agent;

// The public API: one path per item.
pub use api::error::{ApiError, TransportKind};
pub use api::measure::{GetMeas, Measure, MeasureGroup, MeasureGroups, measure_type};
pub use api::signature::{get_nonce, sign};
pub use api::status::StatusFamily;
pub use api::token::MIN_TOKEN_LIFETIME;
pub use binding::{BindingHash, BrowserBinding, StateHash};
pub use callback::{CallbackError, is_redirect_target, screen_callback};
pub use config::{
    AuthMethod, BeforeRequest, Client, ClientBuilder, Cloud, ConfigError, is_loopback,
};
pub use credentials::{Credentials, InvalidUserId, UserId};
pub use future::BoxFuture;
pub use json::json_error_reason;
pub use login::{
    Authorized, Error, ParkedLogin, PendingCallback, RefreshError, RevokeError, Unauthorized,
    authorize, login, refresh,
};
pub use pending_login::{
    DEFAULT_PENDING_LOGIN_TTL, DEFAULT_PENDING_LOGINS_PER_OWNER, MemoryPendingLogins,
    PendingLoginError, PendingLoginStore,
};
pub use scope::{InvalidScope, Scope, Scopes};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, CsrfState, RefreshToken};
pub use session::{DEFAULT_MARGIN, Session, SessionError, SessionStatus};
#[cfg(any(test, feature = "test-util"))]
pub use store::testing;
pub use store::{
    Conflict, DEFAULT_LEASE_TTL, Expected, LEASE_SLACK, Lease, LeaseTerm, LocalLeases,
    MIN_REQUEST_TIMEOUT, MemoryStore, StoreError, StoreFuture, StoreLocation, StoredCredentials,
    StoredCredentialsError, StoredEntry, TokenStore, Version, VersionedEntry, VersionedMap,
    check_private_dir, check_private_file, ensure_owner,
};
pub use time::{Clock, SystemClock};
#[cfg(feature = "loopback")]
pub use user_agent::loopback::{BrowserOrPasteAgent, LoopbackAgent};
pub use user_agent::paste::PasteAgent;
pub use user_agent::{AgentFuture, Prepared, ScriptedAgent, UserAgent, UserAgentError};

pub use chrono;
pub use secrecy;
pub use url;

/// The README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
