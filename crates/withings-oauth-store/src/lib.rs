//! A file-backed [`TokenStore`] for `withings-oauth` sessions.
//!
//! [`FileStore`] keeps every user's newest credentials in one JSON file that only its owner can
//! read, so that a command-line tool or a small server finds its logins again after a restart,
//! and several processes can share them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use withings_oauth::{TokenStore, UserId};
//! use withings_oauth_store::FileStore;
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("my-app/tokens.json");
//! // Usually FileStore::default_path("my-app"), e.g. ~/.local/share/my-app/tokens.json.
//! let store = Arc::new(FileStore::open(path)?);
//! assert!(store.load(UserId::new(1001)).await?.is_none()); // no file yet: an empty store
//! // Session::start(authorized, store.clone()) saves a login; Session::restore finds it again.
//! # Ok(())
//! # }
//! ```
//!
//! # The file
//! ```json
//! {
//!   "format": 2,
//!   "last_version": 17,
//!   "users": {
//!     "1001": { "version": 17,
//!               "credentials": { "format": 1, "user_id": 1001, "access_token": "…", "refresh_token": "…",
//!                                "expires_at": "2026-01-01T12:00:00Z", "scopes": "user.metrics",
//!                                "token_type": "Bearer" } },
//!     "1002": { "version": 9, "login_required": true }
//!   }
//! }
//! ```
//! Each user's entry holds its [`Version`] and a [`StoredCredentials`](withings_oauth::StoredCredentials), or `"login_required":
//! true` once Withings rejected the user's refresh token. `last_version` is the last version the
//! file gave out: versions keep growing across deletes.
//!
//! Files written by earlier versions (`"format": 1`, no versions) are read as they are, each
//! entry at version 1, and rewritten in format 2 by the next write: nothing to do by hand.
//! (An earlier version of this crate can't read a format 2 file; it says so and leaves it.)
//!
//! # Guarantees
//! It keeps the whole [`TokenStore`] contract (versions, compare-and-swap writes, leases); the
//! conformance kit of `withings_oauth::testing` runs against it.
//! - **Private.** The file is created with mode `0600` and its new directories with `0700`. A
//!   file that others can read or write is refused, as ssh does with its keys, and so is a
//!   store directory that others can write to or that belongs to another user:
//!   [`StoreError::InsecurePermissions`] says which `chmod`, `chown` or `mkdir` to run. The
//!   rules are the core's [`check_private_file`](withings_oauth::check_private_file) and
//!   [`check_private_dir`](withings_oauth::check_private_dir), which the SQL store's SQLite
//!   file follows too.
//! - **Atomic.** A save writes a temporary file next to the store, flushes it to disk, renames
//!   it over the store and flushes the directory: a crash leaves the old file or the new one,
//!   never half of one. A temporary file left by a crash is removed by the next write.
//! - **Never overwrites what it can't read.** A damaged file is reported
//!   ([`StoreError::Corrupt`], with the path and what is wrong, never the content) and left as
//!   it is: saves fail until it is repaired or deleted.
//! - **Shared safely.** Each write is a compare-and-swap under an exclusive lock of
//!   `<file>.lock`, so processes writing different users don't lose each other's changes and a
//!   writer that read an older version is refused. A refresh holds [`TokenStore::lease`], an
//!   exclusive OS lock of `<file>.user-<id>.lock`, so that processes sharing the file refresh a
//!   user once. The OS releases it when its process ends, however it ends, so the lease has no
//!   expiry of its own. Lock files are opened without following symbolic links and must belong
//!   to the user; they are empty and stay in place (removing a lock file another process has
//!   open would break the exclusion).
//! - A missing file is an empty store; nothing is created until the first save.
//!
//! Unix permissions are checked on Unix only; elsewhere the file gets the platform's defaults.

#![deny(missing_docs)]

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use withings_oauth::{
    Credentials, Expected, Lease, StoreError, StoreFuture, StoreLocation, StoredEntry, TokenStore,
    UserId, Version, VersionedEntry, ensure_owner,
};

mod format;
mod fs;
#[cfg(test)]
mod tests;

pub use format::FILE_FORMAT;
use format::{Record, Users};
use fs::{io_error, lock_file, prepare_dir, sibling};

