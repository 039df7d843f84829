//! A faithful offline Withings OAuth 2.0 server, for tests, demos and integrators.
//!
//! The sandbox speaks Withings' protocol on `127.0.0.1`, including its quirks: every answer
//! of the API host is HTTP 200 with a `{status, body}` envelope, errors carry Withings'
//! exact texts, `userid` is a string after a code exchange and a number after a refresh,
//! codes live 30 seconds, and a rotated refresh token dies 8 hours later or as soon as its
//! successor's access token is used. It can also be told to misbehave (delays, dropped
//! connections, HTTP 500, truncated JSON) and its clock can be moved forward.
//!
//! It depends on nothing else of this project, so it cannot share a bug with the client it
//! tests.
//!
//! # Contents
//! - [`Sandbox`]: start, base URLs, shutdown.
//! - [`SandboxHandle`]: clock, faults, counters, live codes and tokens, switches, tokens
//!   minted without a login ([`SandboxHandle::issue_tokens`]), measurements added
//!   ([`SandboxHandle::add_measures`], [`NewMeasure`]), notification subscriptions
//!   ([`Subscription`]).
//! - [`SandboxConfig`], [`App`], [`User`]: apps, users (one or a numbered fleet), lifetimes,
//!   rate limit, [strict rotation](SandboxConfig::strict_rotation), page size, loopback
//!   notification callbacks.
//! - [`Counters`], [`UserCounters`]: what the clients did, in total and per user.
//! - [`error_text`]: the `error` texts of the envelopes.
//!
//! # Endpoints
//! | path | what |
//! |---|---|
//! | `GET /oauth2_user/authorize2` | login and consent page (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`, `mode=demo`) |
//! | `POST /oauth2_user/authorize2` | the form's submission: `302` to the app with `code` or `error=access_denied` |
//! | `POST /v2/oauth2` | `requesttoken` (secret or signed), `revoke` and `getdemoaccess` (signed) |
//! | `POST /v2/signature` | `getnonce` |
//! | `POST /measure` | `getmeas` with `Authorization: Bearer` |
//! | `POST /v2/measure` | `getactivity`, `getworkouts`, `getintradayactivity` |
//! | `POST /v2/sleep` | `get`, `getsummary` |
//! | `POST /v2/heart` | `list`, `get` |
//! | `POST /v2/user` | `getdevice` |
//! | `POST /notify` | `subscribe`, `list`, `get`, `revoke`, `update`; notifications on [`SandboxHandle::add_measures`] |
//!
//! Every data service answers in Withings' envelope with 30 days of fake data that depend
//! only on the user id and the day, honours its documented filters (dates, `lastupdate`,
//! types, `category`, `offset`/`more`, `data_fields`) and needs its scope. The crate's README
//! lists every parameter and what is not served.
//!
//! The consent page has stable element ids for browser tests: `consent-form`, `email`,
//! `password`, `allow`, `deny`, one checkbox per requested scope (`scope-user-metrics`, ...),
//! `error` for an error message, and `hint` for the box showing the first user's email and
//! password.
//!
//! # Example: the whole authorization code flow
//! ```
//! use withings_sandbox::{Sandbox, SandboxConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Auto-approve skips the login form: the authorize URL redirects with a code at once.
//! let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true)).await?;
//! let http = reqwest::Client::builder()
//!     .redirect(reqwest::redirect::Policy::none())
//!     .build()?;
//!
//! let redirect_uri = "http://127.0.0.1:8080/callback"; // any port: loopback rule
//! let mut authorize = sandbox.account_url().join("oauth2_user/authorize2")?;
//! authorize
//!     .query_pairs_mut()
//!     .append_pair("response_type", "code")
//!     .append_pair("client_id", DEFAULT_CLIENT_ID)
//!     .append_pair("redirect_uri", redirect_uri)
//!     .append_pair("scope", "user.info,user.metrics")
//!     .append_pair("state", "xyz");
//! let response = http.get(authorize).send().await?;
//! assert_eq!(response.status(), 302);
//! let location = url::Url::parse(response.headers()["location"].to_str()?)?;
//! let code = location
//!     .query_pairs()
//!     .find(|(k, _)| k == "code")
//!     .map(|(_, v)| v.into_owned())
//!     .expect("a code");
//!
//! let tokens: serde_json::Value = http
//!     .post(sandbox.api_url().join("v2/oauth2")?)
//!     .form(&[
//!         ("action", "requesttoken"),
//!         ("grant_type", "authorization_code"),
//!         ("client_id", DEFAULT_CLIENT_ID),
//!         ("client_secret", DEFAULT_CLIENT_SECRET),
//!         ("code", code.as_str()),
//!         ("redirect_uri", redirect_uri),
//!     ])
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(tokens["status"], 0);
//! assert_eq!(tokens["body"]["userid"], "1001"); // a string here, a number after a refresh
//! assert_eq!(sandbox.handle().counters().token_code, 1);
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Faithfulness
//! What Withings documents or is known to do, the sandbox does. Where Withings is silent the
//! sandbox guesses, and says so in the docs of the item concerned; the crate's README lists
//! every guess. The guesses lean strict: an exact `redirect_uri` match, lowercase-hex
//! signatures, comma-separated scopes only.
//!
//! One exception leans lenient, so that tests can listen on random ports: a registered
//! loopback `http` callback without a port (such as [`LOOPBACK_CALLBACK`]) matches a
//! `redirect_uri` on any port of `127.0.0.1`, `[::1]` or `localhost`, as RFC 8252 §7.3 asks.
//! The real Withings may require an exact match;
//! [`SandboxConfig::exact_redirect_uris`]`(true)` turns the leniency off.
//!
//! # What it is not
//! A test server: secrets are compared in plain text, tokens are visible through
//! [`SandboxHandle::live_tokens`], there is no TLS, and nothing is persisted.

