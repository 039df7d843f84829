//! [`SqlStore`]: the token store on SQLite or PostgreSQL, and its [`SqlOptions`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row;
use tracing::warn;
use withings_oauth::{
    Credentials, DEFAULT_LEASE_TTL, Expected, Lease, LocalLeases, StoreError, StoreFuture,
    TokenStore, UserId, Version, VersionedEntry, ensure_owner,
};

use crate::batch::Batcher;
use crate::grouped::{self, Batches};
#[cfg(feature = "sqlite")]
use crate::grouped::{Write, Written};
use crate::keys::Keyring;
use crate::location::Location;
use crate::queries as q;
use crate::row::{self, RawRow, SealedCredentials};
use crate::sealed::{self, Column};

/// What [`SqlStore::clear_text_warning`] says, and what is logged once per process when a
/// store is opened without keys.
pub const CLEAR_TEXT_WARNING: &str = "the token store has no encryption key: tokens are stored in clear text; set WITHINGS_STORE_KEYS (e.g. `k1:$(head -c 32 /dev/urandom | base64)`) to encrypt them";

static WARNED_CLEAR_TEXT: AtomicBool = AtomicBool::new(false);

/// A gathered write answered with another kind of answer: never, as each answer is made from
/// its own write.
#[cfg(feature = "sqlite")]
const MISMATCH: &str = "the token store's writer answered another kind of write: retry";

/// The longest lease the database is asked for, whatever the options say.
const LONGEST_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);

/// How many rows the re-encryption sweep reads at a time.
const SWEEP_BATCH: i64 = 200;

/// The database a store URL picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `sqlite://path`: one file, one machine (feature `sqlite`, on by default).
    Sqlite,
    /// `postgres://...` or `postgresql://...`: several instances on several machines
    /// (feature `postgres`).
    Postgres,
}

/// How to open a [`SqlStore`].
///
/// ```
/// use std::time::Duration;
/// use withings_oauth_sql::{Keyring, SqlOptions};
///
/// let options = SqlOptions::default()
///     .keys(Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?)
///     .max_connections(16)
///     .max_lease(Duration::from_secs(60));
/// # Ok::<(), withings_oauth_sql::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SqlOptions {
    keys: Option<Keyring>,
    run_migrations: bool,
    max_connections: Option<u32>,
    min_connections: u32,
    busy_timeout: Duration,
    acquire_timeout: Duration,
    max_lease: Duration,
    schema: Option<String>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            keys: None,
            run_migrations: true,
            max_connections: None,
            min_connections: 0,
            busy_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
            max_lease: DEFAULT_LEASE_TTL,
            schema: None,
        }
    }
}

impl SqlOptions {
    /// The defaults, with the keys from the environment ([`Keyring::from_env`]): tokens are
    /// encrypted when `WITHINGS_STORE_KEYS` or `WITHINGS_STORE_KEYS_FILE` is set.
    pub fn from_env() -> Result<Self, crate::KeyError> {
        Ok(Self {
            keys: Keyring::from_env()?,
            ..Self::default()
        })
    }

    /// Encrypts tokens with these keys (the first seals, all open).
    pub fn keys(mut self, keys: Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Whether opening the store applies its migrations (default `true`). Turn it off when
    /// the database's owner runs them (see the crate docs); opening then checks that every
    /// migration was applied and says which one is missing.
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// The pool's size (default 4 for SQLite, 10 for PostgreSQL).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = Some(connections.max(1));
        self
    }

    /// How many connections the pool keeps open even when idle (default 0: opened when
    /// needed, closed after a while unused). Opened in the background once the store is
    /// open, so that a burst of refreshes after a quiet spell does not wait for connections
    /// (each a process to start on the PostgreSQL server, and a TLS handshake). At most
    /// [`max_connections`](Self::max_connections).
    pub fn min_connections(mut self, connections: u32) -> Self {
        self.min_connections = connections;
        self
    }

