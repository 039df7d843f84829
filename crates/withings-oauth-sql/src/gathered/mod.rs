//! Group commit: the store's calls that go together. On PostgreSQL, loads, lease claims, saves
//! over a version (a refresh's, or any other `Expected::Version` save) and lease releases, each
//! kind as one statement for the calls gathered ([`postgres`]). On SQLite, whose writes all go
//! one at a time through the file's one write lock, every claim, save and release gathered
//! goes in one transaction, one commit, and the loads gathered in one statement ([`sqlite`]).
//!
//! Calls of one kind that arrive while a batch of that kind runs are queued ([`batch`]) and sent
//! together as the next one; a lone call goes at once. The renewals of the leases a handle
//! holds go together too, one statement (PostgreSQL) or transaction (SQLite) per heartbeat. Every caller gets its own answer: a
//! batch that fails as a whole is run again one call at a time, so that one call's failure
//! stays its own.

mod batch;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(all(test, feature = "test-util"))]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use withings_oauth::{LeaseTerm, StoreError};

use batch::Answers;

use crate::db::{Db, Pool, on_pool};
use crate::row::{RawRow, SealedCredentials};

/// A lease to claim.
pub(crate) struct Claim {
    pub(crate) user: i64,
    pub(crate) owner: String,
    pub(crate) ttl_ms: i64,
    /// Whether to read the user's row once the lease is taken.
    pub(crate) load: bool,
}

/// A lease taken: its release, and the user's row read after it was taken, if asked for.
pub(crate) struct Taken {
    pub(crate) release: Release,
    pub(crate) row: Option<RawRow>,
    /// The lease was taken over from another handle's row left in place: its holder died,
    /// froze, or could not reach the database in time, and may still save what it refreshed.
    pub(crate) took_over: bool,
}

/// A claim's answer: `None` if another holder has the lease.
pub(crate) type Claimed = Result<Option<Taken>, StoreError>;

/// Refreshed credentials to write over the version they replace, and the lease to end with
/// them, if any.
pub(crate) struct Save {
    pub(crate) user: i64,
    pub(crate) sealed: SealedCredentials,
    pub(crate) expected: i64,
    pub(crate) release: Option<Release>,
}

/// A save the batch did not write: the credentials, and the lease it did not end (`None` if
/// the batch ran the save, refused it and ended the lease, or there was none).
pub(crate) struct Unsaved {
    pub(crate) sealed: SealedCredentials,
    pub(crate) release: Option<Release>,
}

/// A save's answer: the new version, or the save back when nothing was written (the caller
/// then writes it alone, which finds and reports the conflict, and ends a lease it got back
/// after).
pub(crate) type Saved = Result<Result<i64, Unsaved>, StoreError>;

/// A read's answer.
pub(crate) type Loaded = Result<Option<RawRow>, StoreError>;

/// The start of a handle's lease owners: `pid<process>-<64 random bits>.`.
fn handle_prefix() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system's random number generator failed");
    format!(
        "pid{}-{:016x}.",
        std::process::id(),
        u64::from_be_bytes(random)
    )
}

/// A lease to release: the user and the owner that holds it.
pub(crate) type Held = (i64, String);

/// A lease to renew: its user and owner, and how long from now it is to last (ms). Renewed
/// only if the owner still holds it and it has not expired.
pub(crate) struct Renew {
    pub(crate) user: i64,
    pub(crate) owner: String,
    pub(crate) ttl_ms: i64,
}

/// Which of the leases asked for were renewed, in their order.
pub(crate) type Renewed = Result<Vec<bool>, StoreError>;

/// A lease the handle keeps renewed while it is held: its term (moved by each renewal, marked
/// lost when a renewal finds it taken over) and the moment after which it is no longer
/// renewed (its holder's time to live: a hung holder's lease still expires).
#[derive(Clone)]
pub(crate) struct Renewing {
    pub(crate) user: i64,
    pub(crate) owner: String,
    pub(crate) term: LeaseTerm,
    pub(crate) cap: Instant,
}

/// The database handle and the queues of its gathered calls. Cloning is cheap and shares them.
#[derive(Clone)]
pub(crate) struct Gatherer(Arc<Shared>);

