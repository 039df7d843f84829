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
//! use withings_oauth::TokenStore;
//! use withings_oauth::UserId;
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
//!   "format": 1,
//!   "users": {
//!     "1001": { "format": 1, "user_id": 1001, "access_token": "…", "refresh_token": "…",
//!               "expires_at": "2026-01-01T12:00:00Z", "scopes": "user.metrics", "token_type": "Bearer" },
//!     "1002": { "login_required": true }
//!   }
//! }
//! ```
//! Each user's entry is a [`StoredCredentials`], or `{"login_required": true}` once Withings
//! rejected the user's refresh token.
//!
//! # Guarantees
//! - **Private.** The file is created with mode `0600` and its new directories with `0700`. A
//!   file that others can read or write is refused, as ssh does with its keys:
//!   [`StoreError::InsecurePermissions`] says to run `chmod 600 <path>`.
//! - **Atomic.** A save writes a temporary file next to the store, flushes it to disk, renames
//!   it over the store and flushes the directory: a crash leaves the old file or the new one,
//!   never half of one.
//! - **Never overwrites what it can't read.** A damaged file is reported
//!   ([`StoreError::Corrupt`], with the path and what is wrong, never the content) and left as
//!   it is: saves fail until it is repaired or deleted.
//! - **Shared safely.** Each save is a read-modify-write under an exclusive lock of
//!   `<file>.lock`, so processes saving different users don't lose each other's changes. A
//!   refresh holds [`TokenStore::lock`], an exclusive lock of `<file>.user-<id>.lock`, so that
//!   processes sharing the file refresh a user once. The lock files are empty and stay in place
//!   (removing a lock file another process has open would break the exclusion).
//! - A missing file is an empty store; nothing is created until the first save.
//!
//! Unix permissions are checked on Unix only; elsewhere the file gets the platform's defaults.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use withings_oauth::{Credentials, StoredCredentials, UserId, json_error_reason};
use withings_oauth::{StoreError, StoreFuture, StoreLock, StoredEntry, TokenStore};

// The path of earlier versions, kept so existing code builds.
#[doc(hidden)]
pub use withings_oauth::store;

/// The version of the file layout this crate reads and writes.
pub const FILE_FORMAT: u32 = 1;

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
        check_private(&self.path, &metadata)?;
        if metadata.len() > MAX_FILE_BYTES {
            return Err(self.corrupt(format!("it is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&self.path, "read", e))?;
        parse(&bytes).map_err(|reason| self.corrupt(reason))
    }

    /// Read-modify-write under the write lock.
    fn update(&self, change: impl FnOnce(&mut Users)) -> Result<(), StoreError> {
        create_private_dirs(&self.path)?;
        let _lock = lock_file(&self.write_lock_path(), self.lock_timeout)?;
        let mut users = self.read()?;
        change(&mut users);
        let bytes = serialize(&users);
        write_atomic(&self.path, &bytes)
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

impl TokenStore for FileStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<StoredEntry>> {
        self.blocking(move |store| {
            let mut users = store.read()?;
            match users.remove(&user) {
                None => Ok(None),
                Some(Entry::LoginRequired) => Ok(Some(StoredEntry::LoginRequired)),
                Some(Entry::Credentials(stored)) => Credentials::from_stored(stored)
                    .map(|c| Some(StoredEntry::Credentials(c)))
                    .map_err(|e| store.corrupt(format!("user {user}: {e}"))),
            }
        })
    }

    fn save<'a>(&'a self, user: UserId, credentials: &'a Credentials) -> StoreFuture<'a, ()> {
        if credentials.user_id() != user {
            let message = format!(
                "refusing to save user {}'s tokens as user {user}'s",
                credentials.user_id()
            );
            return Box::pin(async move { Err(StoreError::Other(message)) });
        }
        let stored = credentials.reveal_for_storage();
        self.blocking(move |store| {
            store.update(|users| {
                users.insert(user, Entry::Credentials(stored));
            })
        })
    }

    fn delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        self.blocking(move |store| {
            if !store.read()?.contains_key(&user) {
                return Ok(());
            }
            store.update(|users| {
                users.remove(&user);
            })
        })
    }

    fn mark_login_required<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        self.blocking(move |store| {
            store.update(|users| {
                users.insert(user, Entry::LoginRequired);
            })
        })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.blocking(|store| Ok(store.read()?.into_keys().collect()))
    }

    fn lock<'a>(&'a self, user: UserId) -> StoreFuture<'a, StoreLock> {
        let path = self.user_lock_path(user);
        self.blocking(move |store| {
            create_private_dirs(&store.path)?;
            lock_file(&path, store.lock_timeout).map(StoreLock::new)
        })
    }
}