    /// SQLite: how long a write waits for another process's write to finish (default 30 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long to wait for a connection, the first one included (default 10 s): a database
    /// that is down is reported after this.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The longest refresh lease the store grants (default
    /// [`DEFAULT_LEASE_TTL`](withings_oauth::DEFAULT_LEASE_TTL), 90 s): how long the others
    /// wait before taking over from an instance that died while refreshing. Keep it above the
    /// longest refresh (a token call of at most 30 s, then a save).
    pub fn max_lease(mut self, ttl: Duration) -> Self {
        self.max_lease = ttl.max(Duration::from_millis(1));
        self
    }

    /// PostgreSQL: keeps the tables in this schema (created if missing when migrations run)
    /// instead of the connection's `search_path`. Letters, digits and `_` only.
    pub fn postgres_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

impl SqlOptions {
    pub(crate) fn max_connections_value(&self, default: u32) -> u32 {
        self.max_connections.unwrap_or(default)
    }

    pub(crate) fn min_connections_value(&self, default_max: u32) -> u32 {
        self.min_connections
            .min(self.max_connections_value(default_max))
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn busy_timeout_value(&self) -> Duration {
        self.busy_timeout
    }

    pub(crate) fn acquire_timeout_value(&self) -> Duration {
        self.acquire_timeout
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn schema_value(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("keys", &self.keys)
            .field("run_migrations", &self.run_migrations)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("max_lease", &self.max_lease)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// What [`SqlStore::rotate_keys`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// Rows moved to the active key.
    pub rewritten: usize,
    /// Rows left as they were because they can't be opened (their key is not loaded, or they
    /// are damaged): each is named by its user.
    pub unreadable: Vec<UserId>,
}

#[derive(Clone)]
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, whichever backend it is.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($p) => $body,
        }
    };
}

/// Runs one write statement in a `BEGIN IMMEDIATE` transaction on a SQLite pool: the write
/// lock is taken first, waiting up to the busy timeout (a plain `BEGIN` would fail with
/// SQLITE_BUSY at once when it later writes). Gives the rows it changed.
#[cfg(feature = "sqlite")]
macro_rules! sqlite_immediate {
    ($pool:expr, $statement:expr) => {
        async {
            let mut tx = $pool.begin_with("BEGIN IMMEDIATE").await?;
            let rows = $statement.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(rows)
        }
        .await
    };
}

/// Runs one write statement on either backend (SQLite: in `BEGIN IMMEDIATE`); gives the rows
/// it changed.
macro_rules! execute_write {
    ($pool:expr, $statement:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => sqlite_immediate!(p, $statement),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => $statement.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}

/// Runs `$body` (which gives a `Result<_, sqlx::Error>`) in a `BEGIN IMMEDIATE` transaction
/// on a SQLite pool, `$tx` naming the transaction, and commits: the many writes of a batch in
/// one commit.
#[cfg(feature = "sqlite")]
macro_rules! sqlite_immediate_tx {
    ($pool:expr, $tx:ident => $body:block) => {
        async {
            let mut $tx = $pool.begin_with("BEGIN IMMEDIATE").await?;
            let value: Result<_, sqlx::Error> = async { $body }.await;
            let value = value?;
            $tx.commit().await?;
            Ok::<_, sqlx::Error>(value)
        }
        .await
    };
}

// For the pending logins, the rate limits and the batches, which run their statements on the
// same pool.
pub(crate) use {execute_write, on_pool};
#[cfg(feature = "sqlite")]
pub(crate) use {sqlite_immediate, sqlite_immediate_tx};

/// Reads a row of [`q::LOAD`] (or of a statement whose first columns are its columns).
macro_rules! raw_row {
    ($row:expr) => {{
        let row = $row;
        RawRow {
            version: row.try_get(0)?,
            login_required: row.try_get(1)?,
            access_token: row.try_get(2)?,
            refresh_token: row.try_get(3)?,
            token_type: row.try_get(4)?,
            scopes: row.try_get(5)?,
            expires_at: row.try_get(6)?,
        }
    }};
}

/// The write statement for `change` expecting `expected`, bound.
macro_rules! write_query {
    ($user:expr, $now:expr, $change:expr, $expected:expr) => {
        match ($change, $expected) {
            (Change::Save(s), None) => bind_sealed(sqlx::query(q::SAVE_ABSENT), $user, s, $now),
            (Change::Save(s), Some(v)) => {
                bind_sealed(sqlx::query(q::SAVE_VERSION), $user, s, $now).bind(v)
            }
            (Change::LoginRequired, None) => sqlx::query(q::MARK_ABSENT).bind($user).bind($now),
            (Change::LoginRequired, Some(v)) => {
                sqlx::query(q::MARK_VERSION).bind($user).bind($now).bind(v)
            }
            (Change::Delete, v) => sqlx::query(q::DELETE_VERSION)
                .bind($user)
                .bind($now)
                .bind(v.unwrap_or(0)),
        }
    };
}

pub(crate) fn bind_sealed<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    user: i64,
    sealed: &'q SealedCredentials,
    now: i64,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(user)
        .bind(sealed.access_token.as_slice())
        .bind(sealed.refresh_token.as_slice())
        .bind(sealed.key_id.as_deref())
        .bind(sealed.token_type.as_str())
        .bind(sealed.scopes.as_str())
        .bind(sealed.expires_at)
        .bind(now)
}

/// A write of a user's entry.
#[derive(Clone, Copy)]
enum Change<'a> {
    Save(&'a SealedCredentials),
    LoginRequired,
    Delete,
}

pub(crate) use raw_row;

/// What a compare-and-swap write found.
enum Outcome {
    Written(i64),
    Refused(Option<RawRow>),
}

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
    pool: Pool,
    /// Lease releases still running in the background, awaited by [`SqlStore::close`].
    releases: Arc<Releases>,
    location: Location,
    keys: Option<Keyring>,
    max_lease: Duration,
    local: LocalLeases,
    /// Calls gathered into one statement or transaction each: see [`crate::batch`].
    batches: Batches,
    /// Set when a connection was found closed: the pool then checks every connection it hands
    /// out for a while (PostgreSQL).
    #[cfg(feature = "postgres")]
    suspicion: Suspicion,
}

