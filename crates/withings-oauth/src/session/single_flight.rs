//! One refresh at a time: any number of callers that find the token stale cause one refresh;
//! the others wait for it and all take its token at once.
//!
//! It guarantees two things. A refresh token is spent once: whoever takes the slot looks again
//! before refreshing, since a refresh may have ended between the first look and the lock. And
//! no caller hangs: an attempt ends (waking the waiters) even if the refresh panics or fails.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use chrono::TimeDelta;
use tracing::info_span;
use tracing::{Instrument, debug};

use super::{Session, SessionError, Shared, Slot};
use crate::secret::AccessToken;
use crate::telemetry::{self, RefreshOutcome};
use crate::time::Clock;

/// Ends a refresh attempt when dropped: records its failure, counts it and wakes the waiters.
pub(super) struct AttemptEnd {
    shared: Arc<Shared>,
    failure: Option<String>,
}

impl Drop for AttemptEnd {
    fn drop(&mut self) {
        if let Some(failure) = self.failure.take() {
            *self
                .shared
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = failure;
        }
        self.shared.attempts.fetch_add(1, Ordering::AcqRel);
        self.shared.finished.notify_waiters();
    }
}

impl Session {
    /// Refreshes unless a refresh published after generation `seen` (one this caller waited
    /// for). Without `force`, also skips it if the published token is still usable.
    pub(super) async fn refresh_unless_newer(
        &self,
        seen: u64,
        force: bool,
    ) -> Result<(AccessToken, u64), SessionError> {
        let attempts = self.shared.attempts.load(Ordering::Acquire);
        let mut woken = false;
        loop {
            if woken && let Some(outcome) = self.outcome_since(seen, force, attempts, false) {
                return outcome;
            }
            // Registered before looking, so that a refresh ending between the look and the
            // wait still wakes this call.
            let finished = self.shared.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if let Some(outcome) = self.outcome_since(seen, force, attempts, false) {
                return outcome;
            }
            // Double-checked refresh: whoever takes the slot lock looks again before
            // refreshing, because a refresh may have ended between the look above and the
            // lock; refreshing twice would spend a rotated refresh token and break the chain.
            // The other callers don't queue on the lock: they wait for the refresh to end and
            // all take its token at once.
            let Ok(slot) = self.shared.slot.clone().try_lock_owned() else {
                finished.await;
                woken = true;
                continue;
            };
            // A slot holding nothing usable (a dead login, or one lost to a panic) and a pair
            // whose save failed both go to the store, whatever was published.
            let recheck = slot.unsaved || slot.authorized.is_none();
            if let Some(outcome) = self.outcome_since(seen, force, attempts, recheck) {
                return outcome;
            }
            // Spawned so that a caller giving up (a timeout, a dropped request) can't drop a
            // refreshed pair between Withings' answer and the save.
            let task = tokio::spawn(self.shared.clone().run_attempt(
                slot,
                self.margin,
                self.clock.clone(),
            ));
            return match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(SessionError::Shutdown),
            };
        }
    }

    /// What a caller that saw generation `seen` and attempt count `attempts` gets without
    /// refreshing, if anything. With `recheck` (the slot holds a pair that is not published, or
    /// nothing after a panic), the caller goes to the store whatever was published.
    fn outcome_since(
        &self,
        seen: u64,
        force: bool,
        attempts: u64,
        recheck: bool,
    ) -> Option<Result<(AccessToken, u64), SessionError>> {
        let published = self.shared.read();
        if published.login_required {
            return Some(Err(SessionError::LoginRequired {
                user: self.shared.user,
            }));
        }
        if recheck {
            return None;
        }
        if published.generation != seen || (!force && self.usable(&published)) {
            return Some(Ok((published.token.clone(), published.generation)));
        }
        if self.shared.attempts.load(Ordering::Acquire) != attempts {
            // The refresh this call waited for failed; its caller has the details.
            return Some(Err(SessionError::ConcurrentRefreshFailed {
                message: self.shared.last_failure(),
            }));
        }
        None
    }
}

