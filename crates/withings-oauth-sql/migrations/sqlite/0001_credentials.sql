-- withings-oauth-sql, SQLite: one row per user who ever had an entry.
--
-- Tokens are stored as sealed bytes (see the crate docs: a versioned format naming its key id,
-- XChaCha20-Poly1305 when a key is configured), timestamps as Unix seconds. A logout keeps a
-- tombstone row (deleted = 1, no token) so that the user's version keeps growing across it:
-- a version never comes back. There is no other copy of a token anywhere.
CREATE TABLE withings_credentials (
    user_id        INTEGER PRIMARY KEY NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    deleted        INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    login_required INTEGER NOT NULL DEFAULT 0 CHECK (login_required IN (0, 1)),
    access_token   BLOB,
    refresh_token  BLOB,
    key_id         TEXT,
    token_type     TEXT,
    scopes         TEXT,
    expires_at     INTEGER,
    refreshed_at   INTEGER,
    failed_at      INTEGER,
    failure_count  INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    CHECK (deleted = 1 OR login_required = 1 OR (access_token IS NOT NULL
        AND refresh_token IS NOT NULL AND token_type IS NOT NULL AND scopes IS NOT NULL
        AND expires_at IS NOT NULL))
) STRICT;

-- A fleet's sweeps: who expires soonest, and which rows still use an older key.
CREATE INDEX withings_credentials_by_expiry
    ON withings_credentials (expires_at) WHERE deleted = 0 AND login_required = 0;
CREATE INDEX withings_credentials_by_key
    ON withings_credentials (key_id) WHERE access_token IS NOT NULL;

-- Refresh leases: one holder per user across every process sharing the file. `until_ms` is
-- Unix milliseconds; an expired row is taken over by the next claim.
CREATE TABLE withings_leases (
    user_id  INTEGER PRIMARY KEY NOT NULL,
    owner    TEXT NOT NULL,
    until_ms INTEGER NOT NULL
) STRICT;
