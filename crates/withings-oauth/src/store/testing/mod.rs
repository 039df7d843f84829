//! Helpers for testing stores and the programs that use them (feature `test-util`): the
//! conformance kit every [`TokenStore`] must pass (and [`pending_conformance`], the one every
//! [`PendingLoginStore`](crate::PendingLoginStore) must pass), stores that fail or read stale on demand,
//! credentials fixtures, a clock moved by hand ([`ManualClock`]), and for tests that start
//! programs, a free port ([`free_port`]) and waits on child processes ([`wait_for_file`],
//! [`wait_for_success`]), and what a block of work recorded through the `metrics` facade
//! ([`record_metrics`]) or logged through `tracing` ([`CapturedLogs`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::contract::{
    Expected, Lease, StoreError, StoreFuture, TokenStore, Version, VersionedEntry,
};
use super::memory::MemoryStore;
use crate::credentials::{Credentials, UserId};
use crate::secret::{AccessToken, RefreshToken};

mod clock;
pub mod conformance;
mod logs;
mod metrics;
mod os;

#[doc(inline)]
pub use crate::pending_login::conformance as pending_conformance;
pub use clock::ManualClock;
pub use logs::CapturedLogs;
pub use metrics::{RecordedMetrics, record_metrics};
pub use os::{free_port, wait_for_file, wait_for_success};

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
/// use withings_oauth::{Expected, TokenStore, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = FlakyStore::default();
/// store.fail_next_saves(1);
/// store.mark_login_required(UserId::new(1001), Expected::Absent).await.unwrap(); // not a save: passes
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
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        self.inner.load(user)
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
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
        self.inner.save(user, credentials, expected)
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.inner.mark_login_required(user, expected)
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        self.inner.delete(user, expected)
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.inner.users()
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.inner.lease(user, ttl)
    }
}

/// A store that can serve a stale read, as a cache or a lagging replica can: after
/// [`serve_stale_once`](Self::serve_stale_once), the next load of that user returns the entry
/// the user had before the latest write through this wrapper. Writes go to the inner store.
///
/// ```
/// use withings_oauth::testing::{StaleReads, credentials};
/// use withings_oauth::{Expected, MemoryStore, TokenStore, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), withings_oauth::StoreError> {
/// let user = UserId::new(7);
/// let store = StaleReads::new(MemoryStore::new());
/// let v1 = store.save(user, &credentials(user, "a1", "r1", chrono::Utc::now()), Expected::Absent).await?;
/// let v2 = store.save(user, &credentials(user, "a2", "r2", chrono::Utc::now()), Expected::Version(v1)).await?;
/// store.serve_stale_once(user);
/// assert_eq!(store.load(user).await?.unwrap().version, v1); // stale
/// assert_eq!(store.load(user).await?.unwrap().version, v2); // fresh again
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StaleReads<S> {
    inner: S,
    previous: Mutex<HashMap<UserId, Option<VersionedEntry>>>,
    stale_next: Mutex<HashMap<UserId, bool>>,
}

impl<S: TokenStore> StaleReads<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            previous: Mutex::default(),
            stale_next: Mutex::default(),
        }
    }

    /// The next load of `user` returns the entry before the latest write through this wrapper.
    pub fn serve_stale_once(&self, user: UserId) {
        self.stale_next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user, true);
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Remembers what `user` has now, before a write replaces it.
    async fn remember(&self, user: UserId) -> Result<(), StoreError> {
        let now = self.inner.load(user).await?;
        self.previous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user, now);
        Ok(())
    }
}

impl<S: TokenStore> TokenStore for StaleReads<S> {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        Box::pin(async move {
            let stale = self
                .stale_next
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&user)
                .unwrap_or(false);
            if stale
                && let Some(previous) = self
                    .previous
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&user)
                    .cloned()
            {
                return Ok(previous);
            }
            self.inner.load(user).await
        })
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(async move {
            self.remember(user).await?;
            self.inner.save(user, credentials, expected).await
        })
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(async move {
            self.remember(user).await?;
            self.inner.mark_login_required(user, expected).await
        })
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.remember(user).await?;
            self.inner.delete(user, expected).await
        })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.inner.users()
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.inner.lease(user, ttl)
    }
}
