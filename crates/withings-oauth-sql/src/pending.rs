//! [`SqlPendingLogins`]: the pending-login store of web servers, on a [`SqlStore`](crate::SqlStore)'s database.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use withings_oauth::{
    BindingHash, Clock, CsrfState, DEFAULT_PENDING_LOGIN_TTL, DEFAULT_PENDING_LOGINS_PER_OWNER,
    ParkedLogin, PendingLoginError, PendingLoginStore, Scopes, StateHash, StoreError, SystemClock,
};
use zeroize::Zeroizing;

use crate::db::{Db, Pool, execute_write, on_pool};
use crate::keys::Keyring;
use crate::sealed::{self, ClearText, Column};

/// $1 state hash, $2 browser hash, $3 owner, $4 created (Unix ms), $5 redirect URI, $6 scopes,
/// $7 demo, $8 the sealed state.
const PUT_PENDING: &str = "INSERT INTO withings_pending_logins \
    (state_hash, browser_hash, owner, created_at_ms, redirect_uri, scopes, demo, state) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// $1 the newest creation time (Unix ms) that has expired.
const PURGE_PENDING: &str = "DELETE FROM withings_pending_logins WHERE created_at_ms <= $1";

/// $1 owner, $2 the login just parked, $3 how many of the owner's others to keep (the newest).
const CAP_PENDING: &str = "DELETE FROM withings_pending_logins \
    WHERE owner = $1 AND state_hash <> $2 AND state_hash NOT IN \
    (SELECT state_hash FROM withings_pending_logins WHERE owner = $1 AND state_hash <> $2 \
     ORDER BY created_at_ms DESC, state_hash LIMIT $3)";

/// $1 state hash, $2 browser hash. Finds and deletes in one statement: of racing takers, one
/// gets the row.
const TAKE_PENDING: &str = "DELETE FROM withings_pending_logins \
    WHERE state_hash = $1 AND browser_hash = $2 \
    RETURNING owner, created_at_ms, redirect_uri, scopes, demo, state";

/// $1 state hash. Why a take found nothing: another browser's login, or none.
const PENDING_CREATED_AT: &str =
    "SELECT created_at_ms FROM withings_pending_logins WHERE state_hash = $1";

/// $1 state hash, $2 the newest creation time (Unix ms) that has expired.
const DELETE_EXPIRED_PENDING: &str =
    "DELETE FROM withings_pending_logins WHERE state_hash = $1 AND created_at_ms <= $2";

/// Logins parked by web servers between the request that starts them and the request that
/// receives their callback, in the table `withings_pending_logins` of a [`SqlStore`](crate::SqlStore)'s
/// database: every instance that opens the same database (PostgreSQL for several machines)
/// finishes the logins any of them started.
///
/// Made by [`SqlStore::pending_logins`](crate::SqlStore::pending_logins): it shares the store's connection pool, migrations
/// and keys. With keys, the `state` of each login (a secret) is sealed as tokens are; the
/// other columns (hashes, owner, creation time, redirect URI, scopes, demo flag) are stored
/// in clear but bound to the seal, so a row changed in the database is refused as damaged.
///
/// It keeps the [`PendingLoginStore`] contract:
/// - a [`take`](PendingLoginStore::take) is one statement, `DELETE ... WHERE state_hash = $1
///   AND browser_hash = $2 RETURNING ...`, so of instances racing for one callback exactly one
///   gets the login; when it deletes nothing, a read tells a login of another browser (left in
///   place) from none;
/// - logins older than its lifetime ([`DEFAULT_PENDING_LOGIN_TTL`] unless
///   [`with_ttl`](Self::with_ttl)) are refused as expired and deleted; each put purges every
///   expired row (an index on the creation time keeps that cheap);
/// - each owner keeps at most [`DEFAULT_PENDING_LOGINS_PER_OWNER`] logins (unless
///   [`with_max_per_owner`](Self::with_max_per_owner)): a put drops the owner's oldest beyond
///   that, in the put's transaction.
///
/// Ages are read on its [`Clock`] (the system's, unless [`with_clock`](Self::with_clock)),
/// not the database's: instances whose clocks disagree by seconds disagree on a 10-minute
/// lifetime by as much.
///
/// ```
/// use std::sync::Arc;
/// use withings_oauth::{PendingLoginStore, TokenStore};
/// use withings_oauth_sql::{SqlOptions, SqlStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), withings_oauth::StoreError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = format!("sqlite://{}", dir.path().join("app.db").display());
/// let store = SqlStore::connect(&url, SqlOptions::default()).await?;
/// let pending: Arc<dyn PendingLoginStore> = Arc::new(store.pending_logins());
/// let tokens: Arc<dyn TokenStore> = Arc::new(store);
/// // Both go to `withings_oauth_axum::WithingsLogin::builder(client, pending, tokens, ...)`.
/// # let _ = (pending, tokens);
/// # Ok(())
/// # }
/// ```
///
/// After a key rotation ([`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys), which leaves pending logins as they are),
/// keep the old key for the logins' lifetime: a login whose key is gone can't be taken (its
/// user starts again).
#[derive(Clone)]
pub struct SqlPendingLogins {
    db: Db,
    keys: Option<Arc<Keyring>>,
    ttl: TimeDelta,
    per_owner: usize,
    clock: Arc<dyn Clock>,
}

