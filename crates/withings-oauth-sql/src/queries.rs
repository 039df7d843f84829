//! The SQL, shared by both backends: `$n` parameters (SQLite reads them too), `TRUE`/`FALSE`
//! (SQLite stores them as 1/0), integer timestamps, bytes for sealed tokens.

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

/// $1 the active key id, $2 the user after which to continue, $3 the batch size.
pub(crate) const STALE_KEY_BATCH: &str = "SELECT user_id, version, access_token, refresh_token \
    FROM withings_credentials WHERE access_token IS NOT NULL \
    AND (key_id IS NULL OR key_id <> $1) AND user_id > $2 ORDER BY user_id LIMIT $3";

/// $1 user, $2 access token, $3 refresh token, $4 key id, $5 the version read. The version
/// stays: the tokens are the same, only their sealing changed.
pub(crate) const RESEAL: &str = "UPDATE withings_credentials SET access_token = $2, \
    refresh_token = $3, key_id = $4 WHERE user_id = $1 AND version = $5 AND deleted = FALSE";

/// $1 user, $2 owner.
pub(crate) const RELEASE_LEASE: &str =
    "DELETE FROM withings_leases WHERE user_id = $1 AND owner = $2";

/// The migrations applied, to check a database migrated by someone else.
pub(crate) const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM _sqlx_migrations WHERE success = TRUE";

#[cfg(feature = "sqlite")]
/// SQLite: $1 user, $2 owner, $3 now (Unix ms), $4 time to live (ms).
pub(crate) const SQLITE_CLAIM_LEASE: &str = "INSERT INTO withings_leases AS l \
    (user_id, owner, until_ms) VALUES ($1, $2, $3 + $4) \
    ON CONFLICT (user_id) DO UPDATE SET owner = $2, until_ms = $3 + $4 \
    WHERE l.until_ms <= $3 OR l.owner = $2";

#[cfg(feature = "sqlite")]
/// SQLite: $1 user. The lease's end, Unix ms.
pub(crate) const SQLITE_LEASE_UNTIL: &str =
    "SELECT until_ms FROM withings_leases WHERE user_id = $1";

#[cfg(feature = "postgres")]
/// PostgreSQL: $1 user. Milliseconds left on the lease (negative once expired).
pub(crate) const POSTGRES_LEASE_LEFT: &str = "SELECT until_ms - \
    CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    FROM withings_leases WHERE user_id = $1";

/// $1 state hash, $2 browser hash, $3 owner, $4 created (Unix ms), $5 redirect URI, $6 scopes,
/// $7 demo, $8 the sealed state.
pub(crate) const PUT_PENDING: &str = "INSERT INTO withings_pending_logins \
    (state_hash, browser_hash, owner, created_at_ms, redirect_uri, scopes, demo, state) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// $1 the newest creation time (Unix ms) that has expired.
pub(crate) const PURGE_PENDING: &str =
    "DELETE FROM withings_pending_logins WHERE created_at_ms <= $1";

/// $1 owner, $2 the login just parked, $3 how many of the owner's others to keep (the newest).
pub(crate) const CAP_PENDING: &str = "DELETE FROM withings_pending_logins \
    WHERE owner = $1 AND state_hash <> $2 AND state_hash NOT IN \
    (SELECT state_hash FROM withings_pending_logins WHERE owner = $1 AND state_hash <> $2 \
     ORDER BY created_at_ms DESC, state_hash LIMIT $3)";

/// $1 state hash, $2 browser hash. Finds and deletes in one statement: of racing takers, one
/// gets the row.
pub(crate) const TAKE_PENDING: &str = "DELETE FROM withings_pending_logins \
    WHERE state_hash = $1 AND browser_hash = $2 \
    RETURNING owner, created_at_ms, redirect_uri, scopes, demo, state";

/// $1 state hash. Why a take found nothing: another browser's login, or none.
pub(crate) const PENDING_CREATED_AT: &str =
    "SELECT created_at_ms FROM withings_pending_logins WHERE state_hash = $1";

/// $1 state hash, $2 the newest creation time (Unix ms) that has expired.
pub(crate) const DELETE_EXPIRED_PENDING: &str =
    "DELETE FROM withings_pending_logins WHERE state_hash = $1 AND created_at_ms <= $2";

// Shared rate limits (`withings_rate_limits`). Parameters of every statement: $1 the bucket's
// name, $2 its burst (tokens), $3 its refill and $4 its slowed refill (tokens per millisecond).
// The level now is the stored level plus the refill since `updated_ms`, at most the burst; it
// is computed inside each statement, on the row locked by it, so concurrent takes never see
// the same token. `NOW` is read by the database inside the statement, once the row is locked:
// on PostgreSQL its own clock (`clock_timestamp()`, so instances whose clocks disagree still
// agree), on SQLite the machine's (whose processes share it). Every write sets `updated_ms` to
// `NOW`: no take committed before it can be later, unless the clock stepped back, and then a
// stored time ahead of `NOW` counts as `NOW` (no refill for the time in between, the stored
// level kept, at most the burst), and the bucket refills from `NOW` on.

