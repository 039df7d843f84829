//! [`SqlRateLimiter`] (feature `sql`): one budget for every instance, kept in the SQL store
//! they share.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use withings_oauth::{BoxFuture, StoreError};
use withings_oauth_sql::{RateParams, SqlBucket, SqlStore};

use crate::fleet::Jitter;
use crate::limiter::{RateLimit, RateLimiter, TokenBucket};

/// A [`RateLimiter`] shared by every instance through their SQL store: one token bucket in
/// the database ([`SqlStore::rate_bucket`]), so that N instances together stay within one
/// [`RateLimit`] (PostgreSQL for many machines, SQLite for the processes of one machine).
///
/// - **Waiting.** A take is one statement; when the bucket is empty the database says how
///   long until the next token, and the limiter sleeps that long plus a little jitter (so
///   instances don't ask in lockstep) before asking again. Within an instance one waiter at
///   a time asks the database; the others queue behind it, in order.
/// - **Cancellation.** Dropping the future of [`acquire`](RateLimiter::acquire) takes
///   nothing: a take already sent to the database finishes in a task of its own, which gives
///   the token back if nobody is left to use it.
/// - **601 answers.** [`rate_limited`](RateLimiter::rate_limited) empties the shared bucket
///   and halves its refill for one window ([`RateLimit::per`]), for every instance.
/// - **A database that fails** (an error, or no answer within
///   [`database_timeout`](Self::database_timeout), 2 s by default) does not stop Withings
///   traffic: the instance logs a warning and falls back to a local [`TokenBucket`] holding
///   its [share](Self::instances) of the budget, at a steady pace without a burst, tries the
///   database again after [`retry_after`](Self::retry_after) (5 s), and logs when it is back. With the right
///   number of instances the budget holds while the database fails for all of them; with too
///   few counted, the instances together may exceed it until the database answers, and
///   Withings' 601 answers slow them. When the database fails for some instances only (one
///   cut off from it, or the database back for some before the others ask again), the others
///   spend the whole shared budget meanwhile: the total may exceed the budget by the cut-off
///   instances' shares for that time (at most `retry_after` once the database is back), so
///   keep the budget below Withings' limit by a share or two. Each token taken from the
///   shared bucket is also taken from the local share when it has one, so that the local
///   share holds no burst saved while the shared bucket served: a switch to it goes on at the
///   instance's pace. The other way round, the tokens the local share handed out are taken
///   from the shared bucket once the database answers again, since it refilled meanwhile: a
///   switch back brings no burst saved while the instances kept to their shares.
///
/// ```
/// use std::sync::Arc;
/// use withings_oauth::{Client, TokenStore};
/// use withings_oauth_fleet::{Fleet, RateLimit, SqlRateLimiter};
/// use withings_oauth_sql::{SqlOptions, SqlStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
/// // The store every instance opens (postgres://... for several machines).
/// let store = SqlStore::connect(&url, SqlOptions::default()).await?;
/// // 120 requests a minute for all instances together; 4 instances run, so each falls back
/// // to 30 a minute while the database does not answer.
/// let limiter = SqlRateLimiter::new(&store, RateLimit::per_minute(120)).instances(4);
///
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback");
/// let tokens: Arc<dyn TokenStore> = Arc::new(store);
/// let fleet = Fleet::builder(client, tokens).limiter(Arc::new(limiter)).build()?;
/// # let _ = fleet;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqlRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: SqlBucket,
    limit: RateLimit,
    instances: u32,
    /// The instance's share, used while the database fails.
    fallback: TokenBucket,
    database_timeout: Duration,
    retry_after: Duration,
    /// Whoever holds this asks the database; the instance's other waiters queue behind it.
    turn: tokio::sync::Mutex<()>,
    /// Until when the database is left alone after a failure.
    failed_until: Mutex<Option<Instant>>,
    /// Tokens taken from the local share since the database last answered: counted against
    /// the shared bucket once it answers again.
    spent_locally: AtomicU32,
    jitter: Jitter,
}

impl fmt::Debug for SqlRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlRateLimiter")
            .field("bucket", &self.inner.bucket)
            .field("limit", &self.inner.limit)
            .field("instances", &self.inner.instances)
            .field("using_fallback", &self.using_fallback())
            .finish_non_exhaustive()
    }
}

