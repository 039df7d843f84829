//! [`MemoryStore`]: credentials kept in memory, for tests and programs that log in on every start.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::contract::{StoreFuture, StoreLock, StoredEntry, TokenStore};
use crate::credentials::{Credentials, UserId};

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
