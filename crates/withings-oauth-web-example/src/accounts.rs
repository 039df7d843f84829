//! [`Accounts`]: which Withings user each of the application's users connected, in memory or
//! in a table of the application's database.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use withings_oauth::UserId;

use crate::db::{Db, reason};

/// The accounts table. `withings_user` is a Withings user id (a positive 64-bit integer, kept
/// in a signed column as the SQL store keeps it).
const CREATE: &str = "CREATE TABLE IF NOT EXISTS web_example_accounts \
    (owner TEXT PRIMARY KEY, withings_user BIGINT NOT NULL)";
// The same statements on both backends: sqlx numbers SQLite's `$1` as PostgreSQL does.
const GET: &str = "SELECT withings_user FROM web_example_accounts WHERE owner = $1";
const SET: &str = "INSERT INTO web_example_accounts (owner, withings_user) VALUES ($1, $2) \
    ON CONFLICT (owner) DO UPDATE SET withings_user = $2";
const REMOVE: &str = "DELETE FROM web_example_accounts WHERE owner = $1";

/// The application's record of which Withings user each of its users connected: in memory
/// (shared by its clones: [`Accounts::in_memory`], the default), or in the table
/// `web_example_accounts` of the application's database ([`Shared::open`](crate::Shared::open)),
/// shared by every instance that opens it.
#[derive(Clone, Debug)]
pub struct Accounts(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Memory(Arc<Mutex<BTreeMap<String, UserId>>>),
    Sql(Db),
}

impl Default for Accounts {
    fn default() -> Self {
        Self::in_memory()
    }
}

/// Why the accounts could not be read or written. Its message is for the operator's log (it
/// holds the driver's message, never the database's URL or password).
#[derive(Debug, thiserror::Error)]
#[error(
    "the accounts table could not {action} ({reason}): check that the database is reachable, then retry"
)]
pub struct AccountsError {
    action: &'static str,
    reason: String,
}

impl AccountsError {
    fn new(action: &'static str, error: sqlx::Error) -> Self {
        Self {
            action,
            reason: reason(&error),
        }
    }
}

impl Accounts {
    /// Accounts in memory, shared by the clones.
    pub fn in_memory() -> Self {
        Accounts(Backend::Memory(Arc::default()))
    }

    /// The accounts in `db`, creating the table if it is missing.
    pub(crate) async fn open(db: Db) -> Result<Self, AccountsError> {
        db.create(CREATE)
            .await
            .map_err(|e| AccountsError::new("be created", e))?;
        Ok(Accounts(Backend::Sql(db)))
    }

    /// The Withings user `owner` connected, if any: one query.
    pub async fn get(&self, owner: &str) -> Result<Option<UserId>, AccountsError> {
        let user: Option<i64> = match &self.0 {
            Backend::Memory(map) => return Ok(lock(map).get(owner).copied()),
            Backend::Sql(Db::Postgres { pool, .. }) => {
                sqlx::query_scalar(GET)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await
            }
            Backend::Sql(Db::Sqlite(pool)) => {
                sqlx::query_scalar(GET)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await
            }
        }
        .map_err(|e| AccountsError::new("be read", e))?;
        Ok(user.map(|id| UserId::new(id as u64)))
    }

    /// Records that `owner` connected Withings user `user`.
    pub async fn set(&self, owner: &str, user: UserId) -> Result<(), AccountsError> {
        let id = user.get() as i64;
        match &self.0 {
            Backend::Memory(map) => {
                lock(map).insert(owner.to_owned(), user);
                return Ok(());
            }
            Backend::Sql(Db::Postgres { pool, .. }) => sqlx::query(SET)
                .bind(owner)
                .bind(id)
                .execute(pool)
                .await
                .map(drop),
            Backend::Sql(Db::Sqlite(pool)) => sqlx::query(SET)
                .bind(owner)
                .bind(id)
                .execute(pool)
                .await
                .map(drop),
        }
        .map_err(|e| AccountsError::new("be written", e))
    }

    /// Forgets `owner`'s Withings user.
    pub async fn remove(&self, owner: &str) -> Result<(), AccountsError> {
        match &self.0 {
            Backend::Memory(map) => {
                lock(map).remove(owner);
                return Ok(());
            }
            Backend::Sql(Db::Postgres { pool, .. }) => sqlx::query(REMOVE)
                .bind(owner)
                .execute(pool)
                .await
                .map(drop),
            Backend::Sql(Db::Sqlite(pool)) => sqlx::query(REMOVE)
                .bind(owner)
                .execute(pool)
                .await
                .map(drop),
        }
        .map_err(|e| AccountsError::new("be written", e))
    }
}

fn lock(
    map: &Mutex<BTreeMap<String, UserId>>,
) -> std::sync::MutexGuard<'_, BTreeMap<String, UserId>> {
    // Each statement leaves the map consistent: a panic elsewhere can't corrupt it.
    map.lock().unwrap_or_else(PoisonError::into_inner)
}
