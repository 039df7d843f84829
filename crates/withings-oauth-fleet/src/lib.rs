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
//! - [`FleetError`]: what a caller is told, including when to retry.
//!
//! # How a token is handed out
//! 1. **Fresh**: the user's cached session has a token that does not expire within the margin:
//!    one read lock, one lookup, no call.
//! 2. **Due**: the session refreshes, once for all the instance's callers; across instances
//!    the store's lease makes one refresh, and the others adopt its stored pair. At most
//!    [`concurrent_refreshes`](FleetBuilder::concurrent_refreshes) users refresh at once in
//!    an instance (16 by default; the others' callers wait in the instance, not on the
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
//! # What it leaves to you
//! - Sharing the limit between instances: the [`TokenBucket`] counts one process's requests.
//!   Give each instance its share of the budget, or a [`RateLimiter`] shared through a
//!   database.
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
mod sweep;

pub use error::FleetError;
pub use event::FleetEvent;
pub use fleet::{Fleet, FleetBuilder};
pub use health::UserHealth;
pub use limiter::{RateLimit, RateLimiter, TokenBucket, request_gate};
pub use sweep::{SweepReport, Sweeper};
