//! The [`TokenStore`] contract: versioned entries, compare-and-swap writes and refresh leases,
//! so that no writer can lose the newest login.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::term::LeaseTerm;
use crate::credentials::{Credentials, UserId};
use crate::future::BoxFuture;

/// The future every [`TokenStore`] method returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// How long a session's refresh lease lasts by default: longer than a refresh (a token call of
/// at most 30 s, possibly after a nonce call, then a save), so that it only expires when its
/// holder died or hung.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(90);

/// A place that keeps each user's newest credentials, shared by every program that logs in,
/// refreshes or logs out that user.
///
/// # The contract
/// - **Versions.** Every entry carries a [`Version`] that the store assigns on each write and
///   that only grows, per user, even across a delete: a version never comes back.
/// - **Compare-and-swap.** Every write ([`save`](Self::save),
///   [`mark_login_required`](Self::mark_login_required), [`delete`](Self::delete)) says what it
///   expects to replace ([`Expected::Absent`] or [`Expected::Version`]). If the entry is
///   something else, nothing is written and the write fails with [`StoreError::Conflict`], which
///   carries the entry stored now. So a writer that read an entry, worked (a refresh takes up to
///   30 s) and writes back can never overwrite what another program wrote meanwhile: a new login,
///   a logout, a refresh of its own.
/// - **Read your writes.** Once a write returned `Ok`, every later [`load`](Self::load) through
///   any handle of the store (any process sharing the file or database) sees it or a newer
///   version. A store that serves reads from a cache or a replica may return an older entry; the
///   versions let the sessions notice and never adopt it.
/// - **Durability.** A write returns `Ok` only once it survives a crash of the process (and, for
///   a file, of the machine: the data and the directory are flushed). Sessions publish a new
///   access token only after its save returned, since using it kills the previous refresh token.
/// - **Leases.** [`lease`](Self::lease) gives one holder at a time per user the right to refresh,
///   across every process that shares the store. A lease expires after its time to live, so a
///   crashed holder's lease is taken over; whoever takes a lease re-reads the entry under it.
///   Leases make refreshes happen once; compare-and-swap keeps the data safe even when a lease
///   was lost (an expired lease's holder finds its save refused). A lease's
///   [`LeaseTerm`] says how long it is held still: a store may keep a lease short and renew
///   it while its holder lives (never past `ttl`), moving the term, and mark it lost when it
///   finds it taken over; a session sends its refresh request only with a timeout that ends
///   before the term does.
///
/// The trait is object-safe (sessions hold an `Arc<dyn TokenStore>`) and returns boxed futures,
/// so it can be implemented for a database or a keychain without an async-trait macro. The
/// conformance kit ([`testing::conformance`](crate::testing::conformance), feature `test-util`)
/// checks an implementation against this contract.
///
/// ```
/// use withings_oauth::{Expected, MemoryStore, StoreError, StoredEntry, TokenStore, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), withings_oauth::StoreError> {
/// let store = MemoryStore::new();
/// let user = UserId::new(1001);
/// assert!(store.load(user).await?.is_none());
///
/// let v1 = store.mark_login_required(user, Expected::Absent).await?;
/// let entry = store.load(user).await?.expect("just written");
/// assert_eq!(entry.version, v1);
/// assert!(matches!(entry.entry, StoredEntry::LoginRequired));
///
/// // A second writer that still believes the entry is absent is refused, and told what is there.
/// match store.mark_login_required(user, Expected::Absent).await {
///     Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.current_version(), Some(v1)),
///     other => panic!("expected a conflict, got {other:?}"),
/// }
/// store.delete(user, Expected::Version(v1)).await?;
/// assert!(store.users().await?.is_empty());
/// # Ok(())
/// # }
/// ```
pub trait TokenStore: Send + Sync {
    /// The user's entry and its version, or `None` if the store has nothing for the user.
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>>;

    /// Stores `credentials` as the user's entry if the entry is what `expected` says; returns
    /// the new version.
    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version>;

    /// Records that the user must log in again (their refresh token was rejected), dropping the
    /// dead tokens, if the entry is what `expected` says: the version whose refresh token died.
    /// Returns the new version.
    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version>;

    /// Forgets the user (a logout, a revoke) if the entry is what `expected` says. Deleting an
    /// absent user with [`Expected::Absent`] is not an error.
    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()>;

