//! Key rotation: the sweep that moves every row to the active key, with compare-and-swap
//! updates while sessions keep working.

use std::collections::BTreeMap;

use withings_oauth::{StoreError, StoreLocation, UserId};

use crate::cas::Rows;
use crate::db::execute_write;
use crate::encryption;
use crate::sealed::{self, ClearText, Column};

/// How many rows the re-encryption sweep reads at a time.
const SWEEP_BATCH: i64 = 200;

/// $1 the active key id, $2 the user after which to continue, $3 the batch size.
const STALE_KEY_BATCH: &str = "SELECT user_id, version, access_token, refresh_token \
    FROM withings_credentials WHERE access_token IS NOT NULL \
    AND (key_id IS NULL OR key_id <> $1) AND user_id > $2 ORDER BY user_id LIMIT $3";

/// $1 user, $2 access token, $3 refresh token, $4 key id, $5 the version read. The version
/// stays: the tokens are the same, only their sealing changed.
const RESEAL: &str = "UPDATE withings_credentials SET access_token = $2, \
    refresh_token = $3, key_id = $4 WHERE user_id = $1 AND version = $5";

/// What [`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys) (or
/// [`SqlStore::encrypt_clear_rows`](crate::SqlStore::encrypt_clear_rows)) did, and what the
/// database holds after it, counted in the database once the sweep is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// The key every row was moved to.
    pub active: String,
    /// Rows moved to the active key.
    pub rewritten: usize,
    /// Rows left as they were because they can't be opened (their key is not loaded, they
    /// are damaged, or in clear text in an encrypted database): each is named by its user.
    pub unreadable: Vec<UserId>,
    /// After the sweep: how many logins each key id seals.
    pub rows_by_key: BTreeMap<String, u64>,
    /// After the sweep: how many logins are in clear text.
    pub clear_rows: u64,
}

impl Rotation {
    /// Whether every login is sealed with the active key, as counted after the sweep.
    pub fn complete(&self) -> bool {
        self.clear_rows == 0 && self.rows_by_key.keys().all(|id| *id == self.active)
    }
}

/// A row to move: user, version, and its two sealed tokens.
type Stale = (i64, i64, Vec<u8>, Vec<u8>);

/// Moves every row to the active key (see [`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys)):
/// first retires every other key id in the database, so that no program seals with one of
/// them during or after the sweep; then rewrites the rows; then counts what each key seals.
/// `clear` says whether rows in clear text are sealed (a database never encrypted) or reported
/// as unreadable (an encrypted one).
pub(crate) async fn rotate(rows: &Rows, clear: ClearText) -> Result<Rotation, StoreError> {
    let Some(keys) = rows.keys() else {
        return Err(StoreError::Encryption {
            store: StoreLocation::Database(rows.gatherer.db().shown().to_owned()),
            problem: "can't be re-encrypted without a key".into(),
            fix: format!(
                "set {} to the new key first, then the old ones",
                crate::keys::KEYS_ENV
            ),
        });
    };
    let active = keys.active_id();
    encryption::retire_all_but(rows.gatherer.db(), active).await?;
    let mut rotation = Rotation {
        active: active.to_owned(),
        ..Rotation::default()
    };
    // Passes until one finds nothing to do: a row a writer changed during a pass is seen
    // again by the next one (unless the writer already sealed it with the active key).
    loop {
        let mut after = i64::MIN;
        let mut rewritten_this_pass = 0;
        let mut raced = 0;
        loop {
            let batch = stale_batch(rows, active, after).await?;
            let Some(last) = batch.last() else { break };
            after = last.0;
            for (user_id, version, access, refresh) in batch {
                let user = UserId::new(user_id as u64);
                if rotation.unreadable.contains(&user) {
                    continue;
                }
                let open = |column, stored: &[u8]| {
                    sealed::open(Some(keys), user.get(), version, column, stored, clear)
                };
                let opened = (
                    open(Column::AccessToken, &access),
                    open(Column::RefreshToken, &refresh),
                );
                let (Ok(a), Ok(r)) = opened else {
                    rotation.unreadable.push(user);
                    continue;
                };
                // The same version: the tokens don't change, only their sealing.
                let seal = |column, token: &str| {
                    sealed::seal(Some(keys), user.get(), version, column, token)
                };
                let a = seal(Column::AccessToken, &a);
                let r = seal(Column::RefreshToken, &r);
                if reseal(rows, user_id, version, &a, &r, active).await? {
                    rewritten_this_pass += 1;
                } else {
                    raced += 1;
                }
            }
        }
        rotation.rewritten += rewritten_this_pass;
        if raced == 0 || rewritten_this_pass == 0 {
            let usage = encryption::key_use(rows.gatherer.db()).await?;
            rotation.rows_by_key = usage.by_key;
            rotation.clear_rows = usage.clear;
            return Ok(rotation);
        }
    }
}

async fn stale_batch(rows: &Rows, active: &str, after: i64) -> Result<Vec<Stale>, StoreError> {
    let db = rows.gatherer.db();
    let result: Result<Vec<Stale>, sqlx::Error> = crate::db::on_pool!(&db.pool, p => {
        sqlx::query_as(STALE_KEY_BATCH)
            .bind(active)
            .bind(after)
            .bind(SWEEP_BATCH)
            .fetch_all(p)
            .await
    });
    result.map_err(|e| db.fail("read rows to re-encrypt", e))
}

async fn reseal(
    rows: &Rows,
    user: i64,
    version: i64,
    access: &[u8],
    refresh: &[u8],
    key_id: &str,
) -> Result<bool, StoreError> {
    let db = rows.gatherer.db();
    let result = execute_write!(
        &db.pool,
        sqlx::query(RESEAL)
            .bind(user)
            .bind(access)
            .bind(refresh)
            .bind(key_id)
            .bind(version)
    );
    result
        .map(|rows| rows == 1)
        .map_err(|e| db.fail("re-encrypt a row", e))
}
