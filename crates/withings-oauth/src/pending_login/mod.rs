//! Server-side logins: where a web server keeps a [`ParkedLogin`](crate::ParkedLogin) between
//! the request that starts it and the request that receives its callback.
//!
//! `contract` holds the [`PendingLoginStore`] trait and its error; `memory` the in-process
//! store.

mod contract;
mod memory;

pub use contract::{DEFAULT_PENDING_LOGIN_TTL, PendingLoginError, PendingLoginStore};
pub use memory::MemoryPendingLogins;

#[cfg(test)]
mod tests;
