//! The refresh of a session, with the slot held: read the store under its lock, adopt a newer
//! pair stored by another program, or refresh and save before publishing.

use chrono::Utc;
use tracing::{info, warn};

use super::{SessionError, Shared, Slot, check_owner};
use crate::login::Authorized;
use crate::secret::AccessToken;
use crate::store::StoredEntry;
use crate::time::Clock;
use chrono::TimeDelta;

impl Shared {
    pub(super) async fn refresh_in_slot(
        &self,
        slot: &mut Slot,
        margin: TimeDelta,
        clock: &dyn Clock,
    ) -> Result<(AccessToken, u64), SessionError> {
        let user = self.user;
        // Across processes: whoever holds the store's lock refreshes; the others find its
        // result in the store below.
        let _lock = self.store.lock(user).await.map_err(SessionError::Store)?;
        let stored = match self.store.load(user).await.map_err(SessionError::Store)? {
            Some(StoredEntry::Credentials(stored)) => stored,
            Some(StoredEntry::LoginRequired) => {
                slot.forget();
                self.set_login_required();
                return Err(SessionError::LoginRequired { user });
            }
            // The user was logged out (`delete`) by another program: a refresh and a save
            // would log them back in behind their back.
            None => {
                info!("the store no longer has the user: logged out elsewhere");
                slot.forget();
                self.set_login_required();
                return Err(SessionError::LoginRequired { user });
            }
        };
        check_owner(user, &stored)?;
        let Some(ours) = slot.authorized.as_ref() else {
            return Err(SessionError::LoginRequired { user });
        };
        let in_store = stored.refresh_token.expose_secret();
        let ours_is_newest = match &slot.unsaved_from {
            // Our unsaved pair was refreshed from the stored one (or is it, if a failed save
            // wrote after all): it is still the newest.
            Some(from) => {
                in_store == from.expose_secret() || in_store == ours.refresh_token().expose_secret()
            }
            None => in_store == ours.refresh_token().expose_secret(),
        };
        if ours_is_newest {
            if slot.unsaved_from.is_some() {
                return self.save_and_publish(slot).await;
            }
        } else {
            // Another program refreshed and saved: its pair is the newest, and ours (saved or
            // not) is on a branch the store no longer follows. Saving ours would overwrite a
            // pair that may already be in use.
            if slot.unsaved_from.take().is_some() {
                warn!(
                    "another program stored newer tokens while ours were unsaved; ours are dropped"
                );
            }
            let adopted = Authorized::from_credentials(&self.client, stored);
            if !adopted.expires_within(margin, clock.now()) {
                info!("adopted the tokens another program stored");
                let published = self.publish(adopted.credentials());
                slot.authorized = Some(adopted);
                return Ok(published);
            }
            slot.authorized = Some(adopted);
        }
        let Some(authorized) = slot.authorized.take() else {
            return Err(SessionError::LoginRequired { user });
        };
        // Expiry is computed on the system clock; shift it onto this session's clock.
        let skew = clock.now().signed_duration_since(Utc::now());
        let from = authorized.refresh_token().clone();
        match crate::refresh::refresh(authorized).await {
            Ok(fresh) => {
                let client = fresh.client().clone();
                let mut credentials = fresh.into_credentials();
                credentials.expires_at = credentials
                    .expires_at
                    .checked_add_signed(skew)
                    .unwrap_or(credentials.expires_at);
                slot.authorized = Some(Authorized::from_credentials(&client, credentials));
                slot.unsaved_from = Some(from);
                self.save_and_publish(slot).await
            }
            Err(e) if e.login_required() => {
                self.set_login_required();
                if let Err(store_error) = self.store.mark_login_required(user).await {
                    warn!(error = %store_error, "could not record in the store that the user must log in again");
                }
                Err(SessionError::LoginRequired { user })
            }
            Err(e) => {
                let (source, previous) = e.into_parts();
                slot.authorized = previous;
                Err(SessionError::Api(source))
            }
        }
    }

    async fn save_and_publish(&self, slot: &mut Slot) -> Result<(AccessToken, u64), SessionError> {
        let Some(authorized) = slot.authorized.as_ref() else {
            return Err(SessionError::LoginRequired { user: self.user });
        };
        match self.store.save(self.user, authorized.credentials()).await {
            Ok(()) => {
                slot.unsaved_from = None;
                Ok(self.publish(authorized.credentials()))
            }
            Err(e) => {
                warn!(error = %e, "saving the refreshed tokens failed; they are kept in memory, unused");
                Err(SessionError::TokensNotSaved(e))
            }
        }
    }
}
