-- withings-oauth-sql, PostgreSQL: token buckets shared by every instance (`SqlStore::rate_bucket`).
--
-- One row per bucket. `tokens` is the level at `updated_ms`; the refill since then is computed
-- by each take, in one statement, on the database's clock (Unix milliseconds from
-- `clock_timestamp()`), so instances whose clocks disagree still agree on it. Until
-- `slowed_until_ms` the bucket refills at its slowed rate (after a 601 answer). Independent of
-- migration 0002.
CREATE TABLE withings_rate_limits (
    name            TEXT PRIMARY KEY,
    tokens          DOUBLE PRECISION NOT NULL,
    updated_ms      BIGINT NOT NULL,
    slowed_until_ms BIGINT NOT NULL DEFAULT 0
);