impl Shared {
    /// The refresh itself, with the slot lock held. Counts as one attempt.
    async fn run_attempt(
        self: Arc<Self>,
        mut slot: tokio::sync::OwnedMutexGuard<Slot>,
        margin: TimeDelta,
        clock: Arc<dyn Clock>,
    ) -> Result<(AccessToken, u64), SessionError> {
        let span = info_span!("withings_oauth.session.refresh", user_id = %self.user);
        // Ends the attempt even if the refresh panics, so that waiting callers never hang.
        let mut end = AttemptEnd {
            shared: self.clone(),
            failure: Some("the refresh stopped unexpectedly".to_owned()),
        };
        let started = std::time::Instant::now();
        slot.outcome = None;
        let result = self
            .refresh_with_store(&mut slot, margin, clock.as_ref())
            .instrument(span)
            .await;
        // The slot tells an adoption from a refresh, and a rejected refresh token from a
        // login the store ended; the error tells the rest.
        let outcome = match (&result, slot.outcome.take()) {
            (Ok(_), outcome) => outcome.unwrap_or(RefreshOutcome::Ok),
            (
                Err(SessionError::LoginRequired { .. }),
                Some(RefreshOutcome::InvalidRefreshToken),
            ) => RefreshOutcome::InvalidRefreshToken,
            (Err(e), _) => RefreshOutcome::of_error(e),
        };
        telemetry::refreshed(outcome, started.elapsed());
        end.failure = result.as_ref().err().map(ToString::to_string);
        // A pair Withings issued that the store did not take: saved again in the background,
        // so that it is not left to the next caller, who may come only after the lease lapsed
        // and another program refreshed from the stored, rotated token.
        if slot.unsaved && !slot.saving_again {
            slot.saving_again = true;
            tokio::spawn(self.clone().save_again(margin, clock));
        }
        // The slot is released before the waiters are woken, so they can take it at once.
        drop(slot);
        drop(end);
        result
    }

    /// Saves the slot's unsaved pair again, every quarter second for 10 s, then every second, until
    /// the store takes it or a newer entry wins (or the login ended): each try is an attempt
    /// as a caller's would be, waking the callers that wait. It holds the session while it
    /// runs, so that a pair Withings issued outlives the last clone of the session.
    ///
    /// Boxed: it runs attempts, which start it.
    fn save_again(
        self: Arc<Self>,
        margin: TimeDelta,
        clock: Arc<dyn Clock>,
    ) -> crate::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let mut pause = SAVE_AGAIN_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                // Often at first: a store that comes back (a database restarted) must take the
                // pair before the holder's lease runs out and another program may take it.
                pause = if started.elapsed() < SAVE_AGAIN_OFTEN_FOR {
                    SAVE_AGAIN_OFTEN
                } else {
                    SAVE_AGAIN_EVERY
                };
                let mut slot = self.slot.clone().lock_owned().await;
                if !slot.unsaved {
                    // Saved by a caller, or given way to a newer entry. Decided with the slot
                    // held, as is the start of a new one: a later failed save starts another.
                    slot.saving_again = false;
                    return;
                }
                if let Err(e) = self.clone().run_attempt(slot, margin, clock.clone()).await {
                    debug!(error = %e, "the refreshed pair is still not saved; trying again");
                }
            }
        })
    }
}

/// The pause before the first background save of a pair whose save failed.
const SAVE_AGAIN_FIRST: Duration = Duration::from_millis(100);
/// The pause between background saves during the first seconds after the failure.
const SAVE_AGAIN_OFTEN: Duration = Duration::from_millis(250);
/// How long background saves are tried every [`SAVE_AGAIN_OFTEN`]: longer than a database's
/// restart, and than the lease a store keeps for a holder that can't renew it.
const SAVE_AGAIN_OFTEN_FOR: Duration = Duration::from_secs(10);
/// The pause between background saves after that.
const SAVE_AGAIN_EVERY: Duration = Duration::from_secs(1);