impl SqlPendingLogins {
    /// The pending logins on `db`, sealed with `keys`, kept [`DEFAULT_PENDING_LOGIN_TTL`], at
    /// most [`DEFAULT_PENDING_LOGINS_PER_OWNER`] per owner.
    pub(crate) fn new(db: Db, keys: Option<Arc<Keyring>>) -> Self {
        SqlPendingLogins {
            db,
            keys,
            ttl: DEFAULT_PENDING_LOGIN_TTL,
            per_owner: DEFAULT_PENDING_LOGINS_PER_OWNER,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for SqlPendingLogins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPendingLogins")
            .field("database", &self.db.shown())
            .field("ttl", &self.ttl)
            .field("per_owner", &self.per_owner)
            .finish_non_exhaustive()
    }
}

/// A row of [`TAKE_PENDING`].
#[derive(sqlx::FromRow)]
struct TakenRow {
    owner: String,
    created_at_ms: i64,
    redirect_uri: String,
    scopes: String,
    demo: bool,
    state: Vec<u8>,
}

impl SqlPendingLogins {
    /// Keeps logins `ttl` instead (at least a millisecond).
    pub fn with_ttl(mut self, ttl: TimeDelta) -> Self {
        self.ttl = ttl.max(TimeDelta::milliseconds(1));
        self
    }

    /// Keeps at most `logins` (at least 1) per owner: parking one more drops the owner's
    /// oldest.
    pub fn with_max_per_owner(mut self, logins: usize) -> Self {
        self.per_owner = logins.max(1);
        self
    }

    /// Reads the time from `clock` (tests age logins without waiting).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The newest creation time, in Unix milliseconds, that has expired by now.
    fn expired_at_or_before(&self) -> i64 {
        (self.clock.now() - self.ttl).timestamp_millis()
    }

    fn failed(&self, action: &str, error: sqlx::Error) -> PendingLoginError {
        PendingLoginError::Store(self.db.fail(action, error))
    }