/// How long, after a connection was found closed, every connection is checked before use: its
/// neighbours in the pool were likely closed with it (a database restart, a failover).
#[cfg(feature = "postgres")]
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// Until when the pool checks every connection before handing it out.
#[cfg(feature = "postgres")]
#[derive(Clone)]
pub(crate) struct Suspicion(Arc<(Instant, std::sync::atomic::AtomicU64)>);

#[cfg(feature = "postgres")]
impl Default for Suspicion {
    fn default() -> Self {
        Self(Arc::new((
            Instant::now(),
            std::sync::atomic::AtomicU64::new(0),
        )))
    }
}

#[cfg(feature = "postgres")]
impl Suspicion {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection was found closed: check every one for a while.
    pub(crate) fn raise(&self) {
        let until = self.millis().saturating_add(SUSPECT_FOR.as_millis() as u64);
        self.0.1.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether connections are checked before use now.
    pub(crate) fn raised(&self) -> bool {
        self.millis() < self.0.1.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &self.inner.location.shown)
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(feature = "sqlite")]
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
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
        let location = Location::parse(url).map_err(StoreError::Other)?;
        #[cfg(feature = "postgres")]
        let suspicion = Suspicion::default();
        let pool = match location.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => crate::sqlite::open(url, &options, &location).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                crate::postgres::open(url, &options, &location, suspicion.clone()).await?
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(StoreError::Other(format!(
                    "this build has no {other:?} support: build withings-oauth-sql with the feature `{}`",
                    format!("{other:?}").to_lowercase()
                )));
            }
        };
        let store = SqlStore {
            inner: Arc::new(Inner {
                pool,
                location,
                keys: options.keys.clone(),
                max_lease: options.max_lease,
                local: LocalLeases::new(),
                releases: Arc::default(),
                batches: Batches::default(),
                #[cfg(feature = "postgres")]
                suspicion,
            }),
        };
        store.prepare_schema(&options).await?;
        if store.inner.keys.is_none() && !WARNED_CLEAR_TEXT.swap(true, Ordering::Relaxed) {
            warn!(database = %store.inner.location.shown, "{CLEAR_TEXT_WARNING}");
        }
        Ok(store)
    }

    /// How many connections the pool has open now, idle or in use.
    pub fn open_connections(&self) -> u32 {
        on_pool!(&self.inner.pool, p => p.size())
    }

    /// The backend the URL picked.
    pub fn backend(&self) -> Backend {
        self.inner.location.backend
    }

    /// The store's URL without its password, for messages.
    pub fn location(&self) -> &str {
        &self.inner.location.shown
    }

    /// Whether new writes are encrypted (a key is configured).
    pub fn is_encrypted(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// [`CLEAR_TEXT_WARNING`] if tokens are stored in clear text (no key), for a program to
    /// show its user; `None` when they are encrypted.
    pub fn clear_text_warning(&self) -> Option<&'static str> {
        (!self.is_encrypted()).then_some(CLEAR_TEXT_WARNING)
    }

    /// Waits for the leases this process dropped to be released in the database, then
    /// closes the pool. Call it before a program exits: a lease whose release never ran makes
    /// the other processes wait for its expiry.
    pub async fn close(&self) {
        loop {
            let done = self.inner.releases.done.notified();
            if self.inner.releases.running.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), done).await;
        }
        on_pool!(&self.inner.pool, p => p.close().await)
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
        let Some(keys) = self.inner.keys.as_ref() else {
            return Err(StoreError::Other(
                "no encryption key is configured: set WITHINGS_STORE_KEYS (the new key first) to re-encrypt the store".into(),
            ));
        };
        let active = keys.active_id();
        let mut rotation = Rotation::default();
        // Passes until one finds nothing to do: a row a writer changed during a pass is seen
        // again by the next one (unless the writer already sealed it with the active key).
        loop {
            let mut after = i64::MIN;
            let mut rewritten_this_pass = 0;
            let mut raced = 0;
            loop {
                let batch = self.stale_batch(active, after).await?;
                let Some(last) = batch.last() else { break };
                after = last.0;
                for (user_id, version, access, refresh) in batch {
                    let user = UserId::new(user_id as u64);
                    if rotation.unreadable.contains(&user) {
                        continue;
                    }
                    let opened = (
                        sealed::open(Some(keys), user.get(), Column::AccessToken, &access),
                        sealed::open(Some(keys), user.get(), Column::RefreshToken, &refresh),
                    );
                    let (Ok(a), Ok(r)) = opened else {
                        rotation.unreadable.push(user);
                        continue;
                    };
                    let a = sealed::seal(Some(keys), user.get(), Column::AccessToken, &a);
                    let r = sealed::seal(Some(keys), user.get(), Column::RefreshToken, &r);
                    if self.reseal(user_id, version, &a, &r, active).await? {
                        rewritten_this_pass += 1;
                    } else {
                        raced += 1;
                    }
                }
            }
            rotation.rewritten += rewritten_this_pass;
            if raced == 0 || rewritten_this_pass == 0 {
                return Ok(rotation);
            }
        }
    }

    async fn stale_batch(
        &self,
        active: &str,
        after: i64,
    ) -> Result<Vec<(i64, i64, Vec<u8>, Vec<u8>)>, StoreError> {
        let result: Result<_, sqlx::Error> = on_pool!(&self.inner.pool, p => async {
            let rows = sqlx::query(q::STALE_KEY_BATCH)
                .bind(active)
                .bind(after)
                .bind(SWEEP_BATCH)
                .fetch_all(p)
                .await?;
            rows.into_iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
                .collect()
        }.await);
        result.map_err(|e| self.fail("read rows to re-encrypt", e))
    }

    async fn reseal(
        &self,
        user: i64,
        version: i64,
        access: &[u8],
        refresh: &[u8],
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let result = execute_write!(
            &self.inner.pool,
            sqlx::query(q::RESEAL)
                .bind(user)
                .bind(access)
                .bind(refresh)
                .bind(key_id)
                .bind(version)
        );
        result
            .map(|rows| rows == 1)
            .map_err(|e| self.fail("re-encrypt a row", e))
    }

    async fn prepare_schema(&self, options: &SqlOptions) -> Result<(), StoreError> {
        let migrator = self.migrator();
        if options.run_migrations {
            #[cfg(feature = "postgres")]
            if let (Pool::Postgres(p), Some(schema)) = (&self.inner.pool, &options.schema) {
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(p)
                    .await
                    .map_err(|e| self.fail("create its schema", e))?;
            }
            // Several processes opening a new SQLite file at once may race to apply the
            // first migration; the loser finds it applied on the next attempt.
            let mut attempts = 0;
            loop {
                let result = on_pool!(&self.inner.pool, p => migrator.run(p).await);
                match result {
                    Ok(()) => return Ok(()),
                    Err(_) if attempts < 3 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(50 * attempts)).await;
                    }
                    Err(e) => return Err(self.migration_failed(e)),
                }
            }
        }
        let applied: Result<Vec<i64>, sqlx::Error> = on_pool!(&self.inner.pool, p => {
            sqlx::query_scalar(q::APPLIED_MIGRATIONS).fetch_all(p).await
        });
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) if crate::error::is_missing_table(&e) => Vec::new(),
            Err(e) => return Err(self.fail("read its migrations", e)),
        };
        match migrator.iter().find(|m| !applied.contains(&m.version)) {
            None => Ok(()),
            Some(missing) => Err(StoreError::Other(format!(
                "the token database {} lacks migration {} ({}): {}",
                self.inner.location.shown,
                missing.version,
                missing.description,
                crate::error::RUN_MIGRATIONS
            ))),
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match &self.inner.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => &crate::SQLITE_MIGRATIONS,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => &crate::POSTGRES_MIGRATIONS,
        }
    }

    fn migration_failed(&self, error: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError;
        let shown = &self.inner.location.shown;
        let message = match error {
            MigrateError::VersionMissing(version) => format!(
                "the token database {shown} was migrated by a newer version of withings-oauth-sql (migration {version} is unknown here): upgrade this program"
            ),
            MigrateError::VersionMismatch(version) => format!(
                "migration {version} of the token database {shown} differs from this program's: the database was migrated by another build; restore the original migration files"
            ),
            MigrateError::Execute(e) => {
                return self.fail("apply its migrations", e);
            }
            other => format!(
                "could not apply the migrations of the token database {shown}: {}",
                self.inner.location.scrub(other.to_string())
            ),
        };
        StoreError::Other(message)
    }

    /// The pool's suspicion: raised when a connection was found closed.
    #[cfg(feature = "postgres")]
    pub(crate) fn suspicion(&self) -> &Suspicion {
        &self.inner.suspicion
    }

    /// The connection pool, for the pending logins and the shared rate limits.
    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn keyring(&self) -> Option<&Keyring> {
        self.inner.keys.as_ref()
    }

    /// A database failure, saying what to do, without the password.
    pub(crate) fn fail(&self, action: &str, error: sqlx::Error) -> StoreError {
        self.failure(action, &error)
    }

    /// [`fail`](Self::fail), for an error that several callers share.
    pub(crate) fn failure(&self, action: &str, error: &sqlx::Error) -> StoreError {
        crate::error::database_failure(&self.inner.location, action, error)
    }

    fn user_id(&self, user: UserId) -> Result<i64, StoreError> {
        i64::try_from(user.get()).map_err(|_| {
            StoreError::Other(format!(
                "user id {user} is too large for the token database (at most {})",
                i64::MAX
            ))
        })
    }

    async fn load_entry(&self, user: UserId) -> Result<Option<VersionedEntry>, StoreError> {
        let id = self.user_id(user)?;
        // Gathered with the other loads in flight: one statement for them all.
        let raw = Batcher::submit(self, |s| &s.inner.batches.loads, grouped::load, id).await??;
        raw.map(|raw| self.open_row(user, raw)).transpose()
    }

    /// Saves `sealed` over `expected`: refreshed credentials go with the other saves in
    /// flight, in one statement or transaction; a save the batch did not write (a conflict)
    /// and every other save go alone, which reads and reports what is stored.
    ///
    /// `release` is the lease to end once the save is written or refused. The gathered
    /// statement ends it with a save it ran (one it refused is refused alone too: versions only
    /// grow); a save it did not run (another save of the user was picked, a deadlock) and a
    /// first save keep the lease until they have gone alone, even if the caller stops waiting.
    async fn save_sealed(
        &self,
        user: UserId,
        sealed: SealedCredentials,
        expected: Expected,
        release: Option<Release>,
    ) -> Result<Version, StoreError> {
        let (sealed, release) = match expected {
            Expected::Version(version) => {
                let save = grouped::Save {
                    user: self.user_id(user)?,
                    sealed,
                    expected: i64::try_from(version.get()).unwrap_or(i64::MAX),
                    release,
                };
                match self.save_gathered(save).await?? {
                    Ok(version) => return Ok(Version::new(version as u64)),
                    Err(unsaved) => (unsaved.sealed, unsaved.release),
                }
            }
            Expected::Absent => (sealed, release),
        };
        let Some(release) = release else {
            return self.write(user, expected, Change::Save(&sealed)).await;
        };
        // In a task of its own, so that a caller that stops waiting can't end the lease while
        // its save still runs in the database.
        let store = self.clone();
        let alone = tokio::spawn(async move {
            let written = store.write(user, expected, Change::Save(&sealed)).await;
            drop(release);
            written
        });
        alone.await.unwrap_or_else(|e| {
            Err(StoreError::Other(format!(
                "the save of user {user}'s login stopped before it finished ({e}): retry"
            )))
        })
    }

    fn open_row(&self, user: UserId, raw: RawRow) -> Result<VersionedEntry, StoreError> {
        row::open(
            self.inner.keys.as_ref(),
            &self.inner.location.shown,
            user,
            raw,
        )
    }

    async fn write(
        &self,
        user: UserId,
        expected: Expected,
        change: Change<'_>,
    ) -> Result<Version, StoreError> {
        let id = self.user_id(user)?;
        let expected_version = match expected {
            Expected::Absent => None,
            Expected::Version(v) => Some(i64::try_from(v.get()).unwrap_or(i64::MAX)),
        };
        let now = now_seconds();
        let outcome: Result<Outcome, sqlx::Error> = match &self.inner.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                // BEGIN IMMEDIATE takes the write lock first (waiting up to the busy
                // timeout), so the refused write's read of the current row is consistent.
                async {
                    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                    let written = write_query!(id, now, change, expected_version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let outcome = match written {
                        Some(row) => Outcome::Written(row.try_get(0)?),
                        None => match sqlx::query(q::LOAD)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?
                        {
                            Some(row) => Outcome::Refused(Some(raw_row!(row))),
                            None => Outcome::Refused(None),
                        },
                    };
                    tx.commit().await?;
                    Ok(outcome)
                }
                .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                // One statement: the row lock makes it atomic; a refusal reads what is there.
                async {
                    let written = write_query!(id, now, change, expected_version)
                        .fetch_optional(p)
                        .await?;
                    Ok(match written {
                        Some(row) => Outcome::Written(row.try_get(0)?),
                        None => match sqlx::query(q::LOAD).bind(id).fetch_optional(p).await? {
                            Some(row) => Outcome::Refused(Some(raw_row!(row))),
                            None => Outcome::Refused(None),
                        },
                    })
                }
                .await
            }
        };
        match outcome.map_err(|e| self.fail("write a login", e))? {
            Outcome::Written(version) => Ok(Version::new(version as u64)),
            Outcome::Refused(current) => {
                // The current entry may itself be unreadable: the conflict then carries
                // its version only through the error it makes.
                let current = current.map(|raw| self.open_row(user, raw)).transpose()?;
                Err(StoreError::conflict_with(user, expected, current))
            }
        }
    }

    /// Tries once to take the user's lease in the database (with the other claims in flight),
    /// and to read the user's row after, if `load`: its release (and the row) if it was taken.
    async fn claim(
        &self,
        user: i64,
        owner: &str,
        ttl: Duration,
        load: bool,
    ) -> Result<Option<grouped::Taken>, StoreError> {
        let claim = grouped::Claim {
            user,
            owner: owner.to_owned(),
            // A year at most: the database adds it to its clock, which must not overflow.
            ttl_ms: millis(ttl.min(LONGEST_LEASE)),
            load,
        };
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => {
                Batcher::submit(self, |s| &s.inner.batches.claims, grouped::claim, claim).await?
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => match self.sqlite_write(Write::Claim(claim)).await? {
                Written::Claim(taken) => taken,
                _ => Err(StoreError::Other(MISMATCH.into())),
            },
        }
    }

    /// A save gathered with the others in flight.
    async fn save_gathered(&self, save: grouped::Save) -> Result<grouped::Saved, StoreError> {
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => {
                Batcher::submit(self, |s| &s.inner.batches.saves, grouped::save, save).await
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => match self.sqlite_write(Write::Save(save)).await? {
                Written::Save(saved) => Ok(saved),
                _ => Err(StoreError::Other(MISMATCH.into())),
            },
        }
    }

    /// Releases a lease (with the other releases in flight).
    async fn release(&self, lease: grouped::Held) {
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => {
                let released =
                    Batcher::submit(self, |s| &s.inner.batches.releases, grouped::release, lease);
                let _ = released.await;
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => {
                let _ = self.sqlite_write(Write::Release(lease)).await;
            }
        }
    }

    /// A write to a SQLite file, in one transaction with the others in flight.
    #[cfg(feature = "sqlite")]
    async fn sqlite_write(&self, write: Write) -> Result<Written, StoreError> {
        Batcher::submit(self, |s| &s.inner.batches.writes, grouped::write, write).await
    }

    /// How long the user's lease is still held by someone, if it is.
    pub(crate) async fn lease_left(&self, user: i64) -> Result<Option<Duration>, StoreError> {
        let result: Result<Option<i64>, sqlx::Error> = match &self.inner.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => sqlx::query_scalar::<_, i64>(q::SQLITE_LEASE_UNTIL)
                .bind(user)
                .fetch_optional(p)
                .await
                .map(|until| until.map(|until| until - now_millis())),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                sqlx::query_scalar::<_, i64>(q::POSTGRES_LEASE_LEFT)
                    .bind(user)
                    .fetch_optional(p)
                    .await
            }
        };
        let left = result.map_err(|e| self.fail("read a refresh lease", e))?;
        Ok(left
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)))
    }

    /// Takes the user's lease, and reads the user's row under it if `load`.
    async fn take_lease(
        &self,
        user: UserId,
        ttl: Duration,
        load: bool,
    ) -> Result<(Lease, Option<RawRow>), StoreError> {
        let id = self.user_id(user)?;
        let ttl = ttl.min(self.inner.max_lease).max(Duration::from_millis(1));
        // In-process first: sessions of this process queue here instead of polling the
        // database; the database lease then settles it across processes.
        let local = self.inner.local.acquire(user, ttl).await;
        let owner = lease_owner();
        let mut pause = Duration::from_millis(5);
        loop {
            // Taken before the claim, so this process believes the lease ends no later than
            // the database does.
            let asked = Instant::now();
            if let Some(taken) = self.claim(id, &owner, ttl, load).await? {
                let lease = Lease::new((local, taken.release), Some(asked + ttl));
                return Ok((lease, taken.row));
            }
            // Held by another process: wait for its release (polled) or its expiry.
            let left = self.lease_left(id).await?.unwrap_or_default();
            tokio::time::sleep(left.min(pause).max(Duration::from_millis(1))).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// A random owner for a database lease: the process id (for whoever reads the table) and 64
/// random bits.
fn lease_owner() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system's random number generator failed");
    format!(
        "pid{}-{:016x}",
        std::process::id(),
        u64::from_be_bytes(random)
    )
}

/// The releases in flight.
#[derive(Default)]
struct Releases {
    running: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// One release in flight, counted from before its task is spawned until the task ends or is
/// dropped (even unpolled, as a runtime shuts down), so that [`SqlStore::close`] never waits
/// for a release that will not run.
struct Running(Arc<Releases>);

impl Running {
    fn new(releases: Arc<Releases>) -> Self {
        releases.running.fetch_add(1, Ordering::AcqRel);
        Self(releases)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.done.notify_waiters();
    }
}

/// Releases a database lease when the session drops it. `Drop` can't wait, so the release
/// runs as a task (gathered with the other releases in flight); without a runtime (or if the
/// task never runs) the lease simply expires.
pub(crate) struct Release {
    store: SqlStore,
    pub(crate) user: i64,
    pub(crate) owner: String,
}

impl Release {
    /// The guard of a lease just claimed.
    pub(crate) fn new(store: &SqlStore, user: i64, owner: String) -> Self {
        Self {
            store: store.clone(),
            user,
            owner,
        }
    }

    /// Forgets a lease that a statement just ended: nothing is left to release.
    pub(crate) fn ended(mut self) {
        self.owner.clear();
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // Owners are never empty: an empty one was ended by a statement.
        if self.owner.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, lease) = (
            self.store.clone(),
            (self.user, std::mem::take(&mut self.owner)),
        );
        let running = Running::new(store.inner.releases.clone());
        runtime.spawn(async move {
            store.release(lease).await;
            drop(running);
        });
    }
}

impl TokenStore for SqlStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        Box::pin(self.load_entry(user))
    }

    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(async move {
            ensure_owner(user, credentials)?;
            let sealed = row::seal(self.inner.keys.as_ref(), user.get(), credentials);
            self.save_sealed(user, sealed, expected, None).await
        })
    }

    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        Box::pin(self.write(user, expected, Change::LoginRequired))
    }

    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if expected == Expected::Absent {
                return match self.load_entry(user).await? {
                    None => Ok(()),
                    current => Err(StoreError::conflict_with(user, expected, current)),
                };
            }
            self.write(user, expected, Change::Delete).await.map(drop)
        })
    }

    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        Box::pin(async move {
            let result: Result<Vec<i64>, sqlx::Error> = on_pool!(&self.inner.pool, p => {
                sqlx::query_scalar(q::USERS).fetch_all(p).await
            });
            let ids = result.map_err(|e| self.fail("list its users", e))?;
            Ok(ids.into_iter().map(|id| UserId::new(id as u64)).collect())
        })
    }

    fn lease<'a>(&'a self, user: UserId, ttl: Duration) -> StoreFuture<'a, Lease> {
        Box::pin(async move { Ok(self.take_lease(user, ttl, false).await?.0) })
    }

    /// The lease, then the read, in one gathered call: on PostgreSQL a second statement on the
    /// claim's connection, sent once the claim committed (with its own snapshot, so it sees the
    /// previous holder's save); on SQLite, in the claim's transaction.
    fn lease_and_load<'a>(
        &'a self,
        user: UserId,
        ttl: Duration,
    ) -> StoreFuture<'a, (Lease, Option<VersionedEntry>)> {
        Box::pin(async move {
            let (lease, raw) = self.take_lease(user, ttl, true).await?;
            let entry = raw.map(|raw| self.open_row(user, raw)).transpose()?;
            Ok((lease, entry))
        })
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
        Box::pin(async move {
            // Only this store's own leases end in its statements; any other lease is dropped
            // after the save.
            let (local, release) = match lease.into_guard::<(Lease, Release)>() {
                Ok(((local, release), _)) if Arc::ptr_eq(&release.store.inner, &self.inner) => {
                    (local, Some(release))
                }
                Ok(((local, release), until)) => (Lease::new((local, release), until), None),
                Err(lease) => (lease, None),
            };
            ensure_owner(user, credentials)?;
            let sealed = row::seal(self.inner.keys.as_ref(), user.get(), credentials);
            let saved = self.save_sealed(user, sealed, expected, release).await;
            drop(local);
            saved
        })
    }
}
