-- withings-oauth-sql, PostgreSQL: one row per user who ever had an entry.
--
-- Tokens are stored as sealed bytes (see the crate docs: a versioned format naming its key id,
-- XChaCha20-Poly1305 when a key is configured), timestamps as Unix seconds. A logout keeps a
-- tombstone row (deleted, no token) so that the user's version keeps growing across it: a
-- version never comes back. There is no other copy of a token anywhere.
CREATE TABLE withings_credentials (
    user_id        BIGINT PRIMARY KEY,
    version        BIGINT NOT NULL CHECK (version > 0),
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    login_required BOOLEAN NOT NULL DEFAULT FALSE,
    access_token   BYTEA,
    refresh_token  BYTEA,
    key_id         TEXT,
    token_type     TEXT,
    scopes         TEXT,
    expires_at     BIGINT,
    refreshed_at   BIGINT,
    failed_at      BIGINT,
    failure_count  INTEGER NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL,
    CHECK (deleted OR login_required OR (access_token IS NOT NULL
        AND refresh_token IS NOT NULL AND token_type IS NOT NULL AND scopes IS NOT NULL
        AND expires_at IS NOT NULL))
);

-- A fleet's sweeps: who expires soonest, and which rows still use an older key.
CREATE INDEX withings_credentials_by_expiry
    ON withings_credentials (expires_at) WHERE NOT deleted AND NOT login_required;
CREATE INDEX withings_credentials_by_key
    ON withings_credentials (key_id) WHERE access_token IS NOT NULL;

-- Refresh leases: one holder per user across every instance sharing the database. `until_ms`
-- is Unix milliseconds on the database's clock (instances' clocks may disagree); an expired
-- row is taken over by the next claim.
CREATE TABLE withings_leases (
    user_id  BIGINT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
