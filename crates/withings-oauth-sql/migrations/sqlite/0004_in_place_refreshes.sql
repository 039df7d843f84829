-- withings-oauth-sql, SQLite: fewer indexes for a refresh to write.
--
-- A refresh rewrites a row's tokens and expiry. With an index on the expiry, or one whose
-- condition reads the tokens, every refresh also rewrote an entry in each of them. Neither
-- index was used by any statement of the store: a key rotation reads the rows in user order,
-- by the primary key, and a fleet's sweep reads each user's row.
DROP INDEX IF EXISTS withings_credentials_by_expiry;
DROP INDEX IF EXISTS withings_credentials_by_key;
