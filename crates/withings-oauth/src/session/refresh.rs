//! The refresh of a session against its store, with the slot held: take the user's lease,
//! re-read the entry, adopt a newer one, or refresh and save with compare-and-swap before
//! publishing.
//!
//! The rules that keep the newest login (see the store contract on
//! [`TokenStore`](crate::TokenStore)):
//! - **Never downgrade.** A stored entry is adopted only if its version is newer than the one
//!   the session holds; an older one is a stale read and is ignored.
//! - **Never overwrite.** Every write expects the version the session started from. If another
//!   program wrote meanwhile (a new login, a logout, its own refresh), the write is refused, the
//!   session's pair is dropped unused, and what is stored wins.
//! - **A rejected refresh token is checked first.** Before recording "login required", the
//!   store is read again: a newer entry means another program refreshed (or logged in), not
//!   that the grant is dead.

use chrono::{TimeDelta, Utc};
use tracing::{debug, info, warn};

use super::{SessionError, Shared, Slot, check_owner};
use crate::api::error::ApiError;
use crate::login::Authorized;
use crate::secret::AccessToken;
use crate::store::{DEFAULT_LEASE_TTL, Expected, Lease, StoreError, StoredEntry, VersionedEntry};
use crate::telemetry::RefreshOutcome;
use crate::time::Clock;

/// What to do with an entry read from the store.
enum Reading {
    /// The session's own pair is current (or the store served a stale, older entry).
    Ours,
    /// A newer entry was adopted and is fresh: published.
    Adopted((AccessToken, u64)),
    /// A newer entry was adopted but is due for a refresh itself.
    AdoptedStale,
}

impl Shared {
    /// One refresh attempt: callers come here when the published token is due, or to force a
    /// refresh (an explicit one, or a token Withings called invalid).
    pub(super) async fn refresh_with_store(
        &self,
        slot: &mut Slot,
        margin: TimeDelta,
        clock: &dyn Clock,
    ) -> Result<(AccessToken, u64), SessionError> {
        /// Leases lost before the request could go, taken again before giving up.
        const HELD_BACK: usize = 3;
        let mut held_back = 0;
        loop {
            match self.refresh_under_lease(slot, margin, clock).await {
                // Not sent, nothing spent: another program may have taken the lease over and
                // refreshed; the lease taken again reads what it stored.
                Err(SessionError::Api(ApiError::LeaseEnded)) if held_back < HELD_BACK => {
                    held_back += 1;
                    info!("the refresh lease ended before the request could go; taking it again");
                }
                outcome => return outcome,
            }
        }
    }

    /// Takes the lease, reads the store under it, and refreshes unless the store holds a newer
    /// login: the request leaves only while the lease holds, with a timeout that ends before
    /// it does.
    async fn refresh_under_lease(
        &self,
        slot: &mut Slot,
        margin: TimeDelta,
        clock: &dyn Clock,
    ) -> Result<(AccessToken, u64), SessionError> {
        let user = self.user;
        // Across processes: the lease holder refreshes; the others find its result below.
        let (lease, stored) = self
            .store
            .lease_and_load(user, DEFAULT_LEASE_TTL)
            .await
            .map_err(SessionError::Store)?;
        match self.read_entry(slot, stored, margin, clock)? {
            // Even a forced refresh stops here: the adopted pair is newer than the one that was
            // to be refreshed (or that Withings called invalid).
            Reading::Adopted(published) => {
                slot.outcome = Some(RefreshOutcome::Adopted);
                return Ok(published);
            }
            Reading::AdoptedStale | Reading::Ours => {}
        }
        if slot.unsaved {
            // A refreshed pair whose save failed earlier, and the store has not moved on.
            return self.save_and_publish(slot, lease).await;
        }
        // Expiry is computed on the system clock; shift it onto this session's clock. Read
        // before the login leaves the slot, so that a panicking clock can't take it along.
        let skew = clock.now().signed_duration_since(Utc::now());
        let (Some(authorized), Some(base)) = (slot.authorized.take(), slot.version) else {
            return Err(SessionError::LoginRequired { user });
        };
        // Fenced: a holder paused past its lease (a stopped process, a long garbage
        // collection of the host) finds it lost or expired here and sends nothing, so a
        // refresh token another holder rotated meanwhile is never presented again.
        match crate::login::refresh_under(authorized, Some(lease.term())).await {
            Ok(fresh) => {
                let client = fresh.client().clone();
                let mut credentials = fresh.into_credentials();
                credentials.expires_at = credentials
                    .expires_at
                    .checked_add_signed(skew)
                    .unwrap_or(credentials.expires_at);
                slot.authorized = Some(Authorized::from_credentials(&client, credentials));
                slot.unsaved = true;
                if lease.is_expired() {
                    warn!("the refresh outlived its lease; the save checks the store's version");
                }
                self.save_and_publish(slot, lease).await
            }
            Err(e) if e.login_required() => {
                slot.version = Some(base);
                self.after_rejected_refresh_token(slot, base).await
            }
            Err(e) => {
                let (source, previous) = e.into_parts();
                slot.authorized = previous;
                Err(SessionError::Api(source))
            }
        }
    }

