//! The instance's refreshes held back while its store fails to save: a pair Withings issued
//! that the store does not take costs the user's login once another instance refreshes from
//! the stored, rotated token (its session saves it again in the background, but only a store
//! that works again can take it). After a failed save, no refresh goes for a pause; then one
//! goes alone, and the others follow once it got its token.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

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
}