#![deny(missing_docs)]

mod admin;
mod authorize;
mod clock;
mod config;
mod counters;
mod data;
mod fault;
mod issue;
mod ledger;
mod notify;
mod rotation;
mod server;
mod signature;
mod state;
mod token;
mod wire;

pub use config::{
    App, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PAGE_SIZE, DEMO_USERID, HTTPS_CALLBACK,
    KNOWN_SCOPES, LOOPBACK_CALLBACK, NUMBERED_USERID_BASE, SEEDED_EMAIL, SEEDED_PASSWORD,
    SEEDED_USERID, SandboxConfig, User,
};
pub use counters::{Counters, UserCounters};
pub use data::{MeasureError, NewMeasure};
pub use fault::{Endpoint, Fault};
pub use issue::{IssueError, IssuedTokens};
pub use notify::Subscription;
pub use server::{Sandbox, SandboxHandle};
pub use signature::TIMESTAMP_TOLERANCE_SECS;
pub use state::{CodeInfo, TokenInfo, TokenKind};
pub use wire::{MAX_BODY_BYTES, error_text};

/// Path of the authorize page on the account host.
pub const AUTHORIZE_PATH: &str = "/oauth2_user/authorize2";
/// Path of the token endpoint (`requesttoken`, `revoke`, `getdemoaccess`) on the API host.
pub const TOKEN_PATH: &str = "/v2/oauth2";
/// Path of the nonce endpoint on the API host.
pub const SIGNATURE_PATH: &str = "/v2/signature";
/// Path of the measure endpoint on the API host.
pub const MEASURE_PATH: &str = "/measure";

/// The request parsing every endpoint starts with, for the fuzz targets in `fuzz/`. Not part of
/// the sandbox's API.
#[doc(hidden)]
pub mod fuzzing {
    /// The value an endpoint reads for `name`: the first one, from the form body before the
    /// query string; an empty value counts as absent.
    pub fn param(query: Option<&str>, body: &[u8], name: &str) -> Option<String> {
        crate::wire::Params::parse(query, body)
            .get(name)
            .map(str::to_owned)
    }

    /// Every value of `name`, form body first, as the endpoints that refuse repeated parameters
    /// see them.
    pub fn all(query: Option<&str>, body: &[u8], name: &str) -> Vec<String> {
        crate::wire::Params::parse(query, body)
            .all(name)
            .map(str::to_owned)
            .collect()
    }

    /// A comma-separated scope list as the authorize page and `getdemoaccess` accept it.
    pub fn scopes(raw: &str) -> Option<Vec<String>> {
        crate::wire::parse_scopes(raw)
    }
}
