//! The SQL of the credentials table and its leases that both backends share: `$n` parameters
//! (SQLite reads them too), `TRUE`/`FALSE` (SQLite stores them as 1/0), integer timestamps,
//! bytes for sealed tokens.

/// Parameters: $1 user, $2 access token, $3 refresh token, $4 key id, $5 token type,
/// $6 scopes, $7 expiry, $8 now, $9 the new version (a new epoch's, see [`EPOCH`]). Writes
/// only where the user has no row.
pub(crate) const SAVE_ABSENT: &str = "INSERT INTO withings_credentials \
    (user_id, version, login_required, access_token, refresh_token, key_id, token_type, \
     scopes, expires_at, refreshed_at, failure_count, updated_at) \
    VALUES ($1, $9, FALSE, $2, $3, $4, $5, $6, $7, $8, 0, $8) \
    ON CONFLICT (user_id) DO NOTHING RETURNING version";

/// As [`SAVE_ABSENT`], and $9 the expected version (the row's new one is the next).
pub(crate) const SAVE_VERSION: &str = "UPDATE withings_credentials SET version = version + 1, \
    login_required = FALSE, access_token = $2, refresh_token = $3, key_id = $4, \
    token_type = $5, scopes = $6, expires_at = $7, refreshed_at = $8, failure_count = 0, \
    updated_at = $8 \
    WHERE user_id = $1 AND version = $9 RETURNING version";

/// $1 user, $2 now, $3 the new version (a new epoch's).
pub(crate) const MARK_ABSENT: &str = "INSERT INTO withings_credentials \
    (user_id, version, login_required, failed_at, failure_count, updated_at) \
    VALUES ($1, $3, TRUE, $2, 1, $2) \
    ON CONFLICT (user_id) DO NOTHING RETURNING version";

/// $1 user, $2 now, $3 the expected version.
pub(crate) const MARK_VERSION: &str = "UPDATE withings_credentials SET version = version + 1, \
    login_required = TRUE, access_token = NULL, refresh_token = NULL, key_id = NULL, \
    token_type = NULL, scopes = NULL, expires_at = NULL, failed_at = $2, \
    failure_count = failure_count + 1, updated_at = $2 \
    WHERE user_id = $1 AND version = $3 RETURNING version";

/// $1 user, $2 the expected version. Deletes the row: the next login of the user takes a new
/// epoch, whose versions are above every version written before.
pub(crate) const DELETE_VERSION: &str = "DELETE FROM withings_credentials \
    WHERE user_id = $1 AND version = $2 RETURNING version";

/// $1 user.
pub(crate) const LOAD: &str = "SELECT version, login_required, access_token, refresh_token, \
    token_type, scopes, expires_at FROM withings_credentials WHERE user_id = $1";

pub(crate) const USERS: &str = "SELECT user_id FROM withings_credentials ORDER BY user_id";

/// A new epoch of versions: versions of a first write start at epoch * 2^32 (see migration
/// 0005), above every version written before.
pub(crate) const EPOCH: i64 = 1 << 32;

/// PostgreSQL: the next epoch.
#[cfg(feature = "postgres")]
pub(crate) const NEXT_EPOCH: &str = "SELECT nextval('withings_login_epochs')";

/// SQLite: the next epoch (in a `BEGIN IMMEDIATE` transaction).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_NEXT_EPOCH: &str =
    "UPDATE withings_counters SET value = value + 1 WHERE name = 'login_epoch' RETURNING value";

/// $1 user, $2 owner.
pub(crate) const RELEASE_LEASE: &str =
    "DELETE FROM withings_leases WHERE user_id = $1 AND owner = $2";
