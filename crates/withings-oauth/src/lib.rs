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
//! use withings_oauth::user_agent::ScriptedAgent;
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
//! # Refreshing
//! [`Authorized::refresh`] (or [`refresh::refresh`]) consumes the login and returns a new one.
//! If the refresh fails while the old refresh token is still good (connection refused, timeout,
//! HTTP 5xx, rate limit...), the error hands the old login back:
//!
//! ```no_run
//! # async fn f(authorized: withings_oauth::Authorized) -> Result<withings_oauth::Authorized, withings_oauth::refresh::RefreshError> {
//! match authorized.refresh().await {
//!     Ok(fresh) => Ok(fresh), // store it before using its access token
//!     Err(e) if e.login_required() => Err(e), // the refresh token is dead: log in again
//!     Err(e) => {
//!         let old = e.into_previous().expect("kept unless login is required");
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
//! [`Authorized::restore_from_stored`].
//!
//! # Signed calls
//! With [`AuthMethod::Signature`] the token calls send a nonce and an HMAC-SHA256 signature
//! instead of the secret. Revoke ([`Authorized::revoke`]) and demo access
//! ([`Unauthorized::demo_access`]) are always signed. See [`signature`].
//!
//! # Errors
//! [`Error`] for a login, [`ApiError`] for any call to Withings (with dedicated variants for an
//! invalid code, an invalid refresh token, an invalid client and the rate limit), and
//! [`refresh::RefreshError`] for a refresh. Every message says what to do next.
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
//! - The loopback listener ([`loopback`]) binds loopback addresses only (both `127.0.0.1` and
//!   `[::1]` for `localhost`), ignores callbacks that are not this login's and keeps waiting, so
//!   a local program that does not know the `state` can't end or hijack the login; it limits
//!   header size, header time and connections, and opens the browser at a one-time local link
//!   rather than passing the `state` on a command line. The paste agent ([`paste`]) never echoes
//!   what was pasted.
//! - Sessions ([`session`]) refresh one at a time per user (and across processes with a store
//!   whose lock is cross-process) and store a refreshed pair before anyone can use it.
//!
//! What it leaves to you:
//! - Where credentials are stored and how private that is ([`StoredCredentials`] is clear text).
//! - Refreshing once at a time: two refreshes racing with one refresh token break the chain.
//!   Hold one [`Authorized`] per user and refresh it under a lock, or use a session that does.
//! - Storing the new credentials before using the new access token: using it kills the old
//!   refresh token.
//! - Protecting the authorize URL (it carries the `state`) and the machine's browser.

#![deny(missing_docs)]

mod callback;
pub mod config;
pub mod credentials;
pub mod error;
pub mod flow;
#[cfg(feature = "loopback")]
pub mod loopback;
pub mod paste;
pub mod refresh;
pub mod scope;
pub mod session;
pub mod signature;
mod state;
pub mod store;
mod token;
pub mod user_agent;
mod wire;

pub use config::{AuthMethod, Client, ClientBuilder, Cloud};
pub use credentials::{Credentials, StoredCredentials, StoredCredentialsError, UserId};
pub use error::{ApiError, CallbackError, ConfigError, Error, StatusFamily, TransportKind};
pub use flow::{Authorized, PendingCallback, RevokeError, Unauthorized, authorize, login};
pub use scope::{Scope, Scopes};
pub use session::{AccessToken, Session, SessionError};
pub use store::{MemoryStore, StoreError, TokenStore};
pub use user_agent::{UserAgent, UserAgentError};

pub use chrono;
pub use secrecy;
pub use url;

/// The README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
