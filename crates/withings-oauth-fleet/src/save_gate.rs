//! The instance's refreshes held back while its store fails to save: a pair Withings issued
//! that the store does not take costs the user's login once another instance refreshes from
//! the stored, rotated token (its session saves it again in the background, but only a store
//! that works again can take it). After a failed save, no refresh goes for a pause; then one
//! goes alone, and the others follow once it got its token.
//!
//! Callers are turned away before their refresh starts ([`SaveGate::enter`]); a refresh
//! already under way, waiting for the rate limiter when the save failed, waits out the pause
//! in the client's hook before it is sent ([`request_hook`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use withings_oauth::{BeforeRequest, RequestKind};

/// How long refreshes wait after a save failed, before one tries alone.
pub(crate) const PAUSE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct SaveGate {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the last save failed, until a refresh succeeds again.
    failed_at: Option<Instant>,
    /// A refresh tries alone after the pause.
    probing: bool,
}

/// Whether a refresh may go: [`SaveGate::enter`].
pub(crate) enum Entry {
    /// The store saves: go.
    Open,
    /// The pause is over and this caller tries alone: [`SaveGate::leave`] after.
    Probe,
    /// Wait this long.
    Closed(Duration),
}

impl SaveGate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a refresh may go now.
    pub(crate) fn enter(&self) -> Entry {
        let mut state = self.state();
        let Some(failed_at) = state.failed_at else {
            return Entry::Open;
        };
        let left = (failed_at + PAUSE).saturating_duration_since(Instant::now());
        if !left.is_zero() {
            return Entry::Closed(left);
        }
        if state.probing {
            return Entry::Closed(PAUSE);
        }
        state.probing = true;
        Entry::Probe
    }

    /// How long a refresh request must still wait: the rest of the pause after the last
    /// failed save, if one is on. A refresh let through after the pause (the caller trying
    /// alone) is not held.
    pub(crate) fn held_back(&self) -> Option<Duration> {
        let failed_at = self.state().failed_at?;
        let left = (failed_at + PAUSE).saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// A refreshed pair was not saved: refreshes wait again.
    pub(crate) fn save_failed(&self) {
        let mut state = self.state();
        state.failed_at = Some(Instant::now());
        state.probing = false;
    }

    /// A refresh through the gate ended: open if it got its token (`saved`), otherwise the
    /// next caller after the pause tries.
    pub(crate) fn leave(&self, saved: bool) {
        let mut state = self.state();
        state.probing = false;
        if saved {
            state.failed_at = None;
        }
    }
}

/// The fleet's hook in front of every request: `turn` (the rate limiter's), then, for a
/// refresh, the rest of a pause that began while it waited. Such a refresh passed the gate
/// before a save failed; sent now, it would spend a pair the store can't keep either. While
/// it waits, the term of the lease it goes under may end, and then nothing is sent.
pub(crate) fn request_hook(turn: BeforeRequest, saves: Arc<SaveGate>) -> BeforeRequest {
    Arc::new(move |kind| {
        let turn = turn(kind);
        let saves = saves.clone();
        Box::pin(async move {
            turn.await;
            if kind == RequestKind::Refresh {
                while let Some(left) = saves.held_back() {
                    tokio::time::sleep(left).await;
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_save_one_refresh_tries_after_the_pause_and_opens_the_gate() {
        let gate = SaveGate::default();
        assert!(matches!(gate.enter(), Entry::Open));
        gate.save_failed();
        assert!(matches!(gate.enter(), Entry::Closed(left) if left == PAUSE));
        tokio::time::advance(PAUSE).await;
        assert!(matches!(gate.enter(), Entry::Probe));
        assert!(
            matches!(gate.enter(), Entry::Closed(_)),
            "one probe at a time"
        );
        gate.leave(false);
        assert!(
            matches!(gate.enter(), Entry::Probe),
            "a failed probe lets the next try"
        );
        gate.save_failed();
        assert!(
            matches!(gate.enter(), Entry::Closed(_)),
            "a probe whose save failed closes it"
        );
        tokio::time::advance(PAUSE).await;
        assert!(matches!(gate.enter(), Entry::Probe));
        gate.leave(true);
        assert!(matches!(gate.enter(), Entry::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_whose_turn_came_during_the_pause_waits_it_out_and_a_data_call_does_not() {
        let saves = Arc::new(SaveGate::default());
        let no_wait: BeforeRequest = Arc::new(|_| Box::pin(async {}));
        let hook = request_hook(no_wait, saves.clone());
        let sent_at = |kind| {
            let request = hook(kind);
            tokio::spawn(async move {
                request.await;
                Instant::now()
            })
        };
        let start = Instant::now();
        assert_eq!(
            sent_at(RequestKind::Refresh).await.unwrap(),
            start,
            "no pause on"
        );

        saves.save_failed();
        tokio::time::advance(Duration::from_millis(500)).await;
        let refresh = sent_at(RequestKind::Refresh);
        let data = sent_at(RequestKind::Data);
        assert_eq!(data.await.unwrap() - start, Duration::from_millis(500));
        assert_eq!(
            refresh.await.unwrap() - start,
            PAUSE,
            "held to the pause's end"
        );

        // The caller let through after the pause, to try alone, is not held.
        assert!(matches!(saves.enter(), Entry::Probe));
        let probe = sent_at(RequestKind::Refresh);
        assert_eq!(probe.await.unwrap() - start, PAUSE);
    }
}
