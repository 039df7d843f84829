//! The instance's refreshes held back while its store fails to save: a pair Withings issued
//! that the store does not take costs the user's login once another instance refreshes from
//! the stored, rotated token (its session saves it again in the background, but only a store
//! that works again can take it). After a failed save, no refresh request goes for a pause;
//! then one goes alone, and the others follow once a refresh got its token again.
//!
//! Two places hold refreshes back. Callers are turned away before a refresh starts
//! ([`SaveGate::refused`]). A refresh already under way when the save failed (waiting for the
//! rate limiter, say) waits in the client's hook ([`request_hook`]): that is where the one
//! that tries alone is let through ([`SaveGate::enter`]), since only there is a refresh about
//! to be sent. A refresh that waits there past its lease's term is not sent at all.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use withings_oauth::{BeforeRequest, RequestKind};

/// How long refreshes wait after a save failed, before one tries alone; and how long the one
/// that tries alone has before another may.
pub(crate) const PAUSE: Duration = Duration::from_secs(2);

/// How often a refresh held in the hook looks whether it may go.
const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct SaveGate {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the last save failed, until a refresh gets its token again.
    failed_at: Option<Instant>,
    /// When the refresh trying alone after the pause was let through.
    probe_at: Option<Instant>,
}

impl State {
    /// How long until a refresh request may go (`None`: now), without letting one through.
    fn wait(&self, now: Instant) -> Option<Duration> {
        let failed_at = self.failed_at?;
        let pause = (failed_at + PAUSE).saturating_duration_since(now);
        let probe = self.probe_at.map_or(Duration::ZERO, |at| {
            (at + PAUSE).saturating_duration_since(now)
        });
        let wait = pause.max(probe);
        (!wait.is_zero()).then_some(wait)
    }
}

/// Whether a refresh request may be sent: [`SaveGate::enter`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The store saves: go.
    Open,
    /// The pause is over and this refresh tries alone.
    Probe,
    /// Not yet: look again within this long.
    Closed(Duration),
}

impl SaveGate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a caller is turned away before its refresh starts, and for how long: during
    /// the pause, and while a refresh tries alone. Otherwise it goes on, and the hook lets
    /// one through.
    pub(crate) fn refused(&self) -> Option<Duration> {
        self.state().wait(Instant::now())
    }

    /// Whether a refresh request may be sent now: always while the store saves; after a
    /// failed save, one when the pause is over, then another only once that one has had a
    /// pause's time.
    pub(crate) fn enter(&self) -> Entry {
        let mut state = self.state();
        if state.failed_at.is_none() {
            return Entry::Open;
        }
        let now = Instant::now();
        match state.wait(now) {
            Some(wait) => Entry::Closed(wait),
            None => {
                state.probe_at = Some(now);
                Entry::Probe
            }
        }
    }

    /// A refreshed pair was not saved: refresh requests wait again.
    pub(crate) fn save_failed(&self) {
        let mut state = self.state();
        state.failed_at = Some(Instant::now());
        state.probe_at = None;
    }

    /// A refresh got its token (the store took its pair, or held a newer one): open.
    pub(crate) fn saved(&self) {
        let mut state = self.state();
        state.failed_at = None;
        state.probe_at = None;
    }
}

/// The fleet's hook in front of every request: `turn` (the rate limiter's), then, for a
/// refresh, [`SaveGate::enter`] until it may go.
pub(crate) fn request_hook(turn: BeforeRequest, saves: Arc<SaveGate>) -> BeforeRequest {
    Arc::new(move |kind| {
        let turn = turn(kind);
        let saves = saves.clone();
        Box::pin(async move {
            turn.await;
            if kind == RequestKind::Refresh {
                while let Entry::Closed(wait) = saves.enter() {
                    tokio::time::sleep(wait.min(POLL)).await;
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_save_one_refresh_tries_after_the_pause_and_a_token_opens_the_gate() {
        let gate = SaveGate::default();
        assert_eq!(gate.enter(), Entry::Open);
        assert_eq!(gate.refused(), None);
        gate.save_failed();
        assert_eq!(gate.enter(), Entry::Closed(PAUSE));
        assert_eq!(gate.refused(), Some(PAUSE));
        tokio::time::advance(PAUSE).await;
        assert_eq!(gate.refused(), None, "callers go on to the hook");
        assert_eq!(gate.enter(), Entry::Probe);
        assert_eq!(gate.enter(), Entry::Closed(PAUSE), "one tries at a time");
        assert_eq!(gate.refused(), Some(PAUSE));
        tokio::time::advance(PAUSE).await;
        assert_eq!(
            gate.enter(),
            Entry::Probe,
            "one that told nothing in a pause's time lets the next try"
        );
        gate.save_failed();
        assert_eq!(
            gate.enter(),
            Entry::Closed(PAUSE),
            "one whose save failed starts a pause"
        );
        tokio::time::advance(PAUSE).await;
        assert_eq!(gate.enter(), Entry::Probe);
        gate.saved();
        assert_eq!(gate.enter(), Entry::Open);
        assert_eq!(gate.refused(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_held_in_the_hook_goes_alone_after_the_pause_and_a_data_call_never_waits() {
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
        let refreshes = [sent_at(RequestKind::Refresh), sent_at(RequestKind::Refresh)];
        let data = sent_at(RequestKind::Data);
        assert_eq!(data.await.unwrap() - start, Duration::from_millis(500));
        let finished = |refreshes: &[tokio::task::JoinHandle<Instant>; 2]| {
            refreshes.iter().filter(|r| r.is_finished()).count()
        };
        tokio::time::sleep_until(start + PAUSE - Duration::from_millis(1)).await;
        assert_eq!(finished(&refreshes), 0, "held to the pause's end");
        tokio::time::sleep_until(start + PAUSE + Duration::from_millis(1)).await;
        assert_eq!(finished(&refreshes), 1, "one goes alone");
        // The other waits for what that one's save tells.
        tokio::time::sleep_until(start + 3 * PAUSE / 2).await;
        assert_eq!(finished(&refreshes), 1);
        saves.saved();
        let [a, b] = refreshes;
        let last = a.await.unwrap().max(b.await.unwrap()) - start;
        assert!(
            last >= 3 * PAUSE / 2 && last <= 3 * PAUSE / 2 + POLL,
            "{last:?}"
        );
    }
}
