-- withings-oauth-sql, SQLite: no tombstones, versions that still never come back, and the keys
-- in use recorded so that the database refuses clear text once it is encrypted.
--
-- Versions: a first write of a user (a login, or a "login required" mark) takes a new epoch
-- from `withings_counters` and starts at epoch * 2^32; each later write adds one. Every epoch
-- is above every version written before it, so a user who logs out (their row deleted) and back
-- in gets a version above any they had. Tombstones are no longer needed: they go, and so does
-- the column (the table is made again, as SQLite can't drop a column a CHECK names).
DELETE FROM withings_credentials WHERE deleted = 1;
CREATE TABLE withings_credentials_new (
    user_id        INTEGER PRIMARY KEY NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
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
    CHECK (login_required = 1 OR (access_token IS NOT NULL AND refresh_token IS NOT NULL
        AND token_type IS NOT NULL AND scopes IS NOT NULL AND expires_at IS NOT NULL))
) STRICT;
INSERT INTO withings_credentials_new (user_id, version, login_required, access_token,
    refresh_token, key_id, token_type, scopes, expires_at, refreshed_at, failed_at,
    failure_count, updated_at)
SELECT user_id, version, login_required, access_token, refresh_token, key_id, token_type,
    scopes, expires_at, refreshed_at, failed_at, failure_count, updated_at
FROM withings_credentials;
DROP TABLE withings_credentials;
ALTER TABLE withings_credentials_new RENAME TO withings_credentials;

CREATE TABLE withings_counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO withings_counters (name, value)
    VALUES ('login_epoch', (SELECT COALESCE(MAX(version), 0) FROM withings_credentials) / 4294967296);

-- The key ids that sealed tokens in this database (never key material). A row here makes the
-- database encrypted: a store opened without keys is refused, and so is any write of a token in
-- clear text. A retired key id (after a rotation) seals nothing more.
CREATE TABLE withings_keys (
    key_id   TEXT PRIMARY KEY NOT NULL,
    retired  INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
    since_ms INTEGER NOT NULL
) STRICT;

-- Enforced by the database, whatever program writes: one that opened the store before it was
-- encrypted, or one that still seals with a retired key. The messages start with
-- `withings-oauth:`, which the store turns into typed errors.
CREATE TRIGGER withings_credentials_clear_insert BEFORE INSERT ON withings_credentials
    WHEN NEW.access_token IS NOT NULL AND NEW.key_id IS NULL
        AND EXISTS (SELECT 1 FROM withings_keys)
BEGIN
    SELECT RAISE(ABORT, 'withings-oauth: clear text refused by an encrypted store');
END;
CREATE TRIGGER withings_credentials_clear_update
    BEFORE UPDATE OF access_token, refresh_token, key_id ON withings_credentials
    WHEN NEW.access_token IS NOT NULL AND NEW.key_id IS NULL
        AND EXISTS (SELECT 1 FROM withings_keys)
BEGIN
    SELECT RAISE(ABORT, 'withings-oauth: clear text refused by an encrypted store');
END;
CREATE TRIGGER withings_credentials_retired_insert BEFORE INSERT ON withings_credentials
    WHEN NEW.key_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM withings_keys WHERE key_id = NEW.key_id AND retired = 1)
BEGIN
    SELECT RAISE(ABORT, 'withings-oauth: a retired key sealed the tokens');
END;
CREATE TRIGGER withings_credentials_retired_update
    BEFORE UPDATE OF access_token, refresh_token, key_id ON withings_credentials
    WHEN NEW.key_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM withings_keys WHERE key_id = NEW.key_id AND retired = 1)
BEGIN
    SELECT RAISE(ABORT, 'withings-oauth: a retired key sealed the tokens');
END;
