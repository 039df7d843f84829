//! The refresh lease: a row of `withings_leases` (user, owner, until) taken with one
//! conditional statement (gathered with the other claims in flight), after an in-process
//! lease, so that the sessions of one process queue here instead of polling the database.
//!
//! The row lives a short time (`SqlOptions::lease_ttl`, 2 s by default) and a heartbeat per
//! store handle renews every lease the handle holds, in one statement, a few times per time to
//! live, up to the time to live the lease's caller asked for. A holder that dies stops
//! renewing, and its lease is taken over within the short time to live; a holder that hangs
//! keeps it at most as long as its caller asked. Each renewal moves the holder's
//! [`LeaseTerm`]; one that finds the lease taken over marks it lost.

use std::time::{Duration, Instant};

use tracing::{debug, info};
use withings_oauth::{Lease, LeaseTerm, LocalLeases, StoreError, UserId};

use crate::db::{self, Db, Pool};
use crate::gathered::{Claim, Gatherer, Release, Renew, Renewing};
use crate::options::{LeaseWait, OnLeaseWait, SqlOptions};
use crate::row::RawRow;

/// The longest lease the database is asked for, whatever the options say: the database adds it
/// to its clock, which must not overflow.
const LONGEST_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a caller waits for another holder's lease before it says so.
const WAIT_BEFORE_TELLING: Duration = Duration::from_secs(1);

/// SQLite: $1 user. The lease's owner and end, Unix ms.
#[cfg(feature = "sqlite")]
const SQLITE_LEASE_UNTIL: &str = "SELECT owner, until_ms FROM withings_leases WHERE user_id = $1";

/// PostgreSQL: $1 user. The lease's owner, and the milliseconds left on it (negative once
/// expired), on the database's clock.
#[cfg(feature = "postgres")]
const POSTGRES_LEASE_LEFT: &str = "SELECT owner, until_ms - \
    CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    FROM withings_leases WHERE user_id = $1";

/// The leases of a store: the in-process ones first, then the database's.
pub(crate) struct Leases {
    gatherer: Gatherer,
    local: LocalLeases,
    /// The database lease's time to live between renewals.
    ttl: Duration,
    /// The heartbeat's period.
    renewal: Duration,
    on_wait: Option<OnLeaseWait>,
}

impl Leases {
    pub(crate) fn new(gatherer: Gatherer, options: &SqlOptions) -> Self {
        Self {
            gatherer,
            local: LocalLeases::new(),
            ttl: options.lease_ttl,
            renewal: options.lease_renewal_value(),
            on_wait: options.on_lease_wait.clone(),
        }
    }

