//! Server-side logins: where a web server keeps a [`ParkedLogin`](crate::ParkedLogin) between
//! the request that starts it and the request that receives its callback.
//!
//! `contract` holds the [`PendingLoginStore`] trait and its error; `memory` the in-process
//! store; `conformance` (feature `test-util`) the checks every store must pass.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod contract;
mod memory;

pub use contract::{
    DEFAULT_PENDING_LOGIN_TTL, DEFAULT_PENDING_LOGINS_PER_OWNER, PendingLoginError,
    PendingLoginStore,
};
pub use memory::MemoryPendingLogins;

#[cfg(test)]
mod tests;