struct Shared {
    db: Db,
    #[cfg(feature = "postgres")]
    postgres: postgres::Queues,
    #[cfg(feature = "sqlite")]
    sqlite: sqlite::Queues,
    /// Lease releases still running in the background, awaited by [`Gatherer::close`].
    releases: Releases,
    /// The leases this handle holds and renews.
    renewals: Mutex<Renewals>,
    /// What every lease owner this handle names starts with: the process and 64 random bits.
    handle: String,
}

/// The leases a handle renews, and whether its heartbeat runs. One lock for both, so that a
/// heartbeat that stops (nothing held) and a lease taken at that moment agree on who starts
/// the next one.
#[derive(Default)]
struct Renewals {
    held: HashMap<(i64, String), Renewing>,
    beating: bool,
}

impl Gatherer {
    pub(crate) fn new(db: Db) -> Self {
        Self(Arc::new(Shared {
            db,
            #[cfg(feature = "postgres")]
            postgres: postgres::Queues::default(),
            #[cfg(feature = "sqlite")]
            sqlite: sqlite::Queues::default(),
            releases: Releases::default(),
            renewals: Mutex::default(),
            handle: handle_prefix(),
        }))
    }

    /// What the owners of this handle's leases start with (`pid<process>-<64 random bits>.`):
    /// a lease row whose owner starts with it, and whose in-process lease is free, is one this
    /// handle failed to release (its database was unreachable as the holder's save failed).
    /// The handle's claims take such a row back at once, so that the holder of a refreshed
    /// pair it could not save finds its lease again before another instance can take it and
    /// spend the rotated refresh token.
    pub(crate) fn handle(&self) -> &str {
        &self.0.handle
    }

    /// The SQL `LIKE` pattern of this handle's lease owners: hex digits, the process id and
    /// `pid`, `-` and `.`, none of which `LIKE` treats specially.
    pub(crate) fn own_owners(&self) -> String {
        format!("{}%", self.0.handle)
    }

    /// Keeps a lease just taken renewed until it ends; `true` if the caller must start the
    /// heartbeat (none runs).
    pub(crate) fn keep_renewed(&self, lease: Renewing) -> bool {
        let mut renewals = self.renewals();
        renewals
            .held
            .insert((lease.user, lease.owner.clone()), lease);
        !std::mem::replace(&mut renewals.beating, true)
    }

    /// The leases to renew now; `None`, and the heartbeat stops, when none is held.
    pub(crate) fn to_renew(&self) -> Option<Vec<Renewing>> {
        let mut renewals = self.renewals();
        if renewals.held.is_empty() {
            renewals.beating = false;
            return None;
        }
        Some(renewals.held.values().cloned().collect())
    }

    /// Stops renewing a lease: it ended, was lost, or passed its holder's time to live.
    pub(crate) fn stop_renewing(&self, user: i64, owner: &str) {
        self.renewals().held.remove(&(user, owner.to_owned()));
    }

    /// Tells a heartbeat that is not running any more (its task never ran, say) to be started
    /// again by the next lease taken.
    pub(crate) fn heartbeat_stopped(&self) {
        self.renewals().beating = false;
    }

    fn renewals(&self) -> std::sync::MutexGuard<'_, Renewals> {
        self.0
            .renewals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Renews leases, all in one statement (PostgreSQL) or transaction (SQLite).
    pub(crate) async fn renew(&self, leases: Vec<Renew>) -> Renewed {
        match &self.0.db.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::renew(self, leases).await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => sqlite::renew(self, leases).await,
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.0.db
    }

    /// Whether both handles share their queues (and pool).
    pub(crate) fn same(&self, other: &Gatherer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Reads a user's row, with the other reads in flight.
    pub(crate) async fn load(&self, user: i64) -> Loaded {
        match &self.0.db.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::load(self, user).await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => sqlite::load(self, user).await,
        }
    }

