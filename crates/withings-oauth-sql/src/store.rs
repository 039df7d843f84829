//! [`SqlStore`]: the token store on SQLite or PostgreSQL, the [`TokenStore`] contract on top of
//! the compare-and-swap writes, the leases and the gathered calls.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;
use withings_oauth::{
    Credentials, Expected, Lease, StoreError, StoreFuture, TokenStore, UserId, Version,
    VersionedEntry, ensure_owner,
};

use crate::cas::{Change, Rows};
use crate::db::{Db, on_pool};
use crate::encryption::{self, Opening};
use crate::gathered::Gatherer;
use crate::lease::{Guard, Leases};
use crate::options::{Backend, SqlOptions};
use crate::pending::SqlPendingLogins;
use crate::queries as q;
use crate::rate_limit::{RateParams, SqlBucket};
use crate::rotation::Rotation;
use crate::sealed::ClearText;
use crate::telemetry::timed;

/// What [`SqlStore::clear_text_warning`] says, and what is logged once per process when a
/// store is opened without keys.
pub const CLEAR_TEXT_WARNING: &str = "the token store has no encryption key: tokens are stored in clear text; set WITHINGS_STORE_KEYS (e.g. `k1:$(head -c 32 /dev/urandom | base64)`) to encrypt them";

static WARNED_CLEAR_TEXT: AtomicBool = AtomicBool::new(false);

