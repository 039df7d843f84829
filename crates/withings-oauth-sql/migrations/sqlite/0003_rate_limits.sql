-- withings-oauth-sql, SQLite: token buckets shared by every process using the file
-- (`SqlStore::rate_bucket`).
--
-- One row per bucket. `tokens` is the level at `updated_ms`; the refill since then is computed
-- by each take, in one statement, from Unix milliseconds of the machine's clock (the processes
-- sharing a SQLite file share that clock). Until `slowed_until_ms` the bucket refills at its
-- slowed rate (after a 601 answer). Independent of migration 0002.
CREATE TABLE withings_rate_limits (
    name            TEXT PRIMARY KEY NOT NULL,
    tokens          REAL NOT NULL,
    updated_ms      INTEGER NOT NULL,
    slowed_until_ms INTEGER NOT NULL DEFAULT 0
) STRICT;