    /// Tries once to take a lease, with the other claims in flight (and to read the user's row
    /// after, if asked): its release (and the row) if it was taken.
    pub(crate) async fn claim(&self, claim: Claim) -> Claimed {
        match &self.0.db.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::claim(self, claim).await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => sqlite::claim(self, claim).await,
        }
    }

    /// A save over a version, with the other saves in flight.
    pub(crate) async fn save(&self, save: Save) -> Saved {
        match &self.0.db.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::save(self, save).await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => sqlite::save(self, save).await,
        }
    }

    /// Releases a lease, with the other releases in flight (a failure only makes it expire).
    async fn release(&self, lease: Held) {
        match &self.0.db.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::release(self, lease).await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => sqlite::release(self, lease).await,
        }
    }

    /// Waits for the leases dropped by this process to be released in the database, then
    /// closes the pool and every one of its connections.
    pub(crate) async fn close(&self) {
        let releases = &self.0.releases;
        loop {
            let done = releases.done.notified();
            if releases.running.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), done).await;
        }
        on_pool!(&self.0.db.pool, p => close_every_connection(p).await)
    }
}

/// Closes a pool and waits until none of its connections is left. The pool's own `close` can
/// end with one still open: a connection its upkeep of the minimum count was opening lands in
/// the idle queue after `close` emptied it. Left there, it would hold a SQLite file (and its
/// `-wal` and `-shm` files) open past the store's close, or a PostgreSQL backend past the
/// program's end. Once the pool is closed no connection is opened any more, so a few more
/// passes close what was in flight.
async fn close_every_connection<Db: sqlx::Database>(pool: &sqlx::Pool<Db>) {
    pool.close().await;
    for _ in 0..100 {
        if pool.size() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        pool.close().await;
    }
}

/// Runs each request of a batch that failed as a whole on its own (nothing of it was written),
/// so that one request's failure (a value the database refuses) stays its own.
async fn one_by_one<Req, Out>(
    gatherer: &Gatherer,
    requests: Vec<Req>,
    run: fn(Gatherer, Vec<Req>) -> Answers<Out>,
) -> Vec<Out> {
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.extend(run(gatherer.clone(), vec![request]).await);
    }
    answers
}

/// The same error for each of `n` callers.
fn each<T>(
    gatherer: &Gatherer,
    n: usize,
    action: &str,
    error: &sqlx::Error,
) -> Vec<Result<T, StoreError>> {
    (0..n)
        .map(|_| Err(gatherer.db().failure(action, error)))
        .collect()
}

/// The releases in flight.
#[derive(Default)]
struct Releases {
    running: AtomicUsize,
    done: tokio::sync::Notify,
}

/// One release in flight, counted from before its task is spawned until the task ends or is
/// dropped (even unpolled, as a runtime shuts down), so that [`Gatherer::close`] never waits
/// for a release that will not run.
struct Running(Gatherer);

impl Running {
    fn new(gatherer: Gatherer) -> Self {
        gatherer.0.releases.running.fetch_add(1, Ordering::AcqRel);
        Self(gatherer)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let releases = &self.0.0.releases;
        releases.running.fetch_sub(1, Ordering::AcqRel);
        releases.done.notify_waiters();
    }
}

/// The guard of a lease held in the database: a lease ended by a statement (a save's) is
/// forgotten; one dropped otherwise is released by a task (`Drop` can't wait), gathered with
/// the other releases in flight; without a runtime (or if the task never runs) the lease
/// simply expires.
pub(crate) struct Release {
    gatherer: Gatherer,
    pub(crate) user: i64,
    pub(crate) owner: String,
}

impl Release {
    /// The guard of a lease just claimed.
    pub(crate) fn new(gatherer: &Gatherer, user: i64, owner: String) -> Self {
        Self {
            gatherer: gatherer.clone(),
            user,
            owner,
        }
    }

    /// Whether the lease was taken through `gatherer` (its statements can end it).
    pub(crate) fn belongs_to(&self, gatherer: &Gatherer) -> bool {
        self.gatherer.same(gatherer)
    }

    /// Forgets a lease that a statement just ended: nothing is left to release or renew.
    pub(crate) fn ended(mut self) {
        self.gatherer.stop_renewing(self.user, &self.owner);
        self.owner.clear();
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // Owners are never empty: an empty one was ended by a statement.
        if self.owner.is_empty() {
            return;
        }
        self.gatherer.stop_renewing(self.user, &self.owner);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gatherer = self.gatherer.clone();
        let lease = (self.user, std::mem::take(&mut self.owner));
        let running = Running::new(gatherer.clone());
        runtime.spawn(async move {
            gatherer.release(lease).await;
            drop(running);
        });
    }
}
