//! [`LeaseTerm`]: when a refresh lease ends, as its holder knows it. A store that renews its
//! leases while their refresh runs moves the end later; one that finds a lease taken over
//! marks it lost. The fence lives here too: a refresh request goes only with a timeout that
//! ends before the lease does.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The shortest timeout a refresh request is sent with. With less time left on its lease, the
/// holder waits for a renewal first, and gives the attempt up if none comes.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// What a refresh request's deadline keeps clear of its lease's end: a timer fires a little
/// late on a busy runtime, and the answer still has to be taken in.
pub const LEASE_SLACK: Duration = Duration::from_millis(250);

/// `end_nanos` of a term that never ends.
const NEVER: u64 = u64::MAX;

/// When a lease ends, shared by its holder and the store that keeps it: the store moves the
/// end later as it renews the lease ([`renew`](Self::renew)), or marks the lease lost when it
/// finds it taken over ([`lose`](Self::lose)); the holder reads what is left
/// ([`left`](Self::left)) right before it sends a refresh request. Clones share the term.
///
/// ```
/// use std::time::{Duration, Instant};
/// use withings_oauth::LeaseTerm;
///
/// let term = LeaseTerm::until(Instant::now() + Duration::from_secs(2));
/// assert!(term.left().unwrap() <= Duration::from_secs(2));
/// term.renew(Instant::now() + Duration::from_secs(10)); // the store renewed it
/// assert!(term.left().unwrap() > Duration::from_secs(2));
/// term.renew(Instant::now()); // an end is never moved earlier
/// assert!(term.left().unwrap() > Duration::from_secs(2));
/// term.lose(); // taken over: nothing is left, for good
/// assert_eq!(term.left(), Some(Duration::ZERO));
/// assert!(term.is_lost());
/// ```
#[derive(Clone)]
pub struct LeaseTerm {
    inner: Arc<Inner>,
}

struct Inner {
    /// What `end_nanos` counts from.
    base: Instant,
    /// The end, in nanoseconds after `base`; [`NEVER`] for a term without an end.
    end_nanos: AtomicU64,
    lost: AtomicBool,
    /// Woken by each renewal, and when the lease is lost.
    changed: Notify,
}

impl LeaseTerm {
    /// A term that ends at `end`, unless renewed.
    pub fn until(end: Instant) -> Self {
        let base = Instant::now().min(end);
        Self::new(base, nanos(end.saturating_duration_since(base)))
    }

    /// A term without an end: a lease that lasts as long as its holder (an OS lock, say).
    pub fn unending() -> Self {
        Self::new(Instant::now(), NEVER)
    }

    fn new(base: Instant, end_nanos: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                base,
                end_nanos: AtomicU64::new(end_nanos),
                lost: AtomicBool::new(false),
                changed: Notify::new(),
            }),
        }
    }

    /// Moves the end to `end` if that is later (a renewal the store made), unless the lease
    /// is lost; wakes a holder waiting for a renewal.
    pub fn renew(&self, end: Instant) {
        if self.is_lost() {
            return;
        }
        let end = nanos(end.saturating_duration_since(self.inner.base));
        self.inner.end_nanos.fetch_max(end, Ordering::AcqRel);
        self.inner.changed.notify_waiters();
    }

    /// Marks the lease lost (another holder took it over, or it expired before a renewal
    /// reached the store): nothing is left on it from now on.
    pub fn lose(&self) {
        self.inner.lost.store(true, Ordering::Release);
        self.inner.changed.notify_waiters();
    }

    /// Whether the store found the lease taken over (or expired) and marked it lost.
    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
    }

    /// How long the lease is held still: `None` if it never ends, zero once it ended or was
    /// lost.
    pub fn left(&self) -> Option<Duration> {
        if self.is_lost() {
            return Some(Duration::ZERO);
        }
        match self.inner.end_nanos.load(Ordering::Acquire) {
            NEVER => None,
            end => {
                let end = self.inner.base + Duration::from_nanos(end);
                Some(end.saturating_duration_since(Instant::now()))
            }
        }
    }

    /// When the lease ends, if it does (as of now: a renewal moves it).
    pub fn end(&self) -> Option<Instant> {
        match self.inner.end_nanos.load(Ordering::Acquire) {
            NEVER => None,
            end => Some(self.inner.base + Duration::from_nanos(end)),
        }
    }

    /// The timeout a refresh request may be sent with under this lease: the `wanted` one (the
    /// client's), cut to end [`LEASE_SLACK`] before the lease does. With less than
    /// [`MIN_REQUEST_TIMEOUT`] to give, waits for a renewal (at most until the lease ends).
    /// `None` if the lease never ends; an error if it ended, or was lost, before a request
    /// could go.
    ///
    /// The request must leave right after: a holder that is paused between this check and
    /// the request leaving (a stopped process) is not fenced.
    pub(crate) async fn request_timeout(&self, wanted: Duration) -> Result<Duration, LeaseEnded> {
        loop {
            // Registered before looking, so that a renewal between the look and the wait
            // wakes this call.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_lost() {
                return Err(LeaseEnded::Lost);
            }
            let Some(left) = self.left() else {
                return Ok(wanted);
            };
            let budget = left.saturating_sub(LEASE_SLACK);
            if budget >= MIN_REQUEST_TIMEOUT.min(wanted) {
                return Ok(budget.min(wanted));
            }
            if left.is_zero() {
                return Err(LeaseEnded::Expired);
            }
            // Renewed (look again), lost, or ended (the next look says so).
            let _ = tokio::time::timeout(left, changed).await;
        }
    }
}

/// Why a refresh request was not sent under its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnded {
    /// The store found the lease taken over.
    Lost,
    /// Too little was left and no renewal came before it ended.
    Expired,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(NEVER - 1)
        .min(NEVER - 1)
}

impl fmt::Debug for LeaseTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseTerm")
            .field("left", &self.left())
            .field("lost", &self.is_lost())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_ends_before_its_lease_and_waits_for_a_renewal_when_too_little_is_left() {
        let wanted = Duration::from_secs(30);
        assert_eq!(
            LeaseTerm::unending().request_timeout(wanted).await,
            Ok(wanted)
        );
        let term = LeaseTerm::until(Instant::now() + Duration::from_secs(2));
        let timeout = term.request_timeout(wanted).await.unwrap();
        assert!(timeout < Duration::from_secs(2) - LEASE_SLACK + Duration::from_millis(1));
        assert!(timeout + LEASE_SLACK <= term.left().unwrap() + Duration::from_millis(1));
        let long = LeaseTerm::until(Instant::now() + Duration::from_secs(90));
        assert_eq!(long.request_timeout(wanted).await, Ok(wanted));

        // Too little left: a renewal lets the request go.
        let short = LeaseTerm::until(Instant::now() + Duration::from_millis(600));
        let renewer = short.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            renewer.renew(Instant::now() + Duration::from_secs(2));
        });
        let timeout = short.request_timeout(wanted).await.unwrap();
        assert!(timeout >= MIN_REQUEST_TIMEOUT);

        // No renewal: the attempt is given up once the lease ends.
        let ending = LeaseTerm::until(Instant::now() + Duration::from_millis(600));
        assert_eq!(
            ending.request_timeout(wanted).await,
            Err(LeaseEnded::Expired)
        );
        let lost = LeaseTerm::until(Instant::now() + Duration::from_secs(60));
        lost.lose();
        lost.renew(Instant::now() + Duration::from_secs(120));
        assert_eq!(lost.request_timeout(wanted).await, Err(LeaseEnded::Lost));
    }
}