type Users = BTreeMap<UserId, Entry>;

enum Entry {
    Credentials(StoredCredentials),
    LoginRequired,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn<'a> {
    format: u32,
    #[serde(borrow)]
    users: BTreeMap<String, &'a RawValue>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LoginRequiredEntry {
    login_required: bool,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    users: BTreeMap<u64, EntryOut<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EntryOut<'a> {
    Credentials(&'a StoredCredentials),
    LoginRequired(LoginRequiredEntry),
}

/// Parses the file; the error is a reason that never quotes the content.
fn parse(bytes: &[u8]) -> Result<Users, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    if text.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    let file: FileIn<'_> =
        serde_json::from_str(text).map_err(|e| json_error_reason("the file", &e))?;
    if file.format != FILE_FORMAT {
        return Err(format!(
            "it has format {}, and this version reads format {FILE_FORMAT}: use the program version that wrote it",
            file.format
        ));
    }
    let mut users = Users::new();
    for (key, raw) in file.users {
        let user: UserId = key
            .parse()
            .map_err(|_| "a key of \"users\" is not a user id".to_owned())?;
        let entry = if let Ok(marker) = serde_json::from_str::<LoginRequiredEntry>(raw.get()) {
            if !marker.login_required {
                return Err(format!("user {user}: login_required is false"));
            }
            Entry::LoginRequired
        } else {
            let stored: StoredCredentials = serde_json::from_str(raw.get())
                .map_err(|e| json_error_reason(&format!("user {user}"), &e))?;
            if stored.user_id != user {
                return Err(format!(
                    "user {user}: the entry holds the tokens of user {}",
                    stored.user_id
                ));
            }
            Entry::Credentials(stored)
        };
        users.insert(user, entry);
    }
    Ok(users)
}

fn serialize(users: &Users) -> Vec<u8> {
    let out = FileOut {
        format: FILE_FORMAT,
        users: users
            .iter()
            .map(|(user, entry)| {
                let entry = match entry {
                    Entry::Credentials(stored) => EntryOut::Credentials(stored),
                    Entry::LoginRequired => EntryOut::LoginRequired(LoginRequiredEntry {
                        login_required: true,
                    }),
                };
                (user.get(), entry)
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&out).expect("maps with integer keys serialize");
    bytes.push(b'\n');
    bytes
}

/// `tokens.json` + `.lock` = `tokens.json.lock`, in the same directory.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

/// Creates the store's missing directories, private to the user.
fn create_private_dirs(path: &Path) -> Result<(), StoreError> {
    let dir = parent(path);
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io_error(dir, "create the directory", e))
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent(path);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Other(format!("the system random generator failed: {e}")))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_le_bytes(random)
    ));
    let written = (|| {
        let mut file = private_options().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp, "write", e));
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error(path, "replace", e));
    }
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "flush the directory", e))?;
    Ok(())
}

