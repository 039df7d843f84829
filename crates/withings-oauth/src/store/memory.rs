//! [`MemoryStore`]: credentials kept in memory, for tests and programs that log in on every start.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::contract::{
    Expected, Lease, StoreFuture, StoredEntry, TokenStore, Version, VersionedEntry, ensure_owner,
};
use super::lease::LocalLeases;
use super::versioned_map::VersionedMap;
use crate::credentials::{Credentials, UserId};

/// Credentials kept in memory, shared by its clones; nothing survives the process.
///
/// It keeps the whole [`TokenStore`] contract within the process: versions, compare-and-swap
/// writes, and expiring leases, so sessions for the same user that share one `MemoryStore`
/// refresh once.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: Mutex<VersionedMap<StoredEntry>>,
    leases: LocalLeases,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, VersionedMap<StoredEntry>> {
        // The map is always consistent between statements: a panic elsewhere can't corrupt it.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        &self,
        user: UserId,
        expected: Expected,
        new: Option<StoredEntry>,
    ) -> StoreFuture<'static, Version> {
        let result = self.entries().write(user, expected, new, |version, entry| {
            Some(VersionedEntry {
                version,
                entry: entry.clone(),
            })
        });
        Box::pin(async move { result })
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
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        let entry = self
            .entries()
            .get(user)
            .map(|(version, entry)| VersionedEntry {
                version,
                entry: entry.clone(),
            });
        Box::pin(async move { Ok(entry) })
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        if let Err(e) = ensure_owner(user, credentials) {
            return Box::pin(async move { Err(e) });
        }
        self.write(
            user,
            expected,
            Some(StoredEntry::Credentials(credentials.clone())),
        )
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.write(user, expected, Some(StoredEntry::LoginRequired))
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        if expected == Expected::Absent && self.entries().get(user).is_none() {
            return Box::pin(async { Ok(()) });
        }
        let write = self.write(user, expected, None);
        Box::pin(async move { write.await.map(drop) })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        let users = self.entries().users();
        Box::pin(async move { Ok(users) })
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        Box::pin(async move { Ok(self.inner.leases.acquire(user, ttl).await) })
    }
}
