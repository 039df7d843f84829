//! [`Accounts`]: which Withings user each of the application's users connected, in memory or
//! in a table of the application's database.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use withings_oauth::UserId;

/// The accounts table. `withings_user` is a Withings user id (a positive 64-bit integer, kept
/// in a signed column as the SQL store keeps it).
const CREATE: &str = "CREATE TABLE IF NOT EXISTS web_example_accounts \
    (owner TEXT PRIMARY KEY, withings_user BIGINT NOT NULL)";
const GET: &str = "SELECT withings_user FROM web_example_accounts WHERE owner = $1";
const SET: &str = "INSERT INTO web_example_accounts (owner, withings_user) VALUES ($1, $2) \
    ON CONFLICT (owner) DO UPDATE SET withings_user = $2";
const REMOVE: &str = "DELETE FROM web_example_accounts WHERE owner = $1";

/// The application's record of which Withings user each of its users connected: in memory
/// (shared by its clones: [`Accounts::in_memory`], the default), or in the table
/// `web_example_accounts` of a SQLite or PostgreSQL database ([`Accounts::open`]), shared by
/// every instance that opens it.
#[derive(Clone, Debug)]
pub struct Accounts(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Memory(Arc<Mutex<BTreeMap<String, UserId>>>),
    Sql(sqlx::AnyPool),
}

impl Default for Accounts {
    fn default() -> Self {
        Self::in_memory()
    }
}

/// Why the accounts could not be read or written. It never shows the database's password.
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
        // Driver messages name tables and columns, not the connection URL.
        let reason = match &error {
            sqlx::Error::Database(db) => db.message().to_owned(),
            sqlx::Error::PoolTimedOut => "no connection within the timeout".to_owned(),
            sqlx::Error::Io(e) => e.to_string(),
            _ => "a database error".to_owned(),
        };
        Self { action, reason }
    }
}

impl Accounts {
    /// Accounts in memory, shared by the clones.
    pub fn in_memory() -> Self {
        Accounts(Backend::Memory(Arc::default()))
    }

    /// The accounts in the database at `url` (`sqlite://...` or `postgres://...`, the same
    /// URL as the token store's), creating the table if it is missing.
    pub async fn open(url: &str) -> Result<Self, AccountsError> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| AccountsError::new("connect", e))?;
        // Instances starting together on one PostgreSQL database may race to create the
        // table (`IF NOT EXISTS` is not atomic there): the loser finds it on the next try.
        let mut attempt = 0;
        loop {
            match sqlx::query(CREATE).execute(&pool).await {
                Ok(_) => return Ok(Accounts(Backend::Sql(pool))),
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(AccountsError::new("be created", e)),
            }
        }
    }

    /// The Withings user `owner` connected, if any.
    pub async fn get(&self, owner: &str) -> Result<Option<UserId>, AccountsError> {
        match &self.0 {
            Backend::Memory(map) => Ok(lock(map).get(owner).copied()),
            Backend::Sql(pool) => {
                let user: Option<i64> = sqlx::query_scalar(GET)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| AccountsError::new("be read", e))?;
                Ok(user.map(|id| UserId::new(id as u64)))
            }
        }
    }

    /// Records that `owner` connected Withings user `user`.
    pub async fn set(&self, owner: &str, user: UserId) -> Result<(), AccountsError> {
        match &self.0 {
            Backend::Memory(map) => {
                lock(map).insert(owner.to_owned(), user);
                Ok(())
            }
            Backend::Sql(pool) => sqlx::query(SET)
                .bind(owner)
                .bind(user.get() as i64)
                .execute(pool)
                .await
                .map(drop)
                .map_err(|e| AccountsError::new("be written", e)),
        }
    }

    /// Forgets `owner`'s Withings user.
    pub async fn remove(&self, owner: &str) -> Result<(), AccountsError> {
        match &self.0 {
            Backend::Memory(map) => {
                lock(map).remove(owner);
                Ok(())
            }
            Backend::Sql(pool) => sqlx::query(REMOVE)
                .bind(owner)
                .execute(pool)
                .await
                .map(drop)
                .map_err(|e| AccountsError::new("be written", e)),
        }
    }
}

fn lock(
    map: &Mutex<BTreeMap<String, UserId>>,
) -> std::sync::MutexGuard<'_, BTreeMap<String, UserId>> {
    // Each statement leaves the map consistent: a panic elsewhere can't corrupt it.
    map.lock().unwrap_or_else(PoisonError::into_inner)
}
