//! Where credentials live between runs: the [`TokenStore`] trait and an in-memory store.
//!
//! A [`Session`](crate::Session) saves every new token pair to its store *before*
//! anyone uses the new access token (using it kills the previous refresh token), and takes
//! [`TokenStore::lock`] around each refresh, so that processes sharing one store refresh a user
//! once. The file-backed store lives in the `withings-oauth-store` crate; [`MemoryStore`] is
//! for tests and for programs that log in on every start.
//!
//! The trait is object-safe (sessions hold an `Arc<dyn TokenStore>`) and returns boxed futures,
//! so it can be implemented for a database or a keychain without an async-trait macro:
//!
//! ```
//! use withings_oauth::{MemoryStore, StoredEntry, TokenStore, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), withings_oauth::StoreError> {
//! let store = MemoryStore::new();
//! let user = UserId::new(1001);
//! assert!(store.load(user).await?.is_none());
//! store.mark_login_required(user).await?;
//! assert!(matches!(store.load(user).await?, Some(StoredEntry::LoginRequired)));
//! assert_eq!(store.users().await?, vec![user]);
//! # Ok(())
//! # }
//! ```

mod contract;
mod memory;
mod record;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use contract::{StoreError, StoreFuture, StoreLock, StoredEntry, TokenStore};
pub use memory::MemoryStore;
pub use record::{StoredCredentials, StoredCredentialsError};