/// The refill rate in force at `NOW`, and the level at `NOW`, written for both backends.
macro_rules! bucket_level {
    (postgres) => {
        "LEAST($2, b.tokens + GREATEST(0, (CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)) - b.updated_ms) \
         * (CASE WHEN b.slowed_until_ms > (CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)) THEN $4 ELSE $3 END))"
    };
    (sqlite) => {
        "MIN($2, b.tokens + MAX(0, CAST(unixepoch('subsec') * 1000 AS INTEGER) - b.updated_ms) \
         * (CASE WHEN b.slowed_until_ms > CAST(unixepoch('subsec') * 1000 AS INTEGER) THEN $4 ELSE $3 END))"
    };
}

macro_rules! database_now {
    (postgres) => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
    // SQLite reads its clock once per statement: every `'now'` in one statement is the same.
    (sqlite) => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

/// Takes one token: a new bucket starts full (and gives this one); an existing one gives a
/// token only if its level reaches 1. Returns a row if and only if a token was taken.
macro_rules! take_token {
    ($backend:tt) => {
        concat!(
            "INSERT INTO withings_rate_limits AS b (name, tokens, updated_ms, slowed_until_ms) \
             VALUES ($1, $2 - 1, ",
            database_now!($backend),
            ", 0) ON CONFLICT (name) DO UPDATE SET tokens = ",
            bucket_level!($backend),
            " - 1, updated_ms = ",
            database_now!($backend),
            " WHERE ",
            bucket_level!($backend),
            " >= 1 RETURNING tokens"
        )
    };
}

/// The level now, the refill rate in force (tokens per ms), the milliseconds of slowdown
/// left (zero or negative when none), and whether the stored time is ahead of `NOW` (a clock
/// stepped back). No row: the bucket was never used, it is full.
macro_rules! bucket_state {
    ($backend:tt, $rate_prefix:literal) => {
        concat!(
            "SELECT CAST(",
            bucket_level!($backend),
            " AS ",
            $rate_prefix,
            "), CAST(CASE WHEN b.slowed_until_ms > ",
            database_now!($backend),
            " THEN $4 ELSE $3 END AS ",
            $rate_prefix,
            "), b.slowed_until_ms - ",
            database_now!($backend),
            ", b.updated_ms > ",
            database_now!($backend),
            " FROM withings_rate_limits AS b WHERE b.name = $1"
        )
    };
}

/// After a clock stepped back: the stored time, ahead of `NOW`, becomes `NOW`, so that the
/// bucket refills from now on rather than once the clock has caught up; the level is kept, at
/// most the burst. $1 name, $2 burst.
macro_rules! bucket_catch_up {
    ($backend:tt, $least:literal) => {
        concat!(
            "UPDATE withings_rate_limits SET tokens = ",
            $least,
            "($2, tokens), updated_ms = ",
            database_now!($backend),
            " WHERE name = $1 AND updated_ms > ",
            database_now!($backend)
        )
    };
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_TAKE_TOKEN: &str = take_token!(sqlite);
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_TAKE_TOKEN: &str = take_token!(postgres);

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_BUCKET_STATE: &str = bucket_state!(sqlite, "REAL");
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_BUCKET_STATE: &str = bucket_state!(postgres, "DOUBLE PRECISION");

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_BUCKET_CATCH_UP: &str = bucket_catch_up!(sqlite, "MIN");
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_BUCKET_CATCH_UP: &str = bucket_catch_up!(postgres, "LEAST");

/// Empties the bucket and slows its refill for a while (created if missing): $1 name,
/// $2 how long (ms).
macro_rules! slow_bucket {
    ($backend:tt) => {
        concat!(
            "INSERT INTO withings_rate_limits AS b (name, tokens, updated_ms, slowed_until_ms) \
             VALUES ($1, 0, ",
            database_now!($backend),
            ", ",
            database_now!($backend),
            " + $2) ON CONFLICT (name) DO UPDATE SET tokens = 0, updated_ms = ",
            database_now!($backend),
            ", slowed_until_ms = ",
            database_now!($backend),
            " + $2"
        )
    };
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_SLOW_BUCKET: &str = slow_bucket!(sqlite);
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_SLOW_BUCKET: &str = slow_bucket!(postgres);

/// A token back (its taker gave up before using it): $1 name, $2 burst.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_GIVE_BACK: &str =
    "UPDATE withings_rate_limits SET tokens = MIN($2, tokens + 1) WHERE name = $1";
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_GIVE_BACK: &str =
    "UPDATE withings_rate_limits SET tokens = LEAST($2, tokens + 1) WHERE name = $1";

// Group commit on PostgreSQL (see `batch`): one statement for the calls of one kind gathered
// while the previous one ran, each call's values in arrays, one element per call.

#[cfg(feature = "sqlite")]
/// SQLite: [`LOAD`] for the users in $1 (a JSON array of user ids), each row followed by its
/// user id.
pub(crate) const SQLITE_LOAD_MANY: &str = "SELECT version, login_required, access_token, \
    refresh_token, token_type, scopes, expires_at, user_id FROM withings_credentials \
    WHERE user_id IN (SELECT value FROM json_each($1)) AND deleted = FALSE";

#[cfg(feature = "postgres")]
/// [`LOAD`] for the users in $1, each row followed by its user id.
pub(crate) const POSTGRES_LOAD_MANY: &str = "SELECT version, login_required, access_token, \
    refresh_token, token_type, scopes, expires_at, user_id FROM withings_credentials \
    WHERE user_id = ANY($1) AND deleted = FALSE";

#[cfg(feature = "postgres")]
/// Takes the leases of many users, unless another owner holds one that has not expired: $1
/// users (each once), $2 owners, $3 times to live (ms), on the database's clock so that
/// instances whose clocks disagree still agree on when a lease ends. Rows are taken in the
/// order of their users. Returns the users whose lease was taken.
pub(crate) const POSTGRES_CLAIM_LEASES: &str = "INSERT INTO withings_leases AS l \
    (user_id, owner, until_ms) \
    SELECT v.user_id, v.owner, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + v.ttl \
    FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS v(user_id, owner, ttl) \
    ORDER BY v.user_id \
    ON CONFLICT (user_id) DO UPDATE SET owner = EXCLUDED.owner, until_ms = EXCLUDED.until_ms \
    WHERE l.until_ms <= CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    OR l.owner = EXCLUDED.owner \
    RETURNING user_id";

#[cfg(feature = "postgres")]
/// [`SAVE_VERSION`] for many users, and the end of leases, in one transaction: $1 users (each
/// once), $2 access tokens, $3 refresh tokens, $4 key ids, $5 token types, $6 scopes, $7
/// expiries, $8 the expected versions, $9 now; $10 and $11 the users and owners of the leases
/// to release (as [`POSTGRES_RELEASE_LEASES`]: a lease taken over by another owner stays).
/// Returns the users written and their new versions; the others were not written. The store
/// sends the users in ascending order, which the rows are locked in as long as the plan
/// follows the arrays (a nested loop, as it picks for a batch's size).
pub(crate) const POSTGRES_SAVE_MANY: &str = "WITH saved AS (UPDATE withings_credentials AS c SET \
    version = c.version + 1, login_required = FALSE, access_token = v.access_token, \
    refresh_token = v.refresh_token, key_id = v.key_id, token_type = v.token_type, \
    scopes = v.scopes, expires_at = v.expires_at, refreshed_at = $9, failure_count = 0, \
    updated_at = $9 \
    FROM unnest($1::BIGINT[], $2::BYTEA[], $3::BYTEA[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
    $7::BIGINT[], $8::BIGINT[]) \
    AS v(user_id, access_token, refresh_token, key_id, token_type, scopes, expires_at, expected) \
    WHERE c.user_id = v.user_id AND c.version = v.expected AND c.deleted = FALSE \
    RETURNING c.user_id, c.version), \
    doomed AS (SELECT l.user_id FROM withings_leases AS l \
    JOIN unnest($10::BIGINT[], $11::TEXT[]) AS r(user_id, owner) \
    ON l.user_id = r.user_id AND l.owner = r.owner \
    ORDER BY l.user_id FOR UPDATE OF l), \
    released AS (DELETE FROM withings_leases AS l USING doomed WHERE l.user_id = doomed.user_id) \
    SELECT user_id, version FROM saved";

#[cfg(feature = "postgres")]
/// [`RELEASE_LEASE`] for many leases: $1 users, $2 owners. The rows are locked in the order
/// of their users first, as [`POSTGRES_CLAIM_LEASES`] takes them, so that a release and a
/// claim running at once never wait for each other in a circle.
pub(crate) const POSTGRES_RELEASE_LEASES: &str = "WITH doomed AS (SELECT l.user_id \
    FROM withings_leases AS l \
    JOIN unnest($1::BIGINT[], $2::TEXT[]) AS v(user_id, owner) \
    ON l.user_id = v.user_id AND l.owner = v.owner \
    ORDER BY l.user_id FOR UPDATE OF l) \
    DELETE FROM withings_leases AS l USING doomed WHERE l.user_id = doomed.user_id";
