//! The slow sweep: renews the refresh tokens nobody used for a long time, before their one
//! year runs out, without refreshing every user every three hours (for 10,000 users that
//! would be 80,000 refreshes a day, half of a 120-a-minute budget).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};
use withings_oauth::{Session, SessionError, UserId};

use crate::error::FleetError;
use crate::event::FleetEvent;
use crate::fleet::Fleet;
use crate::telemetry::States;

/// How long a claim of a user by a sweep lasts if its instance dies while holding it.
const CLAIM_TTL: Duration = Duration::from_secs(5);

/// What one [`Fleet::sweep_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Users whose login was due for renewal.
    pub due: usize,
    /// Logins renewed (here, or by another instance while this one waited for it).
    pub renewed: usize,
    /// Due users skipped because another instance held their lease.
    pub claimed_elsewhere: usize,
    /// Renewals that failed (the user's health says why, if the user is cached).
    pub failed: usize,
}

/// Whether a login whose access token expires (or expired) at `expires_at` has gone unused
/// for `idle` by `now`: every refresh moves its expiry three hours ahead, so this is what
/// [`Fleet::sweep_once`] renews, given its
/// [`sweep_idle_after`](crate::FleetBuilder::sweep_idle_after).
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeDelta, Utc};
/// use withings_oauth_fleet::is_idle;
///
/// let now = Utc::now();
/// let day = Duration::from_secs(86_400);
/// assert!(is_idle(now - TimeDelta::days(2), day, now));
/// assert!(!is_idle(now - TimeDelta::hours(2), day, now));
/// ```
pub fn is_idle(expires_at: DateTime<Utc>, idle: Duration, now: DateTime<Utc>) -> bool {
    chrono::TimeDelta::from_std(idle)
        .ok()
        .and_then(|idle| expires_at.checked_add_signed(idle))
        .is_some_and(|due| due <= now)
}

fn idle_since_due(expires_at: DateTime<Utc>, idle: Duration) -> bool {
    is_idle(expires_at, idle, Utc::now())
}

/// A background sweep started by [`Fleet::spawn_sweeper`]; dropping it stops the sweep.
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fleet {
    /// Renews up to `batch` logins that were not refreshed for
    /// [`sweep_idle_after`](crate::FleetBuilder::sweep_idle_after) (their access token expired
    /// that long ago), so that no refresh token reaches its one-year end unused.
    ///
    /// Instances sweeping at the same time don't renew the same user: a user whose lease
    /// another instance holds is skipped, and a renewal goes through the session, which reads
    /// the store again under the lease and adopts a login renewed meanwhile. Users cooling down
    /// or needing re-authorization are skipped. Every renewal waits for the rate limiter.
    pub async fn sweep_once(&self, batch: usize) -> Result<SweepReport, FleetError> {
        let store = self.store().clone();
        let users = store.users().await.map_err(SessionError::Store)?;
        let mut report = SweepReport::default();
        // Every stored user is read, past the batch too, to count the users by state.
        let mut states = States::default();
        for user in users {
            let Some(entry) = store.load(user).await.map_err(SessionError::Store)? else {
                continue;
            };
            let Some(credentials) = entry.credentials() else {
                states.login_required += 1;
                continue;
            };
            if credentials.expires_at() > Utc::now() {
                states.fresh += 1;
            } else {
                states.due += 1;
            }
            if report.renewed + report.failed >= batch
                || !idle_since_due(credentials.expires_at(), self.policy().idle_after)
            {
                continue;
            }
            if let Some(member) = self.cache().get(user) {
                let health = member.health();
                if health.public.needs_reauthorization
                    || health.cooling(tokio::time::Instant::now()).is_some()
                {
                    continue;
                }
            }
            report.due += 1;
            // The claim: a lease another instance holds means it is renewing the user. It is
            // let go at once, since the session takes the lease itself for the refresh; a user
            // claimed by two sweeps in between is still renewed once (see above).
            match tokio::time::timeout(self.policy().claim_wait, store.lease(user, CLAIM_TTL)).await
            {
                Err(_) => {
                    debug!(user_id = %user, "claimed by another instance; skipped");
                    report.claimed_elsewhere += 1;
                    continue;
                }
                Ok(Err(e)) => {
                    warn!(user_id = %user, error = %e, "could not claim the user");
                    report.failed += 1;
                    continue;
                }
                Ok(Ok(lease)) => drop(lease),
            }
            match self.renew(user).await {
                Ok(()) => {
                    report.renewed += 1;
                    states.due -= 1;
                    states.fresh += 1;
                }
                Err(e) => {
                    warn!(user_id = %user, error = %e, "renewing an idle login failed");
                    report.failed += 1;
                }
            }
        }
        if report.due > 0 {
            info!(?report, "sweep done");
        }
        crate::telemetry::swept(&report, states);
        Ok(report)
    }

    /// Runs [`sweep_once`](Self::sweep_once) every `every`, until the returned [`Sweeper`] is
    /// dropped. Needs a tokio runtime.
    pub fn spawn_sweeper(&self, every: Duration, batch: usize) -> Sweeper {
        let fleet = self.clone();
        Sweeper {
            task: tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = fleet.sweep_once(batch).await {
                        warn!(error = %e, "sweep failed");
                    }
                }
            }),
        }
    }

    /// Refreshes one idle user: through the cached session if there is one, otherwise a
    /// session of its own (an idle user is not worth a place in the cache).
    async fn renew(&self, user: UserId) -> Result<(), FleetError> {
        let cached = self.cache().get(user);
        let session = match &cached {
            Some(member) => self.session(user, member).await?,
            None => Session::restore(self.client(), self.store().clone(), user)
                .await?
                .with_margin(self.policy().margin),
        };
        let before = session.status().expires_at;
        // Restored after another instance renewed the login: nothing left to do. (Renewed
        // after the restore, the session finds it under the lease and adopts it.)
        if !idle_since_due(before, self.policy().idle_after) {
            return Ok(());
        }
        match session.refresh().await {
            Ok(()) => {
                let after = session.status().expires_at;
                if let Some(member) = &cached {
                    member.health().succeeded(after != before);
                }
                if after != before {
                    let _ = self.events().send(FleetEvent::Refreshed {
                        user,
                        expires_at: after,
                    });
                }
                Ok(())
            }
            Err(SessionError::LoginRequired { .. }) => Err(match &cached {
                Some(member) => self.reauthorize(user, member),
                None => {
                    let _ = self
                        .events()
                        .send(FleetEvent::NeedsReauthorization { user });
                    FleetError::NeedsReauthorization { user }
                }
            }),
            Err(SessionError::Api(api)) => {
                if matches!(api, withings_oauth::ApiError::RateLimited { .. }) {
                    self.limiter().rate_limited();
                }
                if let Some(member) = &cached {
                    member.health().failed(self.policy().cooldown);
                }
                Err(SessionError::Api(api).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
