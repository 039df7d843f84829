//! Fresh Withings access tokens for thousands of users, on any number of instances, within
//! Withings' rate limit, without ever forking a user's chain of rotating refresh tokens.
//!
//! A backend with many connected users builds one [`Fleet`] per instance over one shared
//! [`TokenStore`](withings_oauth::TokenStore) and asks it for any user's token, or makes the
//! user's data calls through it.
//!
//! # Contents
//! - [`Fleet`]: [`access_token`](Fleet::access_token), [`get_meas`](Fleet::get_meas),
//!   [`call`](Fleet::call), [`revoke`](Fleet::revoke), per-user [`health`](Fleet::health),
//!   [`subscribe`](Fleet::subscribe) to [`FleetEvent`]s, the sweep
//!   ([`sweep_once`](Fleet::sweep_once), [`spawn_sweeper`](Fleet::spawn_sweeper));
//!   built by [`FleetBuilder`].
//! - [`RateLimiter`]: one budget for every request of the application; [`TokenBucket`] is the
//!   limiter of one process, [`RateLimit`] its budget, [`request_gate`] puts any limiter in
//!   front of a [`Client`](withings_oauth::Client) of your own.
//! - `SqlRateLimiter` (feature `sql`, and `sql-postgres` for PostgreSQL): one budget for every
//!   instance, kept in the SQL store they share; see
//!   [Sharing the limit between instances](#sharing-the-limit-between-instances).
//! - [`FleetError`]: what a caller is told, including when to retry.
//!
//! # How a token is handed out
//! 1. **Fresh**: the user's cached session has a token that does not expire within the margin:
//!    one read lock, one lookup of the cache's copy of that token, one read of the clock, no
//!    call.
//! 2. **Due**: the session refreshes, once for all the instance's callers; across instances
//!    the store's lease makes one refresh, and the others adopt its stored pair. At most
//!    [`concurrent_refreshes`](FleetBuilder::concurrent_refreshes) users refresh at once in
//!    an instance (64 by default; the others' callers wait in the instance, not on the
//!    store's connections). The limiter is waited for first; a 601 answer slows it and is
//!    retried with backoff and jitter.
//! 3. **Failed**: the user cools down (30 s, doubling up to 15 minutes); callers get
//!    [`FleetError::CoolingDown`] with the time to retry, and Withings hears nothing.
//! 4. **Rejected refresh token**: the session has read the store first (a newer entry there
//!    means another instance refreshed, not a dead grant); the user needs re-authorization,
//!    [`FleetEvent::NeedsReauthorization`] is sent, and nothing is tried until a new login is
//!    stored.
//!
//! Users nobody asks for are not refreshed every three hours: the sweep only renews logins
//! unused for 30 days (configurable), before their refresh token's year runs out.
//!
//! # Sharing the limit between instances
//! Withings counts requests per application, whatever instance sends them. The
//! [`TokenBucket`] counts one process's; with the feature `sql`, `SqlRateLimiter` keeps one
//! token bucket in the database the instances already share for their tokens
//! (`withings_oauth_sql::SqlStore`: PostgreSQL for several machines, SQLite for the processes
//! of one): each take is one statement, refilled on the database's clock, so N instances
//! together stay within one [`RateLimit`]. A 601 seen by one instance slows all of them. If
//! the database fails, each instance logs a warning and keeps to its share of the budget
//! (`limit / instances`) until the database answers again, rather than stopping its traffic.
//!
//! ```
//! # #[cfg(feature = "sql")]
//! # mod shared {
//! use std::sync::Arc;
//! use withings_oauth::{Client, TokenStore};
//! use withings_oauth_fleet::{Fleet, RateLimit, SqlRateLimiter};
//! use withings_oauth_sql::{SqlOptions, SqlStore};
//!
//! pub async fn instance(url: &str) -> Result<Fleet, Box<dyn std::error::Error>> {
//!     // The database every instance opens: its tokens and its rate limit.
//!     let store = SqlStore::connect(url, SqlOptions::from_env()?).await?;
//!     // 120 a minute for the application; 4 instances, 30 each if the database fails.
//!     let limiter = SqlRateLimiter::new(&store, RateLimit::per_minute(120)).instances(4);
//!     let client = Client::builder()
//!         .client_id("my-client-id")
//!         .client_secret("my-client-secret")
//!         .redirect_uri("https://app.example.com/withings/callback");
//!     let tokens: Arc<dyn TokenStore> = Arc::new(store);
//!     Ok(Fleet::builder(client, tokens).limiter(Arc::new(limiter)).build()?)
//! }
//! # }
//! # #[cfg(feature = "sql")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! #     let dir = tempfile::tempdir().unwrap();
//! #     let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
//! #     let fleet = shared::instance(&url).await.unwrap();
//! #     let _ = fleet;
//! # }
//! # #[cfg(not(feature = "sql"))]
//! # fn main() {}
//! ```
//!
//! Other clients of the same application put the same limiter in front of their requests
//! with [`request_gate`].
//!
//! # What it leaves to you
//! - Counting the instances: the fallback share of `SqlRateLimiter` is only right if
//!   `instances` is at least the number running.
//! - Telling users: each instance sends the events it sees; dedupe them if several instances
//!   subscribe.
//! - Logging users in: the fleet serves logins some other code stored
//!   ([`Session::start`](withings_oauth::Session::start), the axum routes...).

mod cache;
mod error;
mod event;
mod fleet;
mod health;
mod limiter;
mod save_gate;
#[cfg(feature = "sql")]
mod sql_limiter;
mod sweep;
mod telemetry;

pub use error::FleetError;
pub use event::FleetEvent;
pub use fleet::{Fleet, FleetBuilder};
pub use health::UserHealth;
pub use limiter::{RateLimit, RateLimiter, TokenBucket, request_gate};
#[cfg(feature = "sql")]
pub use sql_limiter::SqlRateLimiter;
pub use sweep::{SweepReport, Sweeper, is_idle};
