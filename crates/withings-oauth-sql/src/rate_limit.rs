//! [`SqlBucket`]: a token bucket kept in the database, shared by every instance (PostgreSQL)
//! or process (SQLite) that opens it. The policy (how long to wait, what to do when the
//! database fails) belongs to its user, such as `withings-oauth-fleet`'s `SqlRateLimiter`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use withings_oauth::StoreError;

#[cfg(feature = "sqlite")]
use crate::db::sqlite_immediate;
use crate::db::{Db, Pool, millis};

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
const SQLITE_TAKE_TOKEN: &str = take_token!(sqlite);
#[cfg(feature = "postgres")]
const POSTGRES_TAKE_TOKEN: &str = take_token!(postgres);

#[cfg(feature = "sqlite")]
const SQLITE_BUCKET_STATE: &str = bucket_state!(sqlite, "REAL");
#[cfg(feature = "postgres")]
const POSTGRES_BUCKET_STATE: &str = bucket_state!(postgres, "DOUBLE PRECISION");

#[cfg(feature = "sqlite")]
const SQLITE_BUCKET_CATCH_UP: &str = bucket_catch_up!(sqlite, "MIN");
#[cfg(feature = "postgres")]
const POSTGRES_BUCKET_CATCH_UP: &str = bucket_catch_up!(postgres, "LEAST");

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
const SQLITE_SLOW_BUCKET: &str = slow_bucket!(sqlite);
#[cfg(feature = "postgres")]
const POSTGRES_SLOW_BUCKET: &str = slow_bucket!(postgres);

/// Tokens spent without the bucket: the level drops by $5, not below zero (created if
/// missing, full less $5). Parameters as every statement's ($1 to $4), $5 the tokens.
macro_rules! spend_tokens {
    ($backend:tt, $greatest:literal) => {
        concat!(
            "INSERT INTO withings_rate_limits AS b (name, tokens, updated_ms, slowed_until_ms) \
             VALUES ($1, ",
            $greatest,
            "(0, $2 - $5), ",
            database_now!($backend),
            ", 0) ON CONFLICT (name) DO UPDATE SET tokens = ",
            $greatest,
            "(0, ",
            bucket_level!($backend),
            " - $5), updated_ms = ",
            database_now!($backend)
        )
    };
}

#[cfg(feature = "sqlite")]
const SQLITE_SPEND_TOKENS: &str = spend_tokens!(sqlite, "MAX");
#[cfg(feature = "postgres")]
const POSTGRES_SPEND_TOKENS: &str = spend_tokens!(postgres, "GREATEST");

/// A token back (its taker gave up before using it): $1 name, $2 burst.
#[cfg(feature = "sqlite")]
const SQLITE_GIVE_BACK: &str =
    "UPDATE withings_rate_limits SET tokens = MIN($2, tokens + 1) WHERE name = $1";
#[cfg(feature = "postgres")]
const POSTGRES_GIVE_BACK: &str =
    "UPDATE withings_rate_limits SET tokens = LEAST($2, tokens + 1) WHERE name = $1";

/// The longest wait [`SqlBucket::try_take`] reports: a caller checks again after it.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How a [`SqlBucket`] fills: at most [`burst`](Self::burst) tokens, refilled at
/// [`refill_per_second`](Self::refill_per_second), or at
/// [`slowed_refill_per_second`](Self::slowed_refill_per_second) during a
/// [slowdown](SqlBucket::slow_down).
///
/// Every user of one bucket should pass the same parameters: they are not stored, each
/// statement applies the ones it is given.
///
/// ```
/// use withings_oauth_sql::RateParams;
///
/// // 110 tokens a minute in steady state, 10 at once, half speed after a 601.
/// let params = RateParams::new(10, 110.0 / 60.0);
/// assert_eq!(params.slowed_refill_per_second(), params.refill_per_second() / 2.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateParams {
    burst: u32,
    refill_per_second: f64,
    slowed_refill_per_second: f64,
}