    /// Takes in what the store holds for the user: adopts a newer entry, ignores an older one,
    /// and ends the login if the store says so.
    fn read_entry(
        &self,
        slot: &mut Slot,
        stored: Option<VersionedEntry>,
        margin: TimeDelta,
        clock: &dyn Clock,
    ) -> Result<Reading, SessionError> {
        let user = self.user;
        let Some(stored) = stored else {
            // Logged out by another program: a refresh and a save would log the user back in
            // behind their back.
            info!("the store no longer has the user: logged out elsewhere");
            return Err(self.end_login(slot));
        };
        let newer =
            slot.version.is_none_or(|ours| stored.version > ours) || slot.authorized.is_none();
        if !newer {
            if stored.version < slot.version.unwrap_or(stored.version) {
                debug!(stored = %stored.version, "the store served an older entry; ignored");
            }
            return match stored.entry {
                StoredEntry::LoginRequired
                    if stored.version == slot.version.unwrap_or(stored.version) =>
                {
                    Err(self.end_login(slot))
                }
                _ => Ok(Reading::Ours),
            };
        }
        let credentials = match stored.entry {
            StoredEntry::LoginRequired => return Err(self.end_login(slot)),
            StoredEntry::Credentials(credentials) => credentials,
        };
        check_owner(user, &credentials)?;
        if slot.unsaved {
            warn!(
                "another program stored a newer login while ours was unsaved; ours is dropped unused"
            );
        }
        let adopted = Authorized::from_credentials(&self.client, credentials);
        let fresh = !adopted.expires_within(margin, clock.now());
        let published = fresh.then(|| self.publish(adopted.credentials(), false));
        slot.authorized = Some(adopted);
        slot.version = Some(stored.version);
        slot.unsaved = false;
        Ok(match published {
            Some(published) => {
                info!(version = %stored.version, "adopted the login another program stored");
                Reading::Adopted(published)
            }
            None => Reading::AdoptedStale,
        })
    }

    /// Withings rejected the refresh token of version `base`. If the store moved on, another
    /// program refreshed or logged in: adopt its entry. Otherwise record the dead login, for
    /// that version only.
    async fn after_rejected_refresh_token(
        &self,
        slot: &mut Slot,
        base: crate::store::Version,
    ) -> Result<(AccessToken, u64), SessionError> {
        let user = self.user;
        slot.outcome = Some(RefreshOutcome::InvalidRefreshToken);
        let stored = self.store.load(user).await.map_err(SessionError::Store)?;
        if let Some(entry) = stored.filter(|e| e.version > base) {
            info!("the refresh token was rotated by another program; its login is adopted");
            slot.outcome = Some(RefreshOutcome::ConflictAdopted);
            return self.adopt(slot, entry);
        }
        match self
            .store
            .mark_login_required(user, Expected::Version(base))
            .await
        {
            Ok(_) => {
                warn!("refresh token rejected: the user must log in again");
                Err(self.end_login(slot))
            }
            Err(StoreError::Conflict(conflict)) => match conflict.current {
                Some(entry) if entry.version > base => {
                    slot.outcome = Some(RefreshOutcome::ConflictAdopted);
                    self.adopt(slot, entry)
                }
                _ => Err(self.end_login(slot)),
            },
            Err(store_error) => {
                warn!(error = %store_error, "could not record in the store that the user must log in again");
                Err(self.end_login(slot))
            }
        }
    }

    /// Adopts `entry` (newer than what the session holds) whatever its expiry: another program
    /// just wrote it.
    fn adopt(
        &self,
        slot: &mut Slot,
        entry: VersionedEntry,
    ) -> Result<(AccessToken, u64), SessionError> {
        let credentials = match entry.entry {
            StoredEntry::Credentials(credentials) => credentials,
            StoredEntry::LoginRequired => return Err(self.end_login(slot)),
        };
        check_owner(self.user, &credentials)?;
        let adopted = Authorized::from_credentials(&self.client, credentials);
        let published = self.publish(adopted.credentials(), false);
        slot.authorized = Some(adopted);
        slot.version = Some(entry.version);
        slot.unsaved = false;
        Ok(published)
    }

    /// Saves the slot's unsaved pair over the version it was refreshed from and ends the
    /// `lease` it was refreshed under, then publishes the pair. If the store moved on
    /// meanwhile, the pair is dropped unused and the stored entry wins.
    async fn save_and_publish(
        &self,
        slot: &mut Slot,
        lease: Lease,
    ) -> Result<(AccessToken, u64), SessionError> {
        let Some(authorized) = slot.authorized.as_ref() else {
            return Err(SessionError::LoginRequired { user: self.user });
        };
        let expected = slot.version.map_or(Expected::Absent, Expected::Version);
        match self
            .store
            .save_and_release(self.user, authorized.credentials(), expected, lease)
            .await
        {
            Ok(version) => {
                slot.version = Some(version);
                slot.unsaved = false;
                Ok(self.publish(authorized.credentials(), true))
            }
            Err(StoreError::Conflict(conflict)) => {
                warn!(
                    "another program changed the stored login during the refresh; the refreshed pair is dropped unused"
                );
                match conflict.current {
                    Some(entry) => {
                        slot.outcome = Some(RefreshOutcome::ConflictAdopted);
                        self.adopt(slot, entry)
                    }
                    None => {
                        info!("the store no longer has the user: logged out elsewhere");
                        Err(self.end_login(slot))
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "saving the refreshed tokens failed; they are kept in memory, unused");
                Err(SessionError::TokensNotSaved(e))
            }
        }
    }

    /// Forgets the login and publishes "login required".
    fn end_login(&self, slot: &mut Slot) -> SessionError {
        slot.forget();
        self.set_login_required();
        SessionError::LoginRequired { user: self.user }
    }
}