/// An exclusive lock on `path`, released when the returned file is dropped.
///
/// Polls with a growing pause rather than blocking in the kernel, so that it can give up after
/// `timeout` with a clear error.
fn lock_file(path: &Path, timeout: Duration) -> Result<File, StoreError> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error(path, "open the lock file", e))?;
    // A timeout past the end of `Instant` (`Duration::MAX`, say) means waiting for ever.
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(fs4::TryLockError::WouldBlock)
                if deadline.is_none_or(|deadline| Instant::now() < deadline) =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                    seconds: timeout.as_secs(),
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_error(path, "lock", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
    use std::sync::Arc;

    const USER: UserId = UserId::new(1001);

    fn credentials(user: u64, refresh: &str) -> Credentials {
        let stored: StoredCredentials = serde_json::from_value(serde_json::json!({
            "format": 1,
            "user_id": user,
            "access_token": format!("access-{refresh}"),
            "refresh_token": refresh,
            "expires_at": Utc::now() + TimeDelta::hours(3),
            "scopes": "user.metrics,user.info",
            "token_type": "Bearer",
        }))
        .unwrap();
        Credentials::from_stored(stored).unwrap()
    }

    fn refresh_token_of(entry: Option<StoredEntry>) -> String {
        match entry {
            Some(StoredEntry::Credentials(c)) => c.reveal_for_storage().refresh_token,
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    fn store_in(dir: &tempfile::TempDir) -> FileStore {
        FileStore::open(dir.path().join("app/tokens.json")).unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_missing_file_is_an_empty_store_and_is_not_created_by_reading() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        assert!(store.load(USER).await.unwrap().is_none());
        assert!(store.users().await.unwrap().is_empty());
        store.delete(USER).await.unwrap();
        assert!(!store.path().exists());
    }

    #[tokio::test]
    async fn credentials_round_trip_through_the_file_for_many_users() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        store.save(USER, &credentials(1001, "r1")).await.unwrap();
        store
            .save(UserId::new(7), &credentials(7, "r7"))
            .await
            .unwrap();
        store
            .save(USER, &credentials(1001, "r1-new"))
            .await
            .unwrap();
        store.mark_login_required(UserId::new(42)).await.unwrap();

        // Another instance (another process, say) reads the same.
        let other = FileStore::open(store.path()).unwrap();
        assert_eq!(refresh_token_of(other.load(USER).await.unwrap()), "r1-new");
        assert_eq!(
            refresh_token_of(other.load(UserId::new(7)).await.unwrap()),
            "r7"
        );
        assert!(matches!(
            other.load(UserId::new(42)).await.unwrap(),
            Some(StoredEntry::LoginRequired)
        ));
        assert_eq!(
            other.users().await.unwrap(),
            [UserId::new(7), UserId::new(42), USER]
        );
        let restored = match other.load(USER).await.unwrap() {
            Some(StoredEntry::Credentials(c)) => c,
            _ => unreachable!(),
        };
        assert_eq!(restored.scopes().to_string(), "user.metrics,user.info");

        other.delete(UserId::new(7)).await.unwrap();
        assert!(store.load(UserId::new(7)).await.unwrap().is_none());

        let text = fs::read_to_string(store.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(
            json["users"]["42"],
            serde_json::json!({"login_required": true})
        );
        assert_eq!(json["users"]["1001"]["user_id"], 1001);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_created_private_in_private_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("a/b/tokens.json")).unwrap();
        store.save(USER, &credentials(1001, "r")).await.unwrap();
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        let _lock = store.lock(USER).await.unwrap();
        assert_eq!(
            mode(&dir.path().join("a/b/tokens.json.user-1001.lock")),
            0o600
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_others_can_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        store.save(USER, &credentials(1001, "r")).await.unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let before = fs::read(store.path()).unwrap();

        let err = store.load(USER).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InsecurePermissions { mode: 0o644, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", store.path().display())),
            "{err}"
        );
        let err = store
            .save(USER, &credentials(1001, "r2"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InsecurePermissions { .. }),
            "{err:?}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), before);
        assert_eq!(
            mode(store.path()),
            0o644,
            "the store does not chmod behind the user's back"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_reported_without_its_content_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        store.save(USER, &credentials(1001, "r")).await.unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        let cut = text.find("refresh_token").unwrap() + 30;
        let damaged = &text[..cut];
        fs::write(store.path(), damaged).unwrap();

        for err in [
            store.load(USER).await.unwrap_err(),
            store.users().await.unwrap_err(),
            store
                .save(USER, &credentials(1001, "new"))
                .await
                .unwrap_err(),
            store.mark_login_required(USER).await.unwrap_err(),
        ] {
            let StoreError::Corrupt { path, reason } = &err else {
                panic!("expected Corrupt, got {err:?}");
            };
            assert_eq!(path, store.path());
            assert!(reason.contains("ends early"), "{reason}");
            let message = err.to_string();
            assert!(
                message.contains(&store.path().display().to_string()),
                "{message}"
            );
            assert!(message.contains("repair it or delete it"), "{message}");
            assert!(!message.contains("access-r"), "{message}");
        }
        assert_eq!(fs::read_to_string(store.path()).unwrap(), damaged);
    }

    #[tokio::test]
    async fn a_wrong_value_is_named_by_user_and_field_but_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        store.save(USER, &credentials(1001, "r")).await.unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        fs::write(
            store.path(),
            text.replace("\"token_type\"", "\"token_kind\""),
        )
        .unwrap();
        let err = store.load(UserId::new(5)).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("user 1001: unknown field `token_kind`"),
            "{message}"
        );

        fs::write(
            store.path(),
            text.replace("\"expires_at\": \"", "\"expires_at\": \"secret-looking "),
        )
        .unwrap();
        let message = store.load(USER).await.unwrap_err().to_string();
        assert!(message.contains("user 1001"), "{message}");
        assert!(!message.contains("secret-looking"), "{message}");

        fs::write(store.path(), r#"{"format":2,"users":{}}"#).unwrap();
        let message = store.load(USER).await.unwrap_err().to_string();
        assert!(message.contains("format 2"), "{message}");
    }

    #[tokio::test]
    async fn saves_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        for i in 0..5 {
            store
                .save(USER, &credentials(1001, &format!("r{i}")))
                .await
                .unwrap();
        }
        store.mark_login_required(UserId::new(2)).await.unwrap();
        store.delete(UserId::new(2)).await.unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path().join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tokens.json", "tokens.json.lock"]);
        assert_eq!(refresh_token_of(store.load(USER).await.unwrap()), "r4");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_saves_of_different_users_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app/tokens.json");
        let tasks: Vec<_> = (1..=20u64)
            .map(|user| {
                // A store instance per task: as separate processes would have.
                let store = FileStore::open(&path).unwrap();
                tokio::spawn(async move {
                    store
                        .save(UserId::new(user), &credentials(user, &format!("r{user}")))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let users = FileStore::open(&path).unwrap().users().await.unwrap();
        assert_eq!(users, (1..=20).map(UserId::new).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_refresh_lock_excludes_a_second_locker_of_the_same_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app/tokens.json");
        let first = FileStore::open(&path).unwrap();
        let second = FileStore::open(&path)
            .unwrap()
            .with_lock_timeout(Duration::from_millis(200));
        let held = first.lock(USER).await.unwrap();

        let err = second.lock(USER).await.unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(
            err.to_string().contains("tokens.json.user-1001.lock"),
            "{err}"
        );
        // Other users and plain saves are not blocked by a refresh lock.
        let _other = second.lock(UserId::new(2)).await.unwrap();
        second.save(USER, &credentials(1001, "r")).await.unwrap();

        // A waiting locker gets the lock as soon as it is released.
        let waiter = {
            let second = Arc::new(second.with_lock_timeout(Duration::from_secs(10)));
            tokio::spawn(async move { second.lock(USER).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_lock_timeout_waits_for_the_lock_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app/tokens.json");
        let held = FileStore::open(&path).unwrap().lock(USER).await.unwrap();
        let patient = Arc::new(
            FileStore::open(&path)
                .unwrap()
                .with_lock_timeout(Duration::MAX),
        );
        let waiter = tokio::spawn(async move { patient.lock(USER).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiter.is_finished(),
            "still waiting while the lock is held"
        );
        drop(held);
        waiter.await.unwrap().unwrap();
    }

    fn arbitrary_entry() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        proptest::option::of("[!-~]{1,60}")
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_bytes_never_panics_nor_quotes_them(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(reason) = parse(&bytes) {
                let text = String::from_utf8_lossy(&bytes);
                // A reason may name a field, never repeat a value of the file.
                for token in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| t.len() >= 12) {
                    proptest::prop_assert!(!reason.contains(token), "{reason}");
                }
            }
        }

        #[test]
        fn parsing_json_like_text_never_panics(text in r#"\{"format":1,"users":\{("[0-9]{1,4}":(\{"login_required":(true|false)\}|\{\}|null|\[\]|"x"),?){0,3}\}\}?"#) {
            let _ = parse(text.as_bytes());
        }

        #[test]
        fn what_is_written_reads_back(entries in proptest::collection::btree_map(0u64..100_000, arbitrary_entry(), 0..8)) {
            let users: Users = entries
                .iter()
                .map(|(&user, refresh)| {
                    let entry = match refresh {
                        Some(refresh) => Entry::Credentials(credentials(user, refresh).reveal_for_storage()),
                        None => Entry::LoginRequired,
                    };
                    (UserId::new(user), entry)
                })
                .collect();
            let back = parse(&serialize(&users)).expect("our own file parses");
            proptest::prop_assert_eq!(back.len(), users.len());
            for (user, entry) in &users {
                match (entry, &back[user]) {
                    (Entry::LoginRequired, Entry::LoginRequired) => {}
                    (Entry::Credentials(a), Entry::Credentials(b)) => {
                        proptest::prop_assert_eq!(&a.refresh_token, &b.refresh_token);
                        proptest::prop_assert_eq!(a.expires_at, b.expires_at);
                        proptest::prop_assert_eq!(&a.scopes, &b.scopes);
                    }
                    _ => proptest::prop_assert!(false, "user {} changed kind", user),
                }
            }
        }
    }

    #[test]
    fn open_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not a file path"), "{err}");
    }

    #[test]
    fn the_default_path_is_a_tokens_file_named_after_the_app() {
        if let Some(path) = FileStore::default_path("withings-oauth-test") {
            assert!(path.ends_with("tokens.json"), "{}", path.display());
            assert!(path.to_string_lossy().contains("withings-oauth-test"));
        }
    }
}