    async fn park(&self, login: ParkedLogin) -> Result<(), PendingLoginError> {
        let hash = login.state_hash().as_str();
        let scopes = login.scopes().to_string();
        let state = sealed::seal_for_row(
            self.keys.as_deref(),
            &row_binding(
                hash,
                login.browser().as_str(),
                login.owner(),
                login.created_at().timestamp_millis(),
                login.redirect_uri().as_str(),
                &scopes,
                login.is_demo(),
            ),
            Column::PendingState,
            login.reveal_state().expose_secret(),
        );
        let keep_others = i64::try_from(self.per_owner - 1).unwrap_or(i64::MAX);
        let expired = self.expired_at_or_before();
        macro_rules! put_in {
            ($tx:ident) => {{
                sqlx::query(PURGE_PENDING)
                    .bind(expired)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query(PUT_PENDING)
                    .bind(hash)
                    .bind(login.browser().as_str())
                    .bind(login.owner())
                    .bind(login.created_at().timestamp_millis())
                    .bind(login.redirect_uri().as_str())
                    .bind(scopes.as_str())
                    .bind(login.is_demo())
                    .bind(state.as_slice())
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query(CAP_PENDING)
                    .bind(login.owner())
                    .bind(hash)
                    .bind(keep_others)
                    .execute(&mut *$tx)
                    .await?;
                Ok::<(), sqlx::Error>(())
            }};
        }
        let result = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                async {
                    // BEGIN IMMEDIATE: the write lock first, waiting up to the busy timeout.
                    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                    put_in!(tx)?;
                    tx.commit().await
                }
                .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                async {
                    let mut tx = p.begin().await?;
                    put_in!(tx)?;
                    tx.commit().await
                }
                .await
            }
        };
        result.map_err(|e| self.failed("park a login", e))
    }

    async fn take_parked(
        &self,
        state: &StateHash,
        browser: &BindingHash,
    ) -> Result<ParkedLogin, PendingLoginError> {
        let taken = self
            .delete_returning(state, browser)
            .await
            .map_err(|e| self.failed("take a pending login", e))?;
        let expired = self.expired_at_or_before();
        let Some(row) = taken else {
            return self.why_not_taken(state, expired).await;
        };
        if row.created_at_ms <= expired {
            // Deleted by the take: expired logins are purged when refused.
            return Err(PendingLoginError::Expired);
        }
        self.restore(state, browser, row)
    }

    /// The one statement that finds and deletes the login.
    async fn delete_returning(
        &self,
        state: &StateHash,
        browser: &BindingHash,
    ) -> Result<Option<TakenRow>, sqlx::Error> {
        match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                // A plain statement that reads before it writes may fail at once with
                // SQLITE_BUSY when another connection wrote meanwhile; BEGIN IMMEDIATE waits.
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let taken = sqlx::query_as(TAKE_PENDING)
                    .bind(state.as_str())
                    .bind(browser.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(taken)
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                sqlx::query_as(TAKE_PENDING)
                    .bind(state.as_str())
                    .bind(browser.as_str())
                    .fetch_optional(p)
                    .await
            }
        }
    }

    /// After a take that deleted nothing: a login of another browser (left in place, unless
    /// it expired), or none.
    async fn why_not_taken(
        &self,
        state: &StateHash,
        expired: i64,
    ) -> Result<ParkedLogin, PendingLoginError> {
        let created: Result<Option<i64>, sqlx::Error> = on_pool!(&self.db.pool, p => {
            sqlx::query_scalar(PENDING_CREATED_AT)
                .bind(state.as_str())
                .fetch_optional(p)
                .await
        });
        match created.map_err(|e| self.failed("read a pending login", e))? {
            None => Err(PendingLoginError::Unknown),
            Some(created) if created <= expired => {
                let purged = execute_write!(
                    &self.db.pool,
                    sqlx::query(DELETE_EXPIRED_PENDING)
                        .bind(state.as_str())
                        .bind(expired)
                );
                purged.map_err(|e| self.failed("purge a pending login", e))?;
                Err(PendingLoginError::Expired)
            }
            Some(_) => Err(PendingLoginError::OtherBrowser),
        }
    }

    /// The login a taken row holds, its `state` opened; a row that can't be read is an error
    /// that names what is wrong with it, never its values.
    fn restore(
        &self,
        hash: &StateHash,
        browser: &BindingHash,
        row: TakenRow,
    ) -> Result<ParkedLogin, PendingLoginError> {
        let damaged = |why: String| {
            PendingLoginError::Store(StoreError::Other(format!(
                "a pending login in {} can't be read ({why}); it was deleted: start the login again",
                self.db.shown()
            )))
        };
        let binding = row_binding(
            hash.as_str(),
            browser.as_str(),
            &row.owner,
            row.created_at_ms,
            &row.redirect_uri,
            &row.scopes,
            row.demo,
        );
        let state: Zeroizing<String> = sealed::open_for_row(
            self.keys.as_deref(),
            &binding,
            Column::PendingState,
            &row.state,
            ClearText::Refused,
        )
        .map_err(|e| damaged(format!("its state: {e}")))?;
        let created_at = DateTime::<Utc>::from_timestamp_millis(row.created_at_ms)
            .ok_or_else(|| damaged("its creation time is out of range".into()))?;
        let redirect_uri = row
            .redirect_uri
            .parse()
            .map_err(|_| damaged("its redirect URI is not a URL".into()))?;
        let scopes: Scopes = row
            .scopes
            .parse()
            .map_err(|_| damaged("its scopes can't be read".into()))?;
        let login = ParkedLogin::from_stored(
            CsrfState::new(state.as_str()),
            browser.clone(),
            row.owner,
            created_at,
            redirect_uri,
            scopes,
            row.demo,
        );
        if login.state_hash() != hash {
            return Err(damaged("its state does not match its key".into()));
        }
        Ok(login)
    }
}

/// What the sealed `state` of a login is bound to: every column of its row, each prefixed by
/// its length. With keys, a row whose owner, browser, redirect URI, scopes, demo flag or age
/// was changed in the database (to link someone's Withings account to another owner, say) no
/// longer opens, and is refused as damaged.
fn row_binding(
    state_hash: &str,
    browser_hash: &str,
    owner: &str,
    created_at_ms: i64,
    redirect_uri: &str,
    scopes: &str,
    demo: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        state_hash.len()
            + browser_hash.len()
            + owner.len()
            + redirect_uri.len()
            + scopes.len()
            + 60,
    );
    for field in [state_hash, browser_hash, owner, redirect_uri, scopes] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&created_at_ms.to_be_bytes());
    out.push(u8::from(demo));
    out
}

impl PendingLoginStore for SqlPendingLogins {
    fn put<'a>(
        &'a self,
        login: ParkedLogin,
    ) -> withings_oauth::BoxFuture<'a, Result<(), PendingLoginError>> {
        Box::pin(self.park(login))
    }

    fn take<'a>(
        &'a self,
        state: &'a StateHash,
        browser: &'a BindingHash,
    ) -> withings_oauth::BoxFuture<'a, Result<ParkedLogin, PendingLoginError>> {
        Box::pin(self.take_parked(state, browser))
    }
}
