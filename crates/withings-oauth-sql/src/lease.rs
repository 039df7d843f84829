//! The refresh lease: a row of `withings_leases` (user, owner, until) taken with one
//! conditional statement (gathered with the other claims in flight), after an in-process
//! lease, so that the sessions of one process queue here instead of polling the database.

use std::time::{Duration, Instant};

use withings_oauth::{Lease, LocalLeases, StoreError, UserId};

use crate::db::{self, Db, Pool};
use crate::gathered::{Claim, Gatherer, Release};
use crate::row::RawRow;

/// The longest lease the database is asked for, whatever the options say: the database adds it
/// to its clock, which must not overflow.
const LONGEST_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);

/// SQLite: $1 user. The lease's end, Unix ms.
#[cfg(feature = "sqlite")]
const SQLITE_LEASE_UNTIL: &str = "SELECT until_ms FROM withings_leases WHERE user_id = $1";

/// PostgreSQL: $1 user. Milliseconds left on the lease (negative once expired), on the
/// database's clock.
#[cfg(feature = "postgres")]
const POSTGRES_LEASE_LEFT: &str = "SELECT until_ms - \
    CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    FROM withings_leases WHERE user_id = $1";

/// The leases of a store: the in-process ones first, then the database's.
pub(crate) struct Leases {
    gatherer: Gatherer,
    local: LocalLeases,
    max_lease: Duration,
}

impl Leases {
    pub(crate) fn new(gatherer: Gatherer, max_lease: Duration) -> Self {
        Self {
            gatherer,
            local: LocalLeases::new(),
            max_lease,
        }
    }

    /// Takes the user's lease, and reads the user's row under it if `load`.
    pub(crate) async fn take(
        &self,
        user: UserId,
        ttl: Duration,
        load: bool,
    ) -> Result<(Lease, Option<RawRow>), StoreError> {
        let id = db::user_id(user)?;
        let ttl = ttl.min(self.max_lease).max(Duration::from_millis(1));
        // In-process first: sessions of this process queue here instead of polling the
        // database; the database lease then settles it across processes.
        let local = self.local.acquire(user, ttl).await;
        let owner = lease_owner();
        let mut pause = Duration::from_millis(5);
        loop {
            // Taken before the claim, so this process believes the lease ends no later than
            // the database does.
            let asked = Instant::now();
            let claim = Claim {
                user: id,
                owner: owner.clone(),
                ttl_ms: db::millis(ttl.min(LONGEST_LEASE)),
                load,
            };
            if let Some(taken) = self.gatherer.claim(claim).await? {
                let lease = Lease::new((local, taken.release), Some(asked + ttl));
                return Ok((lease, taken.row));
            }
            // Held by another process: wait for its release (polled) or its expiry.
            let left = lease_left(self.gatherer.db(), id)
                .await?
                .unwrap_or_default();
            tokio::time::sleep(left.min(pause).max(Duration::from_millis(1))).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// The guard of a lease this store took: the in-process lease and the database's.
pub(crate) type Guard = (Lease, Release);

/// How long the user's lease is still held by someone, if it is.
pub(crate) async fn lease_left(db: &Db, user: i64) -> Result<Option<Duration>, StoreError> {
    let result: Result<Option<i64>, sqlx::Error> = match &db.pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => sqlx::query_scalar::<_, i64>(SQLITE_LEASE_UNTIL)
            .bind(user)
            .fetch_optional(p)
            .await
            .map(|until| until.map(|until| until - db::now_millis())),
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => {
            sqlx::query_scalar::<_, i64>(POSTGRES_LEASE_LEFT)
                .bind(user)
                .fetch_optional(p)
                .await
        }
    };
    let left = result.map_err(|e| db.fail("read a refresh lease", e))?;
    Ok(left
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms as u64)))
}

/// A random owner for a database lease: the process id (for whoever reads the table) and 64
/// random bits.
fn lease_owner() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system's random number generator failed");
    format!(
        "pid{}-{:016x}",
        std::process::id(),
        u64::from_be_bytes(random)
    )
}