    /// Takes the user's lease for at most `ttl`, and reads the user's row under it if `load`.
    pub(crate) async fn take(
        &self,
        user: UserId,
        ttl: Duration,
        load: bool,
    ) -> Result<(Lease, Option<RawRow>), StoreError> {
        let id = db::user_id(user)?;
        let ttl = ttl.clamp(Duration::from_millis(1), LONGEST_LEASE);
        // In-process first: sessions of this process queue here instead of polling the
        // database; the database lease then settles it across processes.
        let asked_first = Instant::now();
        let local = self.local.acquire(user, ttl).await;
        let started = Instant::now();
        // This caller slept until the last holder's lease expired (a holder that renews it
        // never gets that close): taking it now is a takeover.
        let mut expired_holder = false;
        // Renewed no further than the caller's time to live: a hung holder's lease expires.
        let cap = started + ttl;
        let owner = lease_owner(
            self.gatherer.handle(),
            unix_millis().saturating_add(db::millis(ttl)),
        );
        let mut told = false;
        let mut pause = Duration::from_millis(5);
        loop {
            // Taken before the claim, so this process believes the lease ends no later than
            // the database does.
            let asked = Instant::now();
            let short = self
                .ttl
                .min(cap.saturating_duration_since(asked))
                .max(Duration::from_millis(1));
            let claim = Claim {
                user: id,
                owner: owner.clone(),
                ttl_ms: db::millis(short),
                load,
            };
            if let Some(taken) = self.gatherer.claim(claim).await? {
                let term = LeaseTerm::until(asked + short);
                self.keep_renewed(Renewing {
                    user: id,
                    owner,
                    term: term.clone(),
                    cap,
                });
                let lease = Lease::renewable((local, taken.release), term);
                crate::telemetry::lease_taken(
                    self.gatherer.db().location.backend,
                    asked_first.elapsed(),
                    expired_holder || taken.took_over,
                );
                let mut row = taken.row;
                if taken.took_over && load {
                    // Taken over from a holder whose lease ran out: it may have refreshed and
                    // be saving still, its save held up as the lease was (a database locked by
                    // a stopped process, a restart). Its save is let in before the read, which
                    // would otherwise hand this caller the refresh token just rotated.
                    debug!(user_id = %user, "refresh lease taken over; reading the entry after a pause");
                    tokio::time::sleep(takeover_grace(self.ttl)).await;
                    row = self.gatherer.load(id).await?;
                }
                return Ok((lease, row));
            }
            // Held by another process: wait for its release (polled) or its expiry.
            let holder = lease_holder(self.gatherer.db(), id).await?;
            if !told && started.elapsed() >= WAIT_BEFORE_TELLING {
                told = true;
                self.tell(user, holder.as_ref());
            }
            let left = holder.as_ref().map(|h| h.left).unwrap_or_default();
            let nap = left.min(pause).max(Duration::from_millis(1));
            // A holder gone right after this caller slept to its expiry is one whose lease
            // expired (an expired row reads as no holder): still a takeover.
            expired_holder = match &holder {
                Some(_) => left <= nap,
                None => expired_holder,
            };
            tokio::time::sleep(nap).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Has the heartbeat renew a lease just taken, starting it if it is not running.
    fn keep_renewed(&self, lease: Renewing) {
        if self.gatherer.keep_renewed(lease) {
            let beat = Heartbeat {
                gatherer: self.gatherer.clone(),
                finished: false,
            };
            tokio::spawn(beat.run(self.ttl, self.renewal));
        }
    }

    /// Says once that this caller waits for another holder.
    fn tell(&self, user: UserId, holder: Option<&Holder>) {
        let wait = LeaseWait {
            user,
            holder_pid: holder.and_then(|h| h.pid),
            at_most: holder.map(|h| h.at_most).unwrap_or_default(),
        };
        info!(user_id = %user, holder_pid = ?wait.holder_pid, at_most_s = wait.at_most.as_secs(), "{wait}");
        if let Some(tell) = &self.on_wait {
            tell(&wait);
        }
    }
}

/// How long a caller that took a lease over waits before it reads the entry: long enough for
/// the last holder's save, held up with its lease and let through at the same moment, to
/// land; a quarter of the database lease, at most half a second.
fn takeover_grace(ttl: Duration) -> Duration {
    (ttl / 4).min(Duration::from_millis(500))
}

/// The guard of a lease this store took: the in-process lease and the database's.
pub(crate) type Guard = (Lease, Release);

/// A handle's heartbeat: every period, renews every lease the handle holds in one statement
/// (PostgreSQL) or transaction (SQLite), by the lease's time to live from now, never past its
/// caller's; moves each lease's term, or marks it lost if another holder took it over. Stops
/// when the handle holds no lease; the next lease taken starts it again.
struct Heartbeat {
    gatherer: Gatherer,
    /// Stopped by itself (nothing held): otherwise, dropped unfinished (the runtime shut
    /// down), it lets the next lease start another.
    finished: bool,
}

impl Heartbeat {
    async fn run(mut self, ttl: Duration, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            let Some(held) = self.gatherer.to_renew() else {
                self.finished = true;
                return;
            };
            let asked = Instant::now();
            let mut renewing = Vec::with_capacity(held.len());
            let mut renew = Vec::with_capacity(held.len());
            for lease in held {
                let left = lease.cap.saturating_duration_since(asked);
                if left.is_zero() {
                    // Its caller's time to live is over: the lease expires as it stands.
                    self.gatherer.stop_renewing(lease.user, &lease.owner);
                    continue;
                }
                let ttl = ttl.min(left);
                renew.push(Renew {
                    user: lease.user,
                    owner: lease.owner.clone(),
                    ttl_ms: db::millis(ttl),
                });
                renewing.push((lease, ttl));
            }
            if renew.is_empty() {
                continue;
            }
            match self.gatherer.renew(renew).await {
                Ok(renewed) => {
                    for ((lease, ttl), renewed) in renewing.into_iter().zip(renewed) {
                        if renewed {
                            lease.term.renew(asked + ttl);
                        } else {
                            // Taken over, expired, or ended by its holder meanwhile.
                            lease.term.lose();
                            self.gatherer.stop_renewing(lease.user, &lease.owner);
                        }
                    }
                }
                // The terms run on: a holder whose lease ends before the next renewal sends
                // nothing.
                Err(e) => {
                    debug!(error = %e, "refresh leases were not renewed; the next heartbeat tries again")
                }
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !self.finished {
            self.gatherer.heartbeat_stopped();
        }
    }
}

/// Who holds a user's lease, as its row says.
pub(crate) struct Holder {
    /// How long the row is held still.
    left: Duration,
    /// The holder's process id, from its owner.
    pid: Option<u32>,
    /// The longest it may still be renewed: until its caller's time to live, from its owner.
    at_most: Duration,
}

/// Who holds the user's lease, if anyone holds it.
pub(crate) async fn lease_holder(db: &Db, user: i64) -> Result<Option<Holder>, StoreError> {
    let result: Result<Option<(String, i64)>, sqlx::Error> = match &db.pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => sqlx::query_as::<_, (String, i64)>(SQLITE_LEASE_UNTIL)
            .bind(user)
            .fetch_optional(p)
            .await
            .map(|row| row.map(|(owner, until)| (owner, until - db::now_millis()))),
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => {
            sqlx::query_as::<_, (String, i64)>(POSTGRES_LEASE_LEFT)
                .bind(user)
                .fetch_optional(p)
                .await
        }
    };
    let row = result.map_err(|e| db.fail("read a refresh lease", e))?;
    Ok(row.filter(|(_, ms)| *ms > 0).map(|(owner, ms)| {
        let left = Duration::from_millis(ms as u64);
        let (pid, cap) = parse_owner(&owner);
        let at_most = cap
            .map(|cap| Duration::from_millis(cap.saturating_sub(unix_millis()).max(0) as u64))
            .unwrap_or_default()
            .max(left);
        Holder { left, pid, at_most }
    }))
}

/// This machine's clock, Unix ms: the ends of renewals that owners name are on their
/// machine's clock (a waiter on another machine reads them as a bound, not to the ms).
fn unix_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random owner for a database lease: the handle's prefix (the process id and the handle's
/// 64 random bits), the lease's own 64 random bits, and the moment (Unix ms) after which the
/// holder no longer renews it, for whoever waits or reads the table.
fn lease_owner(handle: &str, cap_ms: i64) -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system's random number generator failed");
    format!("{handle}{:016x}-cap{cap_ms}", u64::from_be_bytes(random))
}

/// The process id and the end of renewals an owner names, if it names them.
fn parse_owner(owner: &str) -> (Option<u32>, Option<i64>) {
    let mut parts = owner.split('-');
    let pid = parts
        .next()
        .and_then(|p| p.strip_prefix("pid"))
        .and_then(|p| p.parse().ok());
    let cap = parts
        .nth(1)
        .and_then(|c| c.strip_prefix("cap"))
        .and_then(|c| c.parse().ok());
    (pid, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_names_its_process_and_the_end_of_its_renewals() {
        let owner = lease_owner(
            &format!("pid{}-00ff.", std::process::id()),
            1_700_000_000_000,
        );
        assert_eq!(
            parse_owner(&owner),
            (Some(std::process::id()), Some(1_700_000_000_000))
        );
        assert_eq!(parse_owner("pid12-00ff"), (Some(12), None));
        assert_eq!(parse_owner("someone"), (None, None));
    }
}
