//! Where credentials live between runs: the [`TokenStore`] trait and an in-memory store.
//!
//! A [`Session`](crate::session::Session) saves every new token pair to its store *before*
//! anyone uses the new access token (using it kills the previous refresh token), and takes
//! [`TokenStore::lock`] around each refresh, so that processes sharing one store refresh a user
//! once. The file-backed store lives in the `withings-oauth-store` crate; [`MemoryStore`] is
//! for tests and for programs that log in on every start.
//!
//! The trait is object-safe (sessions hold an `Arc<dyn TokenStore>`) and returns boxed futures,
//! so it can be implemented for a database or a keychain without an async-trait macro:
//!
//! ```
//! use withings_oauth::store::{MemoryStore, StoredEntry, TokenStore};
//! use withings_oauth::UserId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), withings_oauth::store::StoreError> {
//! let store = MemoryStore::new();
//! let user = UserId::new(1001);
//! assert!(store.load(user).await?.is_none());
//! store.mark_login_required(user).await?;
//! assert!(matches!(store.load(user).await?, Some(StoredEntry::LoginRequired)));
//! assert_eq!(store.users().await?, vec![user]);
//! # Ok(())
//! # }
//! ```

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::credentials::{Credentials, UserId};

/// The future every [`TokenStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

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

/// Credentials kept in memory, shared by its clones; nothing survives the process.
///
/// Its [`lock`](TokenStore::lock) is real within the process: sessions for the same user that
/// share one `MemoryStore` refresh once.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: Mutex<BTreeMap<UserId, StoredEntry>>,
    locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<UserId, StoredEntry>> {
        // The map is always consistent between statements: a panic elsewhere can't corrupt it.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("users", &self.entries().len())
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<StoredEntry>> {
        let entry = self.entries().get(&user).cloned();
        Box::pin(async move { Ok(entry) })
    }

    fn save<'a>(&'a self, user: UserId, credentials: &'a Credentials) -> StoreFuture<'a, ()> {
        self.entries()
            .insert(user, StoredEntry::Credentials(credentials.clone()));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        self.entries().remove(&user);
        Box::pin(async { Ok(()) })
    }

    fn mark_login_required<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        self.entries().insert(user, StoredEntry::LoginRequired);
        Box::pin(async { Ok(()) })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        let users = self.entries().keys().copied().collect();
        Box::pin(async move { Ok(users) })
    }

    fn lock<'a>(&'a self, user: UserId) -> StoreFuture<'a, StoreLock> {
        let mutex = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user)
            .or_default()
            .clone();
        Box::pin(async move { Ok(StoreLock::new(mutex.lock_owned().await)) })
    }
}

/// Stores for testing how a program copes with a failing store. Needs the `test-util` feature.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{MemoryStore, StoreError, StoreFuture, StoreLock, StoredEntry, TokenStore};
    use crate::credentials::{Credentials, UserId};

    /// A [`MemoryStore`] whose next saves fail, as a full disk would make them.
    ///
    /// ```
    /// use withings_oauth::store::testing::FlakyStore;
    /// use withings_oauth::store::TokenStore;
    /// use withings_oauth::UserId;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = FlakyStore::default();
    /// store.fail_next_saves(1);
    /// store.mark_login_required(UserId::new(1001)).await.unwrap(); // not a save: passes
    /// # }
    /// ```
    #[derive(Debug, Default)]
    pub struct FlakyStore {
        inner: MemoryStore,
        failures: AtomicU32,
    }

    impl FlakyStore {
        /// An empty store; no save fails until [`fail_next_saves`](Self::fail_next_saves).
        pub fn new() -> Self {
            Self::default()
        }

        /// Makes the next `count` saves fail with [`StoreError::Other`] ("the disk is full").
        pub fn fail_next_saves(&self, count: u32) {
            self.failures.store(count, Ordering::SeqCst);
        }

        /// The memory store underneath, for writing behind the back of whoever uses this one
        /// (as another program sharing the store would) without failing.
        pub fn inner(&self) -> &MemoryStore {
            &self.inner
        }
    }

    impl TokenStore for FlakyStore {
        fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<StoredEntry>> {
            self.inner.load(user)
        }

        fn save<'a>(&'a self, user: UserId, credentials: &'a Credentials) -> StoreFuture<'a, ()> {
            let fail = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Box::pin(async {
                    Err(StoreError::Other(
                        "the disk is full (a failure injected by FlakyStore)".into(),
                    ))
                });
            }
            self.inner.save(user, credentials)
        }

        fn delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
            self.inner.delete(user)
        }

        fn mark_login_required<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
            self.inner.mark_login_required(user)
        }

        fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
            self.inner.users()
        }

        fn lock<'a>(&'a self, user: UserId) -> StoreFuture<'a, StoreLock> {
            self.inner.lock(user)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;
    use chrono::Utc;
    use secrecy::{ExposeSecret, SecretString};
    use std::time::Duration;

    fn credentials(user: u64, refresh: &str) -> Credentials {
        Credentials {
            user_id: UserId::new(user),
            access_token: SecretString::from("access-token"),
            refresh_token: SecretString::from(refresh.to_owned()),
            expires_at: Utc::now(),
            scopes: Scopes::empty(),
            token_type: "Bearer".into(),
        }
    }

    #[tokio::test]
    async fn memory_store_keeps_the_newest_pair_per_user_and_shares_it_between_clones() {
        let store = MemoryStore::new();
        let other = store.clone();
        store
            .save(UserId::new(2), &credentials(2, "old"))
            .await
            .unwrap();
        store
            .save(UserId::new(2), &credentials(2, "new"))
            .await
            .unwrap();
        store
            .save(UserId::new(1), &credentials(1, "one"))
            .await
            .unwrap();
        match other.load(UserId::new(2)).await.unwrap() {
            Some(StoredEntry::Credentials(c)) => {
                assert_eq!(c.refresh_token.expose_secret(), "new")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            other.users().await.unwrap(),
            [UserId::new(1), UserId::new(2)]
        );
        other.delete(UserId::new(2)).await.unwrap();
        assert!(store.load(UserId::new(2)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn memory_store_lock_excludes_a_second_locker_of_the_same_user_only() {
        let store = MemoryStore::new();
        let held = store.lock(UserId::new(1)).await.unwrap();
        let same = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(1)));
        assert!(same.await.is_err(), "a second lock of user 1 must wait");
        let other = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(2)));
        assert!(other.await.is_ok(), "user 2 is not blocked by user 1");
        drop(held);
        let again = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(1)));
        assert!(again.await.is_ok(), "released on drop");
    }

    #[tokio::test]
    async fn a_flaky_store_fails_exactly_the_saves_it_was_told_to() {
        let store = testing::FlakyStore::default();
        let user = UserId::new(1);
        store.fail_next_saves(2);
        for _ in 0..2 {
            let err = store.save(user, &credentials(1, "r")).await.unwrap_err();
            assert!(err.to_string().contains("the disk is full"), "{err}");
        }
        assert!(
            store.load(user).await.unwrap().is_none(),
            "nothing was saved"
        );
        store.save(user, &credentials(1, "r")).await.unwrap();
        assert_eq!(store.inner().users().await.unwrap(), [user]);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = StoreError::InsecurePermissions {
            path: "/home/a/tokens.json".into(),
            mode: 0o644,
        };
        assert_eq!(
            e.to_string(),
            "the token store /home/a/tokens.json is accessible by other users (mode 644): run `chmod 600 /home/a/tokens.json`"
        );
    }
}