/// The instance's share of `limit` when `instances` share it: its part of the requests, at a
/// steady pace, without a burst. A burst of each instance's share, at each switch to it, would
/// add up over the instances and the database's failures; the shared bucket's burst served
/// before the failure already.
fn share(limit: RateLimit, instances: u32) -> RateLimit {
    let n = instances.max(1);
    RateLimit::new(limit.requests() / n, limit.per(), 1)
}

impl SqlRateLimiter {
    /// The bucket every instance of a Withings application shares, unless told otherwise.
    pub const DEFAULT_NAME: &'static str = "withings";

    /// The limiter of the bucket [`DEFAULT_NAME`](Self::DEFAULT_NAME) in `store`'s database,
    /// keeping every instance together within `limit`. Counts one instance until told
    /// [`instances`](Self::instances).
    pub fn new(store: &SqlStore, limit: RateLimit) -> Self {
        Self::named(store, Self::DEFAULT_NAME, limit)
            .expect("the default name is a valid bucket name")
    }

    /// As [`new`](Self::new), with a bucket of another name (1 to 200 characters): for
    /// several Withings applications in one database, each with its own budget.
    pub fn named(store: &SqlStore, name: &str, limit: RateLimit) -> Result<Self, StoreError> {
        let params = RateParams::new(limit.burst(), limit.refill_per_second());
        let bucket = store.rate_bucket(name, params)?;
        let seed = getrandom::u64().unwrap_or(0x5EED);
        Ok(Self {
            inner: Arc::new(Inner {
                bucket,
                limit,
                instances: 1,
                fallback: TokenBucket::new(share(limit, 1)),
                database_timeout: Duration::from_secs(2),
                retry_after: Duration::from_secs(5),
                turn: tokio::sync::Mutex::new(()),
                failed_until: Mutex::new(None),
                spent_locally: AtomicU32::new(0),
                jitter: Jitter(AtomicU64::new(seed)),
            }),
        })
    }

    fn rebuild(self, change: impl FnOnce(&mut Settings)) -> Self {
        let inner = &self.inner;
        let mut settings = Settings {
            instances: inner.instances,
            database_timeout: inner.database_timeout,
            retry_after: inner.retry_after,
        };
        change(&mut settings);
        Self {
            inner: Arc::new(Inner {
                bucket: inner.bucket.clone(),
                limit: inner.limit,
                instances: settings.instances,
                fallback: TokenBucket::new(share(inner.limit, settings.instances)),
                database_timeout: settings.database_timeout,
                retry_after: settings.retry_after,
                turn: tokio::sync::Mutex::new(()),
                failed_until: Mutex::new(None),
                spent_locally: AtomicU32::new(0),
                jitter: Jitter(AtomicU64::new(inner.jitter.next())),
            }),
        }
    }

    /// How many instances share the budget (default 1): while the database fails, this one
    /// keeps to `limit / instances` on its own. Count them generously: fewer counted than
    /// running lets the instances together exceed the budget during an outage.
    pub fn instances(self, instances: u32) -> Self {
        self.rebuild(|s| s.instances = instances.max(1))
    }

    /// How long a take may take before the database counts as failed (default 2 s).
    pub fn database_timeout(self, timeout: Duration) -> Self {
        self.rebuild(|s| s.database_timeout = timeout.max(Duration::from_millis(1)))
    }

    /// How long the database is left alone after a failure, the local share serving
    /// meanwhile (default 5 s). Longer spares a database that fails slowly (each try may
    /// wait for [`database_timeout`](Self::database_timeout)); shorter brings the instances
    /// back on one budget sooner once it answers.
    pub fn retry_after(self, pause: Duration) -> Self {
        self.rebuild(|s| s.retry_after = pause)
    }

    /// The shared budget.
    pub fn limit(&self) -> RateLimit {
        self.inner.limit
    }

    /// The bucket in the database.
    pub fn bucket(&self) -> &SqlBucket {
        &self.inner.bucket
    }

    /// Whether the database failed lately and the instance's local share serves instead.
    pub fn using_fallback(&self) -> bool {
        self.failed_until().is_some()
    }

    fn failed_until(&self) -> Option<Instant> {
        let until = self
            .inner
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.is_some_and(|t| t <= Instant::now()) {
            // Time to try the database again; the outage is over only when it answers.
            return None;
        }
        *until
    }