    /// Every user the store has an entry for (a fleet), in ascending order.
    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>>;

    /// Takes the user's refresh lease for `ttl`, waiting while another holder has it.
    ///
    /// A store shared by several processes must make the lease exclusive across them, or two
    /// processes may refresh with the same refresh token (Withings honours an old refresh token
    /// for 8 hours, so both succeed and the chain forks: one pair is dropped).
    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease>;

    /// Takes the user's lease (as [`lease`](Self::lease)), then reads the entry under it (as
    /// [`load`](Self::load)): how a refresh starts.
    ///
    /// A store may do both in one trip to its database, as long as the read comes after the
    /// lease is taken: it must see every write that returned before the lease was taken,
    /// since the previous holder's save does. The default takes the lease, then loads.
    fn lease_and_load<'a>(
        &'a self,
        user: UserId,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<VersionedEntry>)> {
        Box::pin(async move {
            let lease = self.lease(user, ttl).await?;
            let entry = self.load(user).await?;
            Ok((lease, entry))
        })
    }

    /// Saves `credentials` (as [`save`](Self::save)), then releases `lease`, whatever the
    /// save's outcome: how a refresh ends.
    ///
    /// A store may do both in one trip to its database, as long as the lease ends only once
    /// the save is durable (the next holder must find it) and only if `lease` still holds it
    /// (an expired lease may have been taken over). The default saves, then drops the lease.
    fn save_and_release<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
        lease: Lease,
    ) -> StoreFuture<'a, Version> {
        Box::pin(async move {
            let saved = self.save(user, credentials, expected).await;
            drop(lease);
            saved
        })
    }

    /// Forgets the user whatever is stored: the unconditional delete, for a user who asked for
    /// it (`logout --force`). Built on compare-and-swap: it deletes the version it read, and
    /// reads again if that changed meanwhile.
    fn force_delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            loop {
                let expected = match self.load(user).await {
                    Ok(None) => return Ok(()),
                    Ok(Some(entry)) => Expected::Version(entry.version),
                    // A login nobody can open is deleted all the same.
                    Err(StoreError::Unreadable { version, .. }) => Expected::Version(version),
                    Err(e) => return Err(e),
                };
                match self.delete(user, expected).await {
                    Err(StoreError::Conflict(_) | StoreError::Unreadable { .. }) => continue,
                    other => return other,
                }
            }
        })
    }
}

impl<T: TokenStore + ?Sized> TokenStore for std::sync::Arc<T> {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        (**self).load(user)
    }
    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        (**self).save(user, credentials, expected)
    }
    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        (**self).mark_login_required(user, expected)
    }
    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        (**self).delete(user, expected)
    }
    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        (**self).users()
    }
    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        (**self).lease(user, ttl)
    }
    fn lease_and_load<'a>(
        &'a self,
        user: UserId,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<VersionedEntry>)> {
        (**self).lease_and_load(user, ttl)
    }
    fn save_and_release<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
        lease: Lease,
    ) -> StoreFuture<'a, Version> {
        (**self).save_and_release(user, credentials, expected, lease)
    }
    fn force_delete<'a>(&'a self, user: UserId) -> StoreFuture<'a, ()> {
        (**self).force_delete(user)
    }
}

/// The version of a stored entry: assigned by the store on every write, only growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The first version a store assigns (entries migrated from a store without versions get
    /// it too).
    pub const FIRST: Version = Version(1);

    /// Wraps a version number, as a store reads it back from its storage.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The version number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next version.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {}", self.0)
    }
}

/// What a write expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// No entry for the user (a first login, or a login after a logout).
    Absent,
    /// The entry at this version.
    Version(Version),
}

