//! The [`TokenStore`] contract: what a store promises the sessions that share it.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;

use crate::credentials::{Credentials, UserId};
use crate::future::BoxFuture;

/// The future every [`TokenStore`] method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A place that keeps each user's newest credentials.
///
/// Implementations must make [`save`](Self::save) durable before it returns `Ok`: the session
/// publishes the new access token only then.
pub trait TokenStore: Send + Sync {
    /// The user's entry, or `None` if the store knows nothing of the user.
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<StoredEntry>>;

    /// Stores `credentials` as the user's newest, replacing whatever was there.
    fn save<'a>(&'a self, user: UserId, credentials: &'a Credentials) -> StoreFuture<'a, ()>;

    /// Forgets the user (after a logout or a revoke). Deleting an unknown user is not an error.
    fn delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()>;

    /// Records that the user's refresh token was rejected, dropping the dead tokens, so that
    /// every program sharing the store knows the user must log in again.
    fn mark_login_required<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()>;

    /// Every user the store has an entry for (a fleet), in ascending order.
    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>>;

    /// Takes the user's refresh lock, held across one refresh (load, refresh, save).
    ///
    /// A store shared by several processes must make this lock exclusive across them, or two
    /// processes may refresh with the same refresh token and break the chain. The default is a
    /// lock that excludes nothing, right for a store used by one session per user.
    fn lock<'a>(&'a self, user: UserId) -> StoreFuture<'a, StoreLock> {
        let _ = user;
        Box::pin(async { Ok(StoreLock::none()) })
    }
}

/// What a store holds for a user.
#[derive(Clone, Debug)]
pub enum StoredEntry {
    /// The newest credentials.
    Credentials(Credentials),
    /// The refresh token was rejected: the user must log in again.
    LoginRequired,
}

/// A held [`TokenStore::lock`]; dropping it releases the lock.
pub struct StoreLock {
    _guard: Option<Box<dyn Any + Send>>,
}

impl StoreLock {
    /// A lock that excludes nothing.
    pub fn none() -> Self {
        Self { _guard: None }
    }

    /// Wraps a guard (a file lock, a mutex guard...) released when this is dropped.
    pub fn new(guard: impl Send + 'static) -> Self {
        Self {
            _guard: Some(Box::new(guard)),
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock")
            .field("held", &self._guard.is_some())
            .finish()
    }
}

/// A store that could not do what was asked. No message holds a token or a file's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("could not {action} {}: {source}: check that the path is writable and the disk is not full", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's file can't be read as a token store. It is left as it is.
    #[error("the token store {} is damaged ({reason}); it was left untouched: repair it or delete it (its users will have to log in again)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's content.
        reason: String,
    },
    /// The store's file can be read or written by other users.
    #[error("the token store {} is accessible by other users (mode {mode:03o}): run `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another program held the refresh lock for too long.
    #[error("the refresh lock {} is held by another program and was not released within {seconds} s: retry, or stop the program holding it", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long was waited.
        seconds: u64,
    },
    /// Any other failure of a store.
    #[error("the token store failed: {0}")]
    Other(String),
}