/// The slowest refill accepted: one token in about 11.5 days.
const MIN_REFILL: f64 = 1e-6;
/// The fastest: a million tokens a second.
const MAX_REFILL: f64 = 1e6;

fn sensible_refill(per_second: f64) -> f64 {
    if per_second.is_nan() {
        MIN_REFILL
    } else {
        per_second.clamp(MIN_REFILL, MAX_REFILL)
    }
}

impl RateParams {
    /// At most `burst` tokens (at least 1), `refill_per_second` tokens a second (kept between
    /// 10⁻⁶ and 10⁶), half that during a slowdown.
    pub fn new(burst: u32, refill_per_second: f64) -> Self {
        let refill = sensible_refill(refill_per_second);
        Self {
            burst: burst.max(1),
            refill_per_second: refill,
            slowed_refill_per_second: sensible_refill(refill / 2.0),
        }
    }

    /// The refill during a slowdown (default half the normal one).
    pub fn slowed_refill(mut self, per_second: f64) -> Self {
        self.slowed_refill_per_second = sensible_refill(per_second);
        self
    }

    /// The most tokens the bucket holds, and the level of a new bucket.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Tokens added a second.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }

    /// Tokens added a second during a slowdown.
    pub fn slowed_refill_per_second(&self) -> f64 {
        self.slowed_refill_per_second
    }
}

/// What a [`SqlBucket`] holds now ([`SqlBucket::state`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BucketState {
    /// Tokens available now (fractions are refill in progress).
    pub tokens: f64,
    /// How long the slowdown lasts, if one is in force.
    pub slowed_for: Option<Duration>,
}

/// A token bucket in the database: one row of `withings_rate_limits`, shared by every handle
/// of every process that opens the same database and asks for the same name.
///
/// Each [`try_take`](Self::try_take) is one statement that computes the refill since the last
/// take and takes a token only if there is one, on the row it locks: two instances never get
/// the same token. The refill is computed on the database's clock on PostgreSQL
/// (`clock_timestamp()`), so instances whose clocks disagree still agree on it; on SQLite on
/// the machine's clock, which its processes share.
///
/// Made by [`SqlStore::rate_bucket`](crate::SqlStore::rate_bucket). Cheap to clone.
///
/// ```
/// use withings_oauth_sql::{RateParams, SqlOptions, SqlStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), withings_oauth::StoreError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
/// let store = SqlStore::connect(&url, SqlOptions::default()).await?;
/// // 2 at once, then one a minute.
/// let bucket = store.rate_bucket("withings", RateParams::new(2, 1.0 / 60.0))?;
/// assert_eq!(bucket.try_take().await?, Ok(()));
/// assert_eq!(bucket.try_take().await?, Ok(()));
/// let wait = bucket.try_take().await?.unwrap_err(); // empty: about a minute to wait
/// assert!(wait > std::time::Duration::from_secs(50));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqlBucket {
    db: Db,
    name: Arc<str>,
    params: RateParams,
}

impl fmt::Debug for SqlBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBucket")
            .field("database", &self.db.shown())
            .field("name", &self.name)
            .field("params", &self.params)
            .finish()
    }
}

impl SqlBucket {
    /// The bucket called `name` on `db`: names are 1 to 200 characters.
    pub(crate) fn new(db: Db, name: &str, params: RateParams) -> Result<SqlBucket, StoreError> {
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StoreError::Other(
                "a rate limit's name must be 1 to 200 characters".into(),
            ));
        }
        Ok(SqlBucket {
            db,
            name: name.into(),
            params,
        })
    }
}

/// Milliseconds to wait for one token from `level` at `rate_per_ms`.
fn wait_for_one(level: f64, rate_per_ms: f64) -> Duration {
    let ms = (1.0 - level).max(0.0) / rate_per_ms.max(MIN_REFILL / 1000.0);
    Duration::from_secs_f64(ms / 1000.0).clamp(Duration::from_millis(1), MAX_WAIT)
}