impl Expected {
    /// Whether `current` (the version stored now, if any) is what is expected.
    pub fn matches(self, current: Option<Version>) -> bool {
        match self {
            Expected::Absent => current.is_none(),
            Expected::Version(v) => current == Some(v),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Absent => f.write_str("no entry"),
            Expected::Version(v) => v.fmt(f),
        }
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

/// A stored entry and its version.
#[derive(Clone, Debug)]
pub struct VersionedEntry {
    /// The version the store gave the entry.
    pub version: Version,
    /// The entry.
    pub entry: StoredEntry,
}

impl VersionedEntry {
    /// The credentials, unless the user must log in again.
    pub fn credentials(&self) -> Option<&Credentials> {
        match &self.entry {
            StoredEntry::Credentials(c) => Some(c),
            StoredEntry::LoginRequired => None,
        }
    }
}

/// A write refused because the entry changed since it was read. Nothing was written.
#[derive(Clone, Debug)]
pub struct Conflict {
    /// The user.
    pub user: UserId,
    /// What the write expected.
    pub expected: Expected,
    /// What is stored now.
    pub current: Option<VersionedEntry>,
}

impl Conflict {
    /// The version stored now, if any.
    pub fn current_version(&self) -> Option<Version> {
        self.current.as_ref().map(|e| e.version)
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the stored login of user {} changed while it was being replaced (expected {}, found ",
            self.user, self.expected
        )?;
        match &self.current {
            None => f.write_str("no entry")?,
            Some(entry) => entry.version.fmt(f)?,
        }
        f.write_str("): another program logged in, refreshed or logged out; nothing was written")
    }
}

/// A held refresh lease ([`TokenStore::lease`]); dropping it releases the lease.
///
/// Its [`LeaseTerm`] says how long it is held still: a fixed end (memory store), none (an OS
/// lock, held until its process exits), or an end that its store moves as it renews the lease
/// while the refresh runs (SQL stores), and marks lost if another holder took it over. A
/// session reads it right before it sends a refresh request, and sends that request with a
/// timeout that ends before the lease does.
pub struct Lease {
    term: LeaseTerm,
    guard: Option<Box<dyn Any + Send>>,
}

impl Lease {
    /// A lease that excludes nothing and never expires: for a store used by one session per
    /// user.
    pub fn none() -> Self {
        Self {
            term: LeaseTerm::unending(),
            guard: None,
        }
    }

    /// Wraps a guard (an OS file lock, a mutex guard...) released when the lease is dropped;
    /// `until` is when it expires, if it does.
    pub fn new(guard: impl Send + 'static, until: Option<Instant>) -> Self {
        let term = until.map_or_else(LeaseTerm::unending, LeaseTerm::until);
        Self::renewable(guard, term)
    }

    /// Wraps a guard released when the lease is dropped, whose end the store moves as it
    /// renews the lease (and marks lost if it finds the lease taken over).
    pub fn renewable(guard: impl Send + 'static, term: LeaseTerm) -> Self {
        Self {
            term,
            guard: Some(Box::new(guard)),
        }
    }

    /// The guard this lease was made with ([`Lease::new`], [`Lease::renewable`]), if it is a
    /// `G`, with its term; otherwise the lease, unchanged. For a store's
    /// [`save_and_release`](TokenStore::save_and_release): it finds its own leases' guards
    /// back, to end them with the save.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use withings_oauth::Lease;
    ///
    /// let until = Instant::now() + Duration::from_secs(90);
    /// let lease = Lease::new(7_u32, Some(until));
    /// let lease = lease.into_guard::<String>().expect_err("not a String");
    /// let (guard, term) = lease.into_guard::<u32>().expect("a u32");
    /// assert_eq!((guard, term.end()), (7, Some(until)));
    /// ```
    pub fn into_guard<G: Any>(self) -> Result<(G, LeaseTerm), Self> {
        let Self { term, guard } = self;
        match guard.map(|guard| guard.downcast::<G>()) {
            Some(Ok(guard)) => Ok((*guard, term)),
            Some(Err(guard)) => Err(Self {
                term,
                guard: Some(guard),
            }),
            None => Err(Self { term, guard: None }),
        }
    }

    /// When the lease ends, and whether it was lost: read right before a refresh request.
    pub fn term(&self) -> &LeaseTerm {
        &self.term
    }

    /// Whether the lease has expired or was lost (another holder may have taken it over): a
    /// holder that worked past it must expect its writes to conflict.
    pub fn is_expired(&self) -> bool {
        self.term.left() == Some(Duration::ZERO)
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("held", &self.guard.is_some())
            .field("expired", &self.is_expired())
            .field("left", &self.term.left())
            .finish()
    }
}

/// A store that could not do what was asked. No message holds a token or a file's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The entry changed since it was read: nothing was written. The entry stored now is in the
    /// conflict; read it and decide again.
    #[error("{0}")]
    Conflict(Box<Conflict>),
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
    /// The store's data can't be read as a token store: its file, or a row of its database. It
    /// is left as it is.
    #[error("the token store {location} is damaged ({reason}); it was left untouched: {}", location.repair_advice())]
    Corrupt {
        /// The file, or the database.
        location: StoreLocation,
        /// What is wrong (for a database, whose row), without the data itself.
        reason: String,
    },
    /// One user's stored login can't be opened: its key is not loaded, its ciphertext failed
    /// authentication (altered, copied from another row, or an older one written back), or it
    /// is in clear text in an encrypted store. Nothing was written over it. It does not lock
    /// the user out: a new login replaces it ([`Session::start`](crate::Session::start)
    /// overwrites the `version` named here), and
    /// [`force_delete`](TokenStore::force_delete) removes it.
    #[error(
        "the stored login of user {user} in the token store {store} can't be read ({reason}); it was left untouched: load the key it needs, or log the user in again (a new login replaces it; `logout --force` removes it)"
    )]
    Unreadable {
        /// The store.
        store: StoreLocation,
        /// Whose login it is.
        user: UserId,
        /// The version of the unreadable entry, to replace or delete it.
        version: Version,
        /// What is wrong, e.g. which key id is missing; never a token.
        reason: String,
    },
    /// The store's encryption is configured otherwise than its data needs: no key for an
    /// encrypted store, a retired key still active, clear-text logins where keys are in use.
    /// Nothing was read or written.
    #[error("the token store {store} {problem}: {fix}")]
    Encryption {
        /// The store.
        store: StoreLocation,
        /// What is wrong, e.g. "is encrypted (key k1) but no key was given".
        problem: String,
        /// What to do, naming the setting, e.g. "set WITHINGS_STORE_KEYS".
        fix: String,
    },
    /// The store's file or directory can be read or written by other users, or belongs to
    /// someone else.
    #[error("the token store {} is accessible by other users ({problem}): run `{fix}`", path.display())]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What is wrong, e.g. `mode 644`.
        problem: String,
        /// The command that fixes it, e.g. `chmod 600 /home/a/tokens.json`.
        fix: String,
    },
    /// Another program held the refresh lease or a write lock for too long.
    #[error("the lock {} is held by another program and was not released within {seconds} s: retry, or stop the program holding it", path.display())]
    Locked {
        /// The lock file, or a description of the lock.
        path: PathBuf,
        /// How long was waited.
        seconds: u64,
    },
    /// Any other failure of a store.
    #[error("the token store failed: {0}")]
    Other(String),
}

