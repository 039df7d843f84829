-- withings-oauth-sql, PostgreSQL: no tombstones, versions that still never come back, and the
-- keys in use recorded so that the database refuses clear text once it is encrypted.
--
-- Versions: a first write of a user (a login, or a "login required" mark) takes a new epoch
-- from `withings_login_epochs` and starts at epoch * 2^32; each later write adds one. Every
-- epoch is above every version written before it, so a user who logs out (their row deleted)
-- and back in gets a version above any they had. Tombstones are no longer needed: they go.
DELETE FROM withings_credentials WHERE deleted;
ALTER TABLE withings_credentials DROP COLUMN deleted;
ALTER TABLE withings_credentials ADD CONSTRAINT withings_credentials_complete
    CHECK (login_required OR (access_token IS NOT NULL AND refresh_token IS NOT NULL
        AND token_type IS NOT NULL AND scopes IS NOT NULL AND expires_at IS NOT NULL));
CREATE SEQUENCE withings_login_epochs;
SELECT setval('withings_login_epochs',
    (SELECT COALESCE(MAX(version), 0) FROM withings_credentials) / 4294967296 + 1, false);

-- The key ids that sealed tokens in this database (never key material). A row here makes the
-- database encrypted: a store opened without keys is refused, and so is any write of a token in
-- clear text. A retired key id (after a rotation) seals nothing more.
CREATE TABLE withings_keys (
    key_id   TEXT PRIMARY KEY,
    retired  BOOLEAN NOT NULL DEFAULT FALSE,
    since_ms BIGINT NOT NULL
);

-- Enforced by the database, whatever program writes: one that opened the store before it was
-- encrypted, or one that still seals with a retired key. The messages start with
-- `withings-oauth:`, which the store turns into typed errors.
CREATE FUNCTION withings_credentials_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.access_token IS NULL AND NEW.refresh_token IS NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.key_id IS NULL THEN
        IF EXISTS (SELECT 1 FROM withings_keys) THEN
            RAISE EXCEPTION 'withings-oauth: clear text refused by an encrypted store';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM withings_keys WHERE key_id = NEW.key_id AND retired) THEN
        RAISE EXCEPTION 'withings-oauth: a retired key sealed the tokens';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER withings_credentials_keys
    BEFORE INSERT OR UPDATE OF access_token, refresh_token, key_id ON withings_credentials
    FOR EACH ROW EXECUTE FUNCTION withings_credentials_keys();
