-- withings-oauth-sql, SQLite: logins parked by web servers between the request that starts
-- them and the request that receives their callback (see `SqlPendingLogins`).
--
-- Keyed by the SHA-256 of the login's `state` (hex); `state` itself is a secret, stored as
-- sealed bytes (the tokens' format, bound to the column and to the state hash; in clear with
-- format byte 0 when no key is configured). Rows live minutes: taken once by their callback,
-- or purged once older than the store's lifetime. `created_at_ms` is Unix milliseconds.
CREATE TABLE withings_pending_logins (
    state_hash    TEXT PRIMARY KEY NOT NULL,
    browser_hash  TEXT NOT NULL,
    owner         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    redirect_uri  TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    demo          INTEGER NOT NULL CHECK (demo IN (0, 1)),
    state         BLOB NOT NULL
) STRICT;

-- The purge of expired rows on every put, and the cap per owner.
CREATE INDEX withings_pending_logins_by_age ON withings_pending_logins (created_at_ms);
CREATE INDEX withings_pending_logins_by_owner
    ON withings_pending_logins (owner, created_at_ms);