/// Where a store keeps its data, as its errors name it: a file or directory on this machine, or
/// a database. Shown as the path or the database's description; never holds a password.
///
/// ```
/// use withings_oauth::StoreLocation;
///
/// let file = StoreLocation::path("/home/a/tokens.json");
/// assert_eq!(file.to_string(), "/home/a/tokens.json");
/// let db = StoreLocation::Database("postgres://app@db.internal/withings".into());
/// assert_eq!(db.to_string(), "postgres://app@db.internal/withings");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// A file or directory.
    Path(PathBuf),
    /// A database, described without any password: its URL with the password and the query
    /// removed, say (`postgres://app@db.internal/withings`), or `sqlite:///var/lib/app/tokens.db`.
    Database(String),
}

impl StoreLocation {
    /// The file or directory at `path`.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        StoreLocation::Path(path.into())
    }

    /// What to do about damaged data there.
    fn repair_advice(&self) -> &'static str {
        match self {
            StoreLocation::Path(_) => {
                "repair it or delete it (its users will have to log in again)"
            }
            StoreLocation::Database(_) => {
                "repair the row or delete it (its user will have to log in again)"
            }
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Path(path) => path.display().fmt(f),
            StoreLocation::Database(shown) => f.write_str(shown),
        }
    }
}

/// Refuses to store one user's tokens under another user's entry: what every store's `save`
/// checks first.
pub fn ensure_owner(user: UserId, credentials: &Credentials) -> Result<(), StoreError> {
    if credentials.user_id() == user {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "refusing to save user {}'s tokens as user {user}'s",
            credentials.user_id()
        )))
    }
}

impl StoreError {
    /// The conflict, if this is one.
    pub fn conflict(&self) -> Option<&Conflict> {
        match self {
            StoreError::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// A conflict error for `user`.
    pub fn conflict_with(
        user: UserId,
        expected: Expected,
        current: Option<VersionedEntry>,
    ) -> Self {
        StoreError::Conflict(Box::new(Conflict {
            user,
            expected,
            current,
        }))
    }
}
