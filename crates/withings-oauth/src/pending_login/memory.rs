//! [`MemoryPendingLogins`]: parked logins kept in memory, shared by the clones of the store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::TimeDelta;

use super::contract::{
    DEFAULT_PENDING_LOGIN_TTL, DEFAULT_PENDING_LOGINS_PER_OWNER, PendingLoginError,
    PendingLoginStore,
};
use crate::binding::{BindingHash, StateHash};
use crate::future::BoxFuture;
use crate::login::ParkedLogin;
use crate::time::{Clock, SystemClock};

/// Parked logins in memory, shared by its clones: right for one process, or for several
/// routers of one process. Nothing survives a restart (logins under way must start again).
#[derive(Clone)]
pub struct MemoryPendingLogins {
    logins: Arc<Mutex<HashMap<StateHash, ParkedLogin>>>,
    ttl: TimeDelta,
    per_owner: usize,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryPendingLogins {
    fn default() -> Self {
        Self {
            logins: Arc::default(),
            ttl: DEFAULT_PENDING_LOGIN_TTL,
            per_owner: DEFAULT_PENDING_LOGINS_PER_OWNER,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryPendingLogins {
    /// An empty store keeping logins [`DEFAULT_PENDING_LOGIN_TTL`], at most
    /// [`DEFAULT_PENDING_LOGINS_PER_OWNER`] per owner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps logins `ttl` instead (at least a millisecond).
    pub fn with_ttl(mut self, ttl: TimeDelta) -> Self {
        self.ttl = ttl.max(TimeDelta::milliseconds(1));
        self
    }

    /// Keeps at most `logins` (at least 1) per owner: parking one more drops the owner's
    /// oldest.
    pub fn with_max_per_owner(mut self, logins: usize) -> Self {
        self.per_owner = logins.max(1);
        self
    }

    /// Reads the time from `clock` (tests age logins without waiting).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many logins are parked, expired ones included until the next purge.
    pub fn len(&self) -> usize {
        self.logins().len()
    }

    /// Whether no login is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<StateHash, ParkedLogin>> {
        // Each statement leaves the map consistent: a panic elsewhere can't corrupt it.
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, login: &ParkedLogin, now: chrono::DateTime<chrono::Utc>) -> bool {
        now - login.created_at() >= self.ttl
    }
}

impl fmt::Debug for MemoryPendingLogins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPendingLogins")
            .field("parked", &self.len())
            .field("ttl", &self.ttl)
            .field("per_owner", &self.per_owner)
            .finish_non_exhaustive()
    }
}

impl PendingLoginStore for MemoryPendingLogins {
    fn put<'a>(&'a self, login: ParkedLogin) -> BoxFuture<'a, Result<(), PendingLoginError>> {
        let now = self.clock.now();
        let mut logins = self.logins();
        logins.retain(|_, parked| !self.expired(parked, now));
        let mut owned: Vec<_> = logins
            .iter()
            .filter(|(_, parked)| parked.owner() == login.owner())
            .map(|(hash, parked)| (parked.created_at(), hash.clone()))
            .collect();
        if owned.len() >= self.per_owner {
            owned.sort_by_key(|(created_at, _)| *created_at);
            for (_, oldest) in &owned[..=owned.len() - self.per_owner] {
                logins.remove(oldest);
            }
        }
        logins.insert(login.state_hash().clone(), login);
        Box::pin(async { Ok(()) })
    }

    fn take<'a>(
        &'a self,
        state: &'a StateHash,
        browser: &'a BindingHash,
    ) -> BoxFuture<'a, Result<ParkedLogin, PendingLoginError>> {
        let now = self.clock.now();
        // One lock for the look-up and the removal: of racing takers, one gets the login.
        let taken = {
            let mut logins = self.logins();
            logins.retain(|hash, parked| hash == state || !self.expired(parked, now));
            match logins.get(state) {
                None => Err(PendingLoginError::Unknown),
                Some(parked) if self.expired(parked, now) => {
                    logins.remove(state);
                    Err(PendingLoginError::Expired)
                }
                Some(parked) if parked.browser() != browser => Err(PendingLoginError::OtherBrowser),
                Some(_) => logins.remove(state).ok_or(PendingLoginError::Unknown),
            }
        };
        Box::pin(async move { taken })
    }
}
