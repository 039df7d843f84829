//! Stores for testing how a program copes with a failing store. Needs the `test-util` feature.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};

use super::contract::{StoreError, StoreFuture, StoreLock, StoredEntry, TokenStore};
use super::memory::MemoryStore;
use crate::credentials::{Credentials, UserId};
use crate::secret::{AccessToken, RefreshToken};

/// Credentials for tests: `user`'s pair `access` / `refresh`, expiring at `expires_at`, granting
/// `user.metrics`.
///
/// ```
/// use withings_oauth::{UserId, testing};
///
/// let creds = testing::credentials(UserId::new(7), "a", "r", chrono::Utc::now());
/// assert_eq!(creds.user_id(), UserId::new(7));
/// ```
pub fn credentials(
    user: UserId,
    access: &str,
    refresh: &str,
    expires_at: DateTime<Utc>,
) -> Credentials {
    Credentials {
        user_id: user,
        access_token: AccessToken::new(access),
        refresh_token: RefreshToken::new(refresh),
        expires_at,
        scopes: "user.metrics".parse().expect("a known scope"),
        token_type: "Bearer".into(),
    }
}

/// A [`MemoryStore`] whose next saves fail, as a full disk would make them.
///
/// ```
/// use withings_oauth::testing::FlakyStore;
/// use withings_oauth::TokenStore;
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