/// Token store on SQLite (`sqlite://path`) or PostgreSQL (`postgres://...`): the whole
/// [`TokenStore`] contract, shared by every process and machine that opens the same database.
///
/// Cloning is cheap and shares the connection pool. See the [crate docs](crate) for the
/// tables, the encryption and the lease.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    rows: Rows,
    leases: Leases,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &self.location())
            .field("keys", &self.inner.rows.keys)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens the store the URL names (`sqlite://path`, `postgres://user:password@host/db`),
    /// applying its migrations unless told not to.
    ///
    /// A SQLite file is created (mode 0600) if missing. Errors say what to do, and never show
    /// the URL's password.
    ///
    /// ```
    /// use withings_oauth::{Expected, TokenStore, UserId};
    /// use withings_oauth_sql::{SqlOptions, SqlStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), withings_oauth::StoreError> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("tokens.db");
    /// let store = SqlStore::connect(&format!("sqlite://{}", path.display()), SqlOptions::default()).await?;
    /// let user = UserId::new(1001);
    /// let version = store.mark_login_required(user, Expected::Absent).await?;
    /// assert_eq!(store.load(user).await?.unwrap().version, version);
    /// assert!(store.clear_text_warning().is_some()); // no key was configured
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str, options: SqlOptions) -> Result<SqlStore, StoreError> {
        Self::open(url, options, Opening::Use).await
    }

    async fn open(
        url: &str,
        options: SqlOptions,
        opening: Opening,
    ) -> Result<SqlStore, StoreError> {
        let db = Db::open(url, &options).await?;
        crate::schema::prepare(&db, &options).await?;
        encryption::check(&db, options.keys.as_ref(), opening).await?;
        let gatherer = Gatherer::new(db);
        let store = SqlStore {
            inner: Arc::new(Inner {
                rows: Rows {
                    gatherer: gatherer.clone(),
                    keys: options.keys.clone().map(Arc::new),
                },
                leases: Leases::new(gatherer, &options),
            }),
        };
        if !store.is_encrypted() && !WARNED_CLEAR_TEXT.swap(true, Ordering::Relaxed) {
            warn!(database = %store.location(), "{CLEAR_TEXT_WARNING}");
        }
        Ok(store)
    }

    /// How many connections the pool has open now, idle or in use.
    pub fn open_connections(&self) -> u32 {
        on_pool!(&self.db().pool, p => p.size())
    }

    /// The backend the URL picked.
    pub fn backend(&self) -> Backend {
        self.db().location.backend
    }

    /// The store's URL without its password, for messages.
    pub fn location(&self) -> &str {
        self.db().shown()
    }

    /// Checks that the database answers and that every migration this build of the store
    /// knows is applied: what a readiness probe asks before the program takes requests.
    ///
    /// ```
    /// use withings_oauth_sql::{SqlOptions, SqlStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), withings_oauth::StoreError> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    /// let store = SqlStore::connect(&url, SqlOptions::default()).await?;
    /// store.check_ready().await?;
    /// store.close().await;
    /// assert!(store.check_ready().await.is_err()); // closed: it no longer answers
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        crate::schema::check_migrations(self.db()).await
    }

    /// Whether new writes are encrypted (a key is configured).
    pub fn is_encrypted(&self) -> bool {
        self.inner.rows.keys.is_some()
    }

    /// [`CLEAR_TEXT_WARNING`] if tokens are stored in clear text (no key), for a program to
    /// show its user; `None` when they are encrypted.
    pub fn clear_text_warning(&self) -> Option<&'static str> {
        (!self.is_encrypted()).then_some(CLEAR_TEXT_WARNING)
    }

    /// Waits for the leases this process dropped to be released in the database, then
    /// closes every connection (a SQLite file is then left alone: its `-wal` and `-shm` files
    /// are folded back and removed). Call it before a program exits: a lease whose release
    /// never ran makes the other processes wait for its expiry.
    pub async fn close(&self) {
        self.gatherer().close().await
    }

    /// Moves every row to the active key: rows sealed with an older key, and rows stored in
    /// clear before a key was configured. Each row is rewritten with a compare-and-swap on
    /// its version, so a session that saves meanwhile wins and nothing is lost; such a row is
    /// read again. Rows that can't be opened are left untouched and listed.
    ///
    /// Sessions keep working throughout: the tokens and versions don't change, only their
    /// sealing. Once it reports no unreadable row, older keys can be removed from the
    /// keyring.
    pub async fn rotate_keys(&self) -> Result<Rotation, StoreError> {
        let rotation = crate::rotation::rotate(&self.inner.rows, ClearText::Refused).await?;
        if let Some(keys) = &self.inner.rows.keys {
            crate::telemetry::rotated(&rotation, keys.ids());
        }
        Ok(rotation)
    }

    /// Encrypts a database that was used without keys: the one way from clear text to
    /// encryption. Opens the store with `options` (which must hold keys), records the active
    /// key in the database first (from then on the database refuses any token in clear text,
    /// whatever program writes it, and refuses to open without keys), then seals every login
    /// stored in clear text, with compare-and-swap updates while sessions keep working, and
    /// rewrites the table so that no replaced clear value lingers in the database's free space
    /// or journal (SQLite: `VACUUM` and a checkpoint; PostgreSQL: `VACUUM FULL` of the
    /// credentials table, which locks it for the moment it takes). Refused for a database that
    /// is already encrypted.
    ///
    /// ```
    /// use withings_oauth::{Expected, TokenStore, UserId, testing};
    /// use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    /// let user = UserId::new(1001);
    /// let clear = SqlStore::connect(&url, SqlOptions::default()).await?;
    /// let login = testing::credentials(user, "access", "refresh", chrono::Utc::now());
    /// clear.save(user, &login, Expected::Absent).await?;
    /// clear.close().await;
    ///
    /// let keys = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
    /// // Opening it with keys is refused while it holds logins in clear text...
    /// assert!(SqlStore::connect(&url, SqlOptions::default().keys(keys.clone())).await.is_err());
    /// // ...until they are sealed, once.
    /// let sealing = SqlStore::encrypt_clear_rows(&url, SqlOptions::default().keys(keys.clone())).await?;
    /// assert!(sealing.complete());
    /// let store = SqlStore::connect(&url, SqlOptions::default().keys(keys)).await?;
    /// assert!(store.load(user).await?.is_some());
    /// // And there is no way back to clear text.
    /// assert!(SqlStore::connect(&url, SqlOptions::default()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn encrypt_clear_rows(
        url: &str,
        options: SqlOptions,
    ) -> Result<Rotation, StoreError> {
        let store = Self::open(url, options, Opening::SealClearRows).await?;
        let sealing = crate::rotation::rotate(&store.inner.rows, ClearText::Accepted).await;
        // The clear values the sweep replaced may linger in the database's free space and
        // journal until they are overwritten: the table is rewritten without them.
        let rewritten = match &sealing {
            Ok(_) => encryption::rewrite_credentials(store.db()).await,
            Err(_) => Ok(()),
        };
        store.close().await;
        rewritten.and(sealing)
    }

    /// The pending-login store on this store's database (same pool, same keys), keeping
    /// logins [`DEFAULT_PENDING_LOGIN_TTL`](withings_oauth::DEFAULT_PENDING_LOGIN_TTL), at
    /// most [`DEFAULT_PENDING_LOGINS_PER_OWNER`](withings_oauth::DEFAULT_PENDING_LOGINS_PER_OWNER)
    /// per owner. See [`SqlPendingLogins`].
    pub fn pending_logins(&self) -> SqlPendingLogins {
        SqlPendingLogins::new(self.db().clone(), self.inner.rows.keys.clone())
    }

    /// The shared token bucket called `name` (created full on its first use), filling as
    /// `params` says. Names are 1 to 200 characters.
    pub fn rate_bucket(&self, name: &str, params: RateParams) -> Result<SqlBucket, StoreError> {
        SqlBucket::new(self.db().clone(), name, params)
    }

    /// The database handle and its gathered calls.
    pub(crate) fn gatherer(&self) -> &Gatherer {
        &self.inner.rows.gatherer
    }

    /// The database handle, for the pending logins and the shared rate limits.
    pub(crate) fn db(&self) -> &Db {
        self.gatherer().db()
    }
}

