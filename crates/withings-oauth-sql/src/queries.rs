//! The SQL of the credentials table and its leases that both backends share: `$n` parameters
//! (SQLite reads them too), `TRUE`/`FALSE` (SQLite stores them as 1/0), integer timestamps,
//! bytes for sealed tokens.

/// Parameters: $1 user, $2 access token, $3 refresh token, $4 key id, $5 token type,
/// $6 scopes, $7 expiry, $8 now. Writes over a tombstone (a user who logged out) only.
pub(crate) const SAVE_ABSENT: &str = "INSERT INTO withings_credentials AS c \
    (user_id, version, deleted, login_required, access_token, refresh_token, key_id, token_type, \
     scopes, expires_at, refreshed_at, failure_count, updated_at) \
    VALUES ($1, 1, FALSE, FALSE, $2, $3, $4, $5, $6, $7, $8, 0, $8) \
    ON CONFLICT (user_id) DO UPDATE SET version = c.version + 1, deleted = FALSE, \
    login_required = FALSE, access_token = $2, refresh_token = $3, key_id = $4, \
    token_type = $5, scopes = $6, expires_at = $7, refreshed_at = $8, failed_at = NULL, \
    failure_count = 0, updated_at = $8 \
    WHERE c.deleted = TRUE RETURNING version";

/// As [`SAVE_ABSENT`], and $9 the expected version.
pub(crate) const SAVE_VERSION: &str = "UPDATE withings_credentials SET version = version + 1, \
    login_required = FALSE, access_token = $2, refresh_token = $3, key_id = $4, \
    token_type = $5, scopes = $6, expires_at = $7, refreshed_at = $8, failure_count = 0, \
    updated_at = $8 \
    WHERE user_id = $1 AND version = $9 AND deleted = FALSE RETURNING version";

/// $1 user, $2 now.
pub(crate) const MARK_ABSENT: &str = "INSERT INTO withings_credentials AS c \
    (user_id, version, deleted, login_required, failed_at, failure_count, updated_at) \
    VALUES ($1, 1, FALSE, TRUE, $2, 1, $2) \
    ON CONFLICT (user_id) DO UPDATE SET version = c.version + 1, deleted = FALSE, \
    login_required = TRUE, access_token = NULL, refresh_token = NULL, key_id = NULL, \
    token_type = NULL, scopes = NULL, expires_at = NULL, refreshed_at = NULL, failed_at = $2, \
    failure_count = 1, updated_at = $2 \
    WHERE c.deleted = TRUE RETURNING version";

/// $1 user, $2 now, $3 the expected version.
pub(crate) const MARK_VERSION: &str = "UPDATE withings_credentials SET version = version + 1, \
    login_required = TRUE, access_token = NULL, refresh_token = NULL, key_id = NULL, \
    token_type = NULL, scopes = NULL, expires_at = NULL, failed_at = $2, \
    failure_count = failure_count + 1, updated_at = $2 \
    WHERE user_id = $1 AND version = $3 AND deleted = FALSE RETURNING version";

/// $1 user, $2 now, $3 the expected version. Leaves a tombstone: the user id and the version.
pub(crate) const DELETE_VERSION: &str = "UPDATE withings_credentials SET version = version + 1, \
    deleted = TRUE, login_required = FALSE, access_token = NULL, refresh_token = NULL, \
    key_id = NULL, token_type = NULL, scopes = NULL, expires_at = NULL, refreshed_at = NULL, \
    failed_at = NULL, failure_count = 0, updated_at = $2 \
    WHERE user_id = $1 AND version = $3 AND deleted = FALSE RETURNING version";

/// $1 user.
pub(crate) const LOAD: &str = "SELECT version, login_required, access_token, refresh_token, \
    token_type, scopes, expires_at FROM withings_credentials \
    WHERE user_id = $1 AND deleted = FALSE";

pub(crate) const USERS: &str =
    "SELECT user_id FROM withings_credentials WHERE deleted = FALSE ORDER BY user_id";

/// $1 user, $2 owner.
pub(crate) const RELEASE_LEASE: &str =
    "DELETE FROM withings_leases WHERE user_id = $1 AND owner = $2";