    fn database_failed(&self, error: &StoreError) {
        let mut until = self
            .inner
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first = until.is_none();
        *until = Some(Instant::now() + self.inner.retry_after);
        drop(until);
        if first {
            let share = self.inner.fallback.limit();
            warn!(
                bucket = self.inner.bucket.name(),
                error = %error,
                "the shared rate limit failed: this instance keeps to its share ({} requests per {:?}) until the database answers again",
                share.requests(),
                share.per(),
            );
        } else {
            debug!(error = %error, "the shared rate limit still fails");
        }
    }

    /// The database answered: back on the shared bucket. The tokens the local share handed
    /// out meanwhile are taken from it, which refilled while nobody could take from it:
    /// otherwise the instance would come back to a burst on top of what it spent.
    async fn database_answered(&self) {
        let back = {
            let mut until = self
                .inner
                .failed_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            until.take().is_some()
        };
        if !back {
            return;
        }
        let spent = self.inner.spent_locally.swap(0, Ordering::AcqRel);
        info!(
            bucket = self.inner.bucket.name(),
            spent_locally = spent,
            "the shared rate limit answers again"
        );
        if spent > 0
            && let Err(e) = self.inner.bucket.spend(spent).await
        {
            debug!(error = %e, "the tokens spent from the local share were not counted in the shared bucket");
        }
    }

    /// One take from the shared bucket, in a task of its own: if the caller gives up (its
    /// future dropped, or the database timeout), a token the take got is given back.
    async fn take_shared(&self) -> Result<Result<(), Duration>, StoreError> {
        let (sender, receiver) = oneshot::channel();
        let bucket = self.inner.bucket.clone();
        tokio::spawn(async move {
            let taken = bucket.try_take().await;
            if let Err(Ok(Ok(()))) = sender.send(taken)
                && let Err(e) = bucket.give_back().await
            {
                debug!(error = %e, "a token nobody used was not given back");
            }
        });
        match tokio::time::timeout(self.inner.database_timeout, receiver).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(_)) => Err(StoreError::Other(
                "the shared rate limit's query stopped before answering".into(),
            )),
            Err(_) => Err(StoreError::Other(format!(
                "the shared rate limit's database did not answer within {:?}",
                self.inner.database_timeout
            ))),
        }
    }

    /// `wait` and up to a tenth more (at least a few ms), so that instances woken for the
    /// same token don't all ask at once.
    fn with_jitter(&self, wait: Duration) -> Duration {
        let spread = (wait / 10).max(Duration::from_millis(5));
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        wait + Duration::from_nanos(self.inner.jitter.next() % nanos.max(1))
    }
}

struct Settings {
    instances: u32,
    database_timeout: Duration,
    retry_after: Duration,
}

impl RateLimiter for SqlRateLimiter {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _turn = self.inner.turn.lock().await;
            loop {
                if self.failed_until().is_some() {
                    self.inner.fallback.acquire().await;
                    self.inner.spent_locally.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                match self.take_shared().await {
                    Ok(Ok(())) => {
                        self.database_answered().await;
                        // Spent from the local share too (if it has a token): it must not
                        // hand out a burst saved while the shared bucket served.
                        let _ = self.inner.fallback.try_take();
                        return;
                    }
                    Ok(Err(wait)) => {
                        self.database_answered().await;
                        tokio::time::sleep(self.with_jitter(wait)).await;
                    }
                    Err(e) => self.database_failed(&e),
                }
            }
        })
    }

    fn rate_limited(&self) {
        // The local share slows too, in case the database fails before the window ends.
        self.inner.fallback.rate_limited();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (bucket, period) = (self.inner.bucket.clone(), self.inner.limit.per());
        runtime.spawn(async move {
            if let Err(e) = bucket.slow_down(period).await {
                warn!(error = %e, "could not slow the shared rate limit down after a 601");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_of_one_instance_divides_the_budget() {
        let limit = RateLimit::new(120, Duration::from_secs(60), 10);
        let quarter = share(limit, 4);
        assert_eq!(
            (quarter.requests(), quarter.burst()),
            (30, 1),
            "{quarter:?}"
        );
        assert_eq!(
            (share(limit, 0).requests(), share(limit, 0).burst()),
            (120, 1)
        );
        assert_eq!(share(limit, 1000).requests(), 1);
    }
}
