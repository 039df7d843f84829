//! The encryption marker: the ids of the keys that sealed tokens in a database
//! (`withings_keys`, never key material), read when a store opens, written when a key first
//! seals there and when a rotation retires the others. Once a database has a key id, it is
//! encrypted for good: a store opened without keys is refused, and the database's triggers
//! (migration 0005) refuse a token in clear text or sealed with a retired key, whatever program
//! writes it.

use std::collections::BTreeMap;

use withings_oauth::{StoreError, StoreLocation};

use crate::db::{Db, Pool, execute_write, on_pool};
use crate::keys::{KEYS_ENV, KEYS_FILE_ENV, Keyring};

/// The key ids recorded, each with whether it is retired.
const KEY_IDS: &str = "SELECT key_id, retired FROM withings_keys ORDER BY key_id";

/// $1 key id, $2 now (Unix ms).
const REGISTER: &str = "INSERT INTO withings_keys (key_id, retired, since_ms) \
    VALUES ($1, FALSE, $2) ON CONFLICT (key_id) DO NOTHING";

/// $1 the key id that stays active.
const RETIRE_OTHERS: &str =
    "UPDATE withings_keys SET retired = TRUE WHERE key_id <> $1 AND retired = FALSE";

/// How many logins use each key id (`NULL`: clear text).
const ROWS_BY_KEY: &str = "SELECT key_id, COUNT(*) FROM withings_credentials \
    WHERE access_token IS NOT NULL GROUP BY key_id ORDER BY key_id";

/// How a store is being opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// To use it.
    Use,
    /// To seal the clear rows of a database that has never been encrypted.
    SealClearRows,
}

/// The logins of a database by the key that sealed them.
pub(crate) struct KeyUse {
    /// Rows sealed with each key id.
    pub(crate) by_key: BTreeMap<String, u64>,
    /// Rows in clear text.
    pub(crate) clear: u64,
}

/// The key ids recorded in the database, each with whether it is retired.
async fn recorded(db: &Db) -> Result<Vec<(String, bool)>, StoreError> {
    let result: Result<Vec<(String, bool)>, sqlx::Error> =
        on_pool!(&db.pool, p => sqlx::query_as(KEY_IDS).fetch_all(p).await);
    result.map_err(|e| db.fail("read which keys encrypt it", e))
}

/// Counts the logins by the key that sealed them.
pub(crate) async fn key_use(db: &Db) -> Result<KeyUse, StoreError> {
    let result: Result<Vec<(Option<String>, i64)>, sqlx::Error> =
        on_pool!(&db.pool, p => sqlx::query_as(ROWS_BY_KEY).fetch_all(p).await);
    let rows = result.map_err(|e| db.fail("count the logins of each key", e))?;
    let mut usage = KeyUse {
        by_key: BTreeMap::new(),
        clear: 0,
    };
    for (key, count) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        match key {
            Some(key) => {
                usage.by_key.insert(key, count);
            }
            None => usage.clear += count,
        }
    }
    Ok(usage)
}

/// Records `key` as one that seals tokens here: from then on the database is encrypted.
async fn register(db: &Db, key: &str) -> Result<(), StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let result = execute_write!(&db.pool, sqlx::query(REGISTER).bind(key).bind(now));
    result
        .map(drop)
        .map_err(|e| db.fail("record the key that encrypts it", e))
}

/// Retires every key id but `active` (recorded if new): from then on the database refuses a
/// token sealed with any of them.
pub(crate) async fn retire_all_but(db: &Db, active: &str) -> Result<(), StoreError> {
    register(db, active).await?;
    let result = execute_write!(&db.pool, sqlx::query(RETIRE_OTHERS).bind(active));
    result
        .map(drop)
        .map_err(|e| db.fail("retire the keys a rotation replaced", e))
}

/// Checks, as a store opens, that its keys fit the database, and records its active key:
/// - without keys, a database that has ever been encrypted is refused;
/// - with keys, an active key the database retired is refused, and so is a database that
///   holds logins in clear text and was never encrypted (unless this opening seals them);
/// - a database that was never encrypted and holds no clear login becomes encrypted.
pub(crate) async fn check(
    db: &Db,
    keys: Option<&Keyring>,
    opening: Opening,
) -> Result<(), StoreError> {
    let recorded = recorded(db).await?;
    let refuse = |problem: String, fix: String| StoreError::Encryption {
        store: StoreLocation::Database(db.shown().to_owned()),
        problem,
        fix,
    };
    let Some(keys) = keys else {
        if recorded.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = recorded.iter().map(|(id, _)| id.as_str()).collect();
        return Err(refuse(
            format!(
                "is encrypted (keys in use: {}) but this program was given no key",
                ids.join(", ")
            ),
            format!(
                "set {KEYS_ENV} (or {KEYS_FILE_ENV}) to its keys, the active one first; tokens are never written there in clear text"
            ),
        ));
    };
    let active = keys.active_id();
    if recorded
        .iter()
        .any(|(id, retired)| id == active && *retired)
    {
        return Err(refuse(
            format!(
                "retired the key `{active}`, this program's active key (a rotation moved every login to a newer key)"
            ),
            format!("load the newer key first: {KEYS_ENV}=<new id>:<new key>,{active}:<this key>"),
        ));
    }
    if recorded.is_empty() {
        let clear = key_use(db).await?.clear;
        if clear > 0 && opening == Opening::Use {
            return Err(refuse(
                format!("holds {clear} login(s) in clear text and was never encrypted"),
                "seal them once with `withings-oauth store encrypt` (SqlStore::encrypt_clear_rows), then open it with keys".into(),
            ));
        }
    } else if opening == Opening::SealClearRows {
        return Err(refuse(
            "is already encrypted: a login in clear text there was not written by this library's programs".into(),
            "remove such a login with `withings-oauth logout --force --user <id>`; rotate keys with `withings-oauth store rotate-key`".into(),
        ));
    }
    register(db, active).await
}

/// Rewrites the credentials table so that values it no longer holds (the clear tokens a sealing
/// replaced) don't linger in free pages, old row versions or the journal.
pub(crate) async fn rewrite_credentials(db: &Db) -> Result<(), StoreError> {
    let result: Result<(), sqlx::Error> = match &db.pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => {
            async {
                sqlx::query("VACUUM").execute(p).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(p)
                    .await?;
                Ok(())
            }
            .await
        }
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => sqlx::query("VACUUM FULL withings_credentials")
            .execute(p)
            .await
            .map(drop),
    };
    result.map_err(|e| db.fail("rewrite its logins without their clear copies", e))
}
