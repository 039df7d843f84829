//! [`LocalLeases`]: expiring per-user leases within one process, for stores whose sessions all
//! live in one process ([`MemoryStore`](crate::MemoryStore)) and as the in-process half of
//! stores shared across processes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::contract::Lease;
use crate::credentials::UserId;

/// Per-user leases that expire: one holder per user at a time; a holder that neither releases
/// nor renews within its time to live loses the lease to the next taker.
#[derive(Default)]
pub struct LocalLeases {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    held: Mutex<HashMap<UserId, Held>>,
    released: Notify,
    next_id: AtomicU64,
}

#[derive(Clone, Copy)]
struct Held {
    id: u64,
    until: Instant,
}

/// Releases the lease on drop, unless it was taken over meanwhile.
struct Release {
    inner: Arc<Inner>,
    user: UserId,
    id: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.user).is_some_and(|h| h.id == self.id) {
            held.remove(&self.user);
        }
        drop(held);
        self.inner.released.notify_waiters();
    }
}

impl LocalLeases {
    /// No lease held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `user`'s lease for `ttl`, waiting while another holder has an unexpired one.
    pub async fn acquire(&self, user: UserId, ttl: Duration) -> Lease {
        loop {
            // Registered before looking, so a release between the look and the wait wakes us.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let now = Instant::now();
            let wait_until = {
                let mut held = self
                    .inner
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match held.get(&user) {
                    Some(h) if h.until > now => h.until,
                    _ => {
                        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                        let until = now
                            .checked_add(ttl)
                            .unwrap_or(now + Duration::from_secs(86_400 * 365));
                        held.insert(user, Held { id, until });
                        let release = Release {
                            inner: self.inner.clone(),
                            user,
                            id,
                        };
                        return Lease::new(release, Some(until));
                    }
                }
            };
            // Woken by a release, or at the holder's expiry, whichever comes first.
            let _ = tokio::time::timeout_at(wait_until.into(), released).await;
        }
    }
}

impl std::fmt::Debug for LocalLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.inner.held.lock().map(|h| h.len()).unwrap_or_default();
        f.debug_struct("LocalLeases").field("held", &held).finish()
    }
}
