//! Key rotation: the sweep that moves every row to the active key, with compare-and-swap
//! updates while sessions keep working.

use withings_oauth::{StoreError, UserId};

use crate::cas::Rows;
use crate::db::execute_write;
use crate::sealed::{self, Column};

/// How many rows the re-encryption sweep reads at a time.
const SWEEP_BATCH: i64 = 200;

/// $1 the active key id, $2 the user after which to continue, $3 the batch size.
const STALE_KEY_BATCH: &str = "SELECT user_id, version, access_token, refresh_token \
    FROM withings_credentials WHERE access_token IS NOT NULL \
    AND (key_id IS NULL OR key_id <> $1) AND user_id > $2 ORDER BY user_id LIMIT $3";

/// $1 user, $2 access token, $3 refresh token, $4 key id, $5 the version read. The version
/// stays: the tokens are the same, only their sealing changed.
const RESEAL: &str = "UPDATE withings_credentials SET access_token = $2, \
    refresh_token = $3, key_id = $4 WHERE user_id = $1 AND version = $5 AND deleted = FALSE";

/// What [`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// Rows moved to the active key.
    pub rewritten: usize,
    /// Rows left as they were because they can't be opened (their key is not loaded, or they
    /// are damaged): each is named by its user.
    pub unreadable: Vec<UserId>,
}

/// A row to move: user, version, and its two sealed tokens.
type Stale = (i64, i64, Vec<u8>, Vec<u8>);

/// Moves every row to the active key (see [`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys)).
pub(crate) async fn rotate(rows: &Rows) -> Result<Rotation, StoreError> {
    let Some(keys) = rows.keys() else {
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
            let batch = stale_batch(rows, active, after).await?;
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
                if reseal(rows, user_id, version, &a, &r, active).await? {
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