impl TokenStore for SqlStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        Box::pin(timed("load", self.backend(), self.inner.rows.load(user)))
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(timed("save", self.backend(), async move {
            ensure_owner(user, credentials)?;
            self.inner
                .rows
                .save(user, credentials, expected, None)
                .await
        }))
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(timed(
            "mark_login_required",
            self.backend(),
            self.inner.rows.write(user, expected, Change::LoginRequired),
        ))
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        Box::pin(timed("delete", self.backend(), async move {
            if expected == Expected::Absent {
                return match self.inner.rows.load(user).await? {
                    None => Ok(()),
                    current => Err(StoreError::conflict_with(user, expected, current)),
                };
            }
            self.inner
                .rows
                .write(user, expected, Change::Delete)
                .await
                .map(drop)
        }))
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        Box::pin(timed("users", self.backend(), async move {
            let result: Result<Vec<i64>, sqlx::Error> = on_pool!(&self.db().pool, p => {
                sqlx::query_scalar(q::USERS).fetch_all(p).await
            });
            let ids = result.map_err(|e| self.db().fail("list its users", e))?;
            Ok(ids.into_iter().map(|id| UserId::new(id as u64)).collect())
        }))
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        Box::pin(timed("lease", self.backend(), async move {
            Ok(self.inner.leases.take(user, ttl, false).await?.0)
        }))
    }

    /// The lease, then the read, in one gathered call: on PostgreSQL a second statement on the
    /// claim's connection, sent once the claim committed (with its own snapshot, so it sees the
    /// previous holder's save); on SQLite, in the claim's transaction.
    fn lease_and_load<'a>(
        &'a self,
        user: UserId,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<VersionedEntry>)> {
        Box::pin(timed("lease_and_load", self.backend(), async move {
            let (lease, raw) = self.inner.leases.take(user, ttl, true).await?;
            let entry = raw.map(|raw| self.inner.rows.open(user, raw)).transpose()?;
            Ok((lease, entry))
        }))
    }

    /// The save and the end of the lease in one statement (PostgreSQL) or transaction
    /// (SQLite), gathered with the others in flight. The lease ends only if this holder still
    /// holds it, and never before the save is written or refused: with the gathered save, or
    /// after the save that goes alone when the batch did not run it.
    fn save_and_release<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
        lease: Lease,
    ) -> StoreFuture<'a, Version> {
        Box::pin(timed("save_and_release", self.backend(), async move {
            // Only this store's own leases end in its statements; any other lease is dropped
            // after the save.
            let (local, release) = match lease.into_guard::<Guard>() {
                Ok(((local, release), _)) if release.belongs_to(self.gatherer()) => {
                    (local, Some(release))
                }
                Ok(((local, release), term)) => (Lease::renewable((local, release), term), None),
                Err(lease) => (lease, None),
            };
            ensure_owner(user, credentials)?;
            let saved = self
                .inner
                .rows
                .save(user, credentials, expected, release)
                .await;
            drop(local);
            saved
        }))
    }
}