impl SqlBucket {
    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it fills.
    pub fn params(&self) -> RateParams {
        self.params
    }

    fn rates_per_ms(&self) -> (f64, f64, f64) {
        (
            f64::from(self.params.burst),
            self.params.refill_per_second / 1000.0,
            self.params.slowed_refill_per_second / 1000.0,
        )
    }

    /// Takes a token if there is one (`Ok(Ok(()))`); otherwise nothing is taken and
    /// `Ok(Err(wait))` says how long until there is one (at most a minute), at the rate in
    /// force now: others may take it first, so ask again then.
    ///
    /// # Cancellation
    /// The take is one statement. A future dropped after the statement reached the database
    /// may have taken a token that nobody will use: [`give_back`](Self::give_back) returns
    /// it, if the caller can tell (the fleet's limiter does).
    pub async fn try_take(&self) -> Result<Result<(), Duration>, StoreError> {
        let (burst, rate, slowed) = self.rates_per_ms();
        let taken: Result<bool, sqlx::Error> = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            // A row changed (inserted, or updated because a token was there) is a token taken.
            Pool::Sqlite(pool) => sqlite_immediate!(
                pool,
                sqlx::query(SQLITE_TAKE_TOKEN)
                    .bind(&*self.name)
                    .bind(burst)
                    .bind(rate)
                    .bind(slowed)
            )
            .map(|rows| rows > 0),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query(POSTGRES_TAKE_TOKEN)
                .bind(&*self.name)
                .bind(burst)
                .bind(rate)
                .bind(slowed)
                .fetch_optional(pool)
                .await
                .map(|row| row.is_some()),
        };
        if taken.map_err(|e| self.db.fail("take from a rate limit", e))? {
            return Ok(Ok(()));
        }
        let Some(read) = self.read().await? else {
            return Ok(Err(wait_for_one(burst, rate)));
        };
        if read.ahead {
            self.catch_up().await?;
        }
        Ok(Err(wait_for_one(read.level, read.rate)))
    }

    /// Returns a token taken by a caller that did not use it (never above the burst).
    pub async fn give_back(&self) -> Result<(), StoreError> {
        let burst = f64::from(self.params.burst);
        let result = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => sqlite_immediate!(
                pool,
                sqlx::query(SQLITE_GIVE_BACK).bind(&*self.name).bind(burst)
            )
            .map(drop),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query(POSTGRES_GIVE_BACK)
                .bind(&*self.name)
                .bind(burst)
                .execute(pool)
                .await
                .map(drop),
        };
        result.map_err(|e| self.db.fail("give back a rate limit's token", e))
    }

    /// Counts `tokens` spent without the bucket, by a user that could not reach the database
    /// and kept to a share of its own meanwhile: the level drops by as many, not below zero.
    /// The bucket refilled while that user was away; without this, the user would come back
    /// to a burst on top of what it spent.
    pub async fn spend(&self, tokens: u32) -> Result<(), StoreError> {
        let (burst, rate, slowed) = self.rates_per_ms();
        let tokens = f64::from(tokens);
        let result = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => sqlite_immediate!(
                pool,
                sqlx::query(SQLITE_SPEND_TOKENS)
                    .bind(&*self.name)
                    .bind(burst)
                    .bind(rate)
                    .bind(slowed)
                    .bind(tokens)
            )
            .map(drop),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query(POSTGRES_SPEND_TOKENS)
                .bind(&*self.name)
                .bind(burst)
                .bind(rate)
                .bind(slowed)
                .bind(tokens)
                .execute(pool)
                .await
                .map(drop),
        };
        result.map_err(|e| self.db.fail("count tokens spent against a rate limit", e))
    }

    /// Withings said "too many requests": empties the bucket and refills it at the slowed
    /// rate for `period`, for every user of the bucket. Another slowdown within the period
    /// starts it again.
    pub async fn slow_down(&self, period: Duration) -> Result<(), StoreError> {
        let period = millis(period);
        let result = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => sqlite_immediate!(
                pool,
                sqlx::query(SQLITE_SLOW_BUCKET)
                    .bind(&*self.name)
                    .bind(period)
            )
            .map(drop),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query(POSTGRES_SLOW_BUCKET)
                .bind(&*self.name)
                .bind(period)
                .execute(pool)
                .await
                .map(drop),
        };
        result.map_err(|e| self.db.fail("slow a rate limit down", e))
    }

    /// The level now and the slowdown in force, without taking anything. A bucket never
    /// used is full.
    pub async fn state(&self) -> Result<BucketState, StoreError> {
        Ok(match self.read().await? {
            None => BucketState {
                tokens: f64::from(self.params.burst),
                slowed_for: None,
            },
            Some(read) => BucketState {
                tokens: read.level,
                slowed_for: u64::try_from(read.slowed_ms)
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis),
            },
        })
    }

    /// After the clock stepped back (the stored time is ahead of now): the stored time becomes
    /// now, so that the bucket refills from now on. Without it, a bucket emptied before the
    /// step would stay empty for every user until the clock caught up, since a take that finds
    /// no token writes nothing.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let burst = f64::from(self.params.burst);
        let result = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => sqlite_immediate!(
                pool,
                sqlx::query(SQLITE_BUCKET_CATCH_UP)
                    .bind(&*self.name)
                    .bind(burst)
            )
            .map(drop),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query(POSTGRES_BUCKET_CATCH_UP)
                .bind(&*self.name)
                .bind(burst)
                .execute(pool)
                .await
                .map(drop),
        };
        result.map_err(|e| self.db.fail("restart a rate limit's refill", e))
    }

    /// The bucket's row as it stands now; `None` if it was never used.
    async fn read(&self) -> Result<Option<Read>, StoreError> {
        let (burst, rate, slowed) = self.rates_per_ms();
        let row = match &self.db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                sqlx::query_as(SQLITE_BUCKET_STATE)
                    .bind(&*self.name)
                    .bind(burst)
                    .bind(rate)
                    .bind(slowed)
                    .fetch_optional(pool)
                    .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                sqlx::query_as(POSTGRES_BUCKET_STATE)
                    .bind(&*self.name)
                    .bind(burst)
                    .bind(rate)
                    .bind(slowed)
                    .fetch_optional(pool)
                    .await
            }
        };
        let row: Option<(f64, f64, i64, bool)> =
            row.map_err(|e| self.db.fail("read a rate limit", e))?;
        Ok(row.map(|(level, rate, slowed_ms, ahead)| Read {
            level,
            rate,
            slowed_ms,
            ahead,
        }))
    }
}

/// A bucket's row read at the database's `NOW`.
struct Read {
    /// The level (fractions are refill in progress).
    level: f64,
    /// The refill in force, tokens per millisecond.
    rate: f64,
    /// The slowdown left, milliseconds (zero or less: none).
    slowed_ms: i64,
    /// Whether the stored time is ahead of now: the clock stepped back.
    ahead: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_kept_sensible() {
        let p = RateParams::new(0, f64::NAN);
        assert_eq!(p.burst(), 1);
        assert!(p.refill_per_second() > 0.0);
        let p = RateParams::new(5, f64::INFINITY).slowed_refill(-1.0);
        assert!(p.refill_per_second().is_finite());
        assert!(p.slowed_refill_per_second() > 0.0);
    }

    #[test]
    fn the_wait_is_the_time_to_one_token_within_bounds() {
        assert_eq!(wait_for_one(0.5, 0.001), Duration::from_millis(500));
        assert_eq!(wait_for_one(1.5, 0.001), Duration::from_millis(1));
        assert_eq!(wait_for_one(0.0, 0.0), MAX_WAIT);
    }
}
