//! [`MemoryStore`]: credentials kept in memory, for tests and programs that log in on every start.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::contract::{
    Expected, Lease, StoreError, StoreFuture, StoredEntry, TokenStore, Version, VersionedEntry,
};
use super::lease::LocalLeases;
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
    entries: Mutex<Entries>,
    leases: LocalLeases,
}

#[derive(Default)]
struct Entries {
    users: BTreeMap<UserId, VersionedEntry>,
    /// The last version given to any entry: versions grow across deletes.
    last_version: u64,
}

impl Entries {
    /// Replaces the user's entry with `new` (`None` deletes) if it is what `expected` says.
    fn write(
        &mut self,
        user: UserId,
        expected: Expected,
        new: Option<StoredEntry>,
    ) -> Result<Version, StoreError> {
        let current = self.users.get(&user);
        if !expected.matches(current.map(|e| e.version)) {
            return Err(StoreError::conflict_with(user, expected, current.cloned()));
        }
        self.last_version += 1;
        let version = Version::new(self.last_version);
        match new {
            Some(entry) => {
                self.users.insert(user, VersionedEntry { version, entry });
            }
            None => {
                self.users.remove(&user);
            }
        }
        Ok(version)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
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
        let result = self.entries().write(user, expected, new);
        Box::pin(async move { result })
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("users", &self.entries().users.len())
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        let entry = self.entries().users.get(&user).cloned();
        Box::pin(async move { Ok(entry) })
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        if credentials.user_id() != user {
            let message = format!(
                "refusing to save user {}'s tokens as user {user}'s",
                credentials.user_id()
            );
            return Box::pin(async move { Err(StoreError::Other(message)) });
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
        if expected == Expected::Absent && !self.entries().users.contains_key(&user) {
            return Box::pin(async { Ok(()) });
        }
        let write = self.write(user, expected, None);
        Box::pin(async move { write.await.map(drop) })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        let users = self.entries().users.keys().copied().collect();
        Box::pin(async move { Ok(users) })
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        Box::pin(async move { Ok(self.inner.leases.acquire(user, ttl).await) })
    }
}
