-- withings-oauth-sql, PostgreSQL: refreshes update a login's row in place.
--
-- A refresh rewrites a row's tokens and expiry. With an index on the expiry, or one whose
-- condition reads the tokens, every refresh wrote a new entry into each of the table's indexes,
-- and PostgreSQL could not update the row in place (a heap-only update). Neither index was used
-- by any statement of the store: a key rotation reads the rows in user order, by the primary
-- key, and a fleet's sweep reads each user's row. They go, and each page keeps a fifth of its
-- room free for the new versions of its rows.
DROP INDEX IF EXISTS withings_credentials_by_expiry;
DROP INDEX IF EXISTS withings_credentials_by_key;
ALTER TABLE withings_credentials SET (fillfactor = 80);