/// Largest store file read (about 200,000 users).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// How long a lock is waited for by default before [`StoreError::Locked`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Credentials of many users in one private JSON file. See the [crate docs](crate).
#[derive(Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_timeout: Duration,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// A store kept in the file at `path`. Nothing is read or created yet: a missing file is an
    /// empty store, created (with its directories) by the first save.
    ///
    /// Fails if `path` is a directory or has no file name.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let path = path.into();
        if path.file_name().is_none() || path.is_dir() {
            return Err(StoreError::Other(format!(
                "{} is not a file path: give the path of a file such as tokens.json",
                path.display()
            )));
        }
        Ok(FileStore {
            path,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        })
    }

    /// The conventional place for `app`'s store: `tokens.json` in the platform's data
    /// directory (`~/.local/share/<app>/` on Linux, `~/Library/Application Support/<app>/` on
    /// macOS, `%APPDATA%\<app>\data\` on Windows). `None` if the home directory is unknown.
    pub fn default_path(app: &str) -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", app).map(|dirs| dirs.data_dir().join("tokens.json"))
    }

    /// Gives up waiting for a lock after `timeout` (default 120 s) with [`StoreError::Locked`].
    /// `Duration::MAX` waits for as long as the lock is held.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    fn user_lock_path(&self, user: UserId) -> PathBuf {
        sibling(&self.path, &format!(".user-{user}.lock"))
    }

    /// Runs blocking file work off the async threads.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let store = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(&store))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Other(format!(
                        "the token store's worker thread failed ({e}): retry"
                    )))
                })
        })
    }

    /// Reads the whole file; a missing file is an empty store.
    fn read(&self) -> Result<Users, StoreError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Users::new()),
            Err(e) => return Err(io_error(&self.path, "open", e)),
        };
        let metadata = file
            .metadata()
            .map_err(|e| io_error(&self.path, "inspect", e))?;
        withings_oauth::check_private_file(&self.path, &metadata)?;
        if metadata.len() > MAX_FILE_BYTES {
            return Err(self.corrupt(format!("it is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&self.path, "read", e))?;
        format::parse(&bytes).map_err(|reason| self.corrupt(reason))
    }

    /// A compare-and-swap write of `user`'s entry under the write lock: reads the file,
    /// replaces the entry if it is what `expected` says, and writes the file back atomically.
    fn write(
        &self,
        user: UserId,
        expected: Expected,
        record: Option<Record>,
    ) -> Result<Version, StoreError> {
        prepare_dir(&self.path)?;
        let _lock = lock_file(&self.write_lock_path(), self.lock_timeout)?;
        let removed = fs::remove_leftover_temp_files(&self.path);
        if removed > 0 {
            tracing::info!(removed, path = %self.path.display(), "removed temporary files a crash left behind");
        }
        let mut users = self.read()?;
        let version = users.write(user, expected, record, |version, record| {
            self.versioned(user, version, record).ok()
        })?;
        fs::write_atomic(&self.path, &format::serialize(&users))?;
        Ok(version)
    }

    /// An entry as the contract hands it out, its tokens checked.
    fn versioned(
        &self,
        user: UserId,
        version: Version,
        record: &Record,
    ) -> Result<VersionedEntry, StoreError> {
        let stored = match record {
            Record::LoginRequired => StoredEntry::LoginRequired,
            Record::Credentials(stored) => Credentials::from_stored(stored.clone())
                .map(StoredEntry::Credentials)
                .map_err(|e| self.corrupt(format!("user {user}: {e}")))?,
        };
        Ok(VersionedEntry {
            version,
            entry: stored,
        })
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            location: StoreLocation::path(&self.path),
            reason,
        }
    }
}

impl TokenStore for FileStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        self.blocking(move |store| {
            let users = store.read()?;
            users
                .get(user)
                .map(|(version, record)| store.versioned(user, version, record))
                .transpose()
        })
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
        let stored = credentials.reveal_for_storage();
        self.blocking(move |store| store.write(user, expected, Some(Record::Credentials(stored))))
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.blocking(move |store| store.write(user, expected, Some(Record::LoginRequired)))
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        self.blocking(move |store| {
            // Deleting nobody from a missing file must not create it.
            if expected == Expected::Absent && store.read()?.get(user).is_none() {
                return Ok(());
            }
            store.write(user, expected, None).map(drop)
        })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.blocking(|store| Ok(store.read()?.users()))
    }

    /// The lease is an OS lock of `<file>.user-<id>.lock`: `ttl` is not used, since the OS
    /// releases the lock when the holding process ends, however it ends.
    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        let _ = ttl;
        let path = self.user_lock_path(user);
        self.blocking(move |store| {
            prepare_dir(&store.path)?;
            lock_file(&path, store.lock_timeout).map(|file| Lease::new(file, None))
        })
    }
}
