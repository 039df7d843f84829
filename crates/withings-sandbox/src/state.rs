//! Everything the sandbox remembers: codes, nonces, tokens, counters, rate-limit windows.
//!
//! One `std::sync::Mutex` guards it all. No lock is held across an `.await`, and every
//! operation is a few map look-ups, so many concurrent clients do not contend noticeably.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, later};
use crate::config::{App, SandboxConfig, User};
use crate::counters::Counters;
use crate::data::{MeasureGroup, Window};
use crate::fault::Faults;
use crate::notify::Subscription;

/// Hard cap on live authorization codes; the oldest is evicted beyond it.
pub(crate) const MAX_CODES: usize = 10_000;
/// Hard cap on live nonces; the oldest is evicted beyond it.
pub(crate) const MAX_NONCES: usize = 10_000;
/// Hard cap on live tokens of each kind; the one expiring first is evicted beyond it.
pub(crate) const MAX_TOKENS: usize = 100_000;
/// Expired entries are swept at most this often.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// A live authorization code, as shown by
/// [`SandboxHandle::live_codes`](crate::SandboxHandle::live_codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// The code itself.
    pub code: String,
    /// The app it was issued to.
    pub client_id: String,
    /// The user who approved.
    pub userid: u64,
    /// The `redirect_uri` of the authorize request; the exchange must repeat it.
    pub redirect_uri: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When it stops being accepted (sandbox clock).
    pub expires_at: SystemTime,
}

/// Access or refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// Bearer token for data calls such as `/measure`.
    Access,
    /// Token for `grant_type=refresh_token`.
    Refresh,
}

/// A live token, as shown by [`SandboxHandle::live_tokens`](crate::SandboxHandle::live_tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token itself.
    pub token: String,
    /// Access or refresh.
    pub kind: TokenKind,
    /// The app it belongs to.
    pub client_id: String,
    /// The user it belongs to.
    pub userid: u64,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When it expires (sandbox clock). For a rotated refresh token this is the earlier of
    /// its expiry and the end of its grace period.
    pub expires_at: SystemTime,
    /// Access token: used on a data call at least once. Refresh token: already exchanged for
    /// a new pair (it still works during its grace period).
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Code {
    pub(crate) client_id: String,
    pub(crate) userid: u64,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: SystemTime,
}

#[derive(Debug)]
pub(crate) struct Nonce {
    pub(crate) client_id: String,
    pub(crate) expires_at: SystemTime,
}

#[derive(Debug)]
pub(crate) struct Access {
    pub(crate) client_id: String,
    pub(crate) userid: u64,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: SystemTime,
    pub(crate) used: bool,
    /// The refresh token this pair replaced; it dies when this token is first used.
    pub(crate) replaces: Option<String>,
    /// The login this token descends from (see [`Refresh::chain`]).
    pub(crate) chain: u64,
}

#[derive(Debug)]
pub(crate) struct Refresh {
    pub(crate) client_id: String,
    pub(crate) userid: u64,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: SystemTime,
    /// Set when first rotated: the end of the grace period.
    pub(crate) dies_at: Option<SystemTime>,
    /// The login this token descends from: a code exchange (or minted pair) starts a chain,
    /// every refresh continues it. Strict rotation revokes a chain as a whole.
    pub(crate) chain: u64,
}

impl Refresh {
    pub(crate) fn deadline(&self) -> SystemTime {
        self.dies_at
            .map_or(self.expires_at, |d| d.min(self.expires_at))
    }

    pub(crate) fn rotated(&self) -> bool {
        self.dies_at.is_some()
    }
}

/// A refresh token that was rotated away and then died, remembered until it would have
/// expired anyway, so that a client using it again is counted.
#[derive(Debug)]
pub(crate) struct Dead {
    pub(crate) client_id: String,
    pub(crate) userid: u64,
    pub(crate) expires_at: SystemTime,
    pub(crate) chain: u64,
}

/// A freshly issued access/refresh pair.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) userid: u64,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: u64,
    pub(crate) scopes: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) apps: HashMap<String, App>,
    pub(crate) users: Vec<User>,
    pub(crate) config: SandboxConfig,
    pub(crate) codes: HashMap<String, Code>,
    pub(crate) nonces: HashMap<String, Nonce>,
    pub(crate) access: HashMap<String, Access>,
    pub(crate) refresh: HashMap<String, Refresh>,
    pub(crate) dead: HashMap<String, Dead>,
    /// The id the next login's chain gets.
    next_chain: u64,
    rate: HashMap<String, VecDeque<SystemTime>>,
    pub(crate) counters: Counters,
    pub(crate) faults: Faults,
    last_purge: Option<SystemTime>,
    /// The days every user has seeded data for.
    pub(crate) data_window: Window,
    /// Measure groups added through the handle or the admin API, per user.
    pub(crate) added: HashMap<u64, Vec<MeasureGroup>>,
    /// The next `grpid` of an added group.
    pub(crate) next_grpid: u64,
    pub(crate) subscriptions: Vec<Subscription>,
    /// Where every token issued and presented is written, if anywhere.
    pub(crate) ledger: Option<crate::ledger::Ledger>,
    /// The `User-Agent` of the token request being answered, for the ledger.
    pub(crate) agent: String,
}

/// State shared by all connections and by every [`SandboxHandle`](crate::SandboxHandle).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clock: Clock,
    inner: Mutex<Inner>,
    /// The runtime the server runs on, where notifications are sent from; `None` in unit
    /// tests without one.
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    /// The client that calls notification callbacks, made on first use (`None` if it could
    /// not be built). Asserted unwind-safe so that a `Sandbox` stays usable across
    /// `catch_unwind` in tests: a panic while a callback is called leaves nothing of the
    /// client that a later call could trip on.
    pub(crate) callbacks: std::sync::OnceLock<AssertUnwindSafe<Option<reqwest::Client>>>,
}

impl Shared {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|a| (a.client_id.clone(), a.clone()))
            .collect();
        let clock = Clock::default();
        let data_window = config
            .data_through
            .map_or_else(|| Window::before(clock.now()), Window::through);
        Self {
            clock,
            runtime: tokio::runtime::Handle::try_current().ok(),
            callbacks: std::sync::OnceLock::new(),
            inner: Mutex::new(Inner {
                apps,
                users: config.users.clone(),
                config,
                codes: HashMap::new(),
                nonces: HashMap::new(),
                access: HashMap::new(),
                refresh: HashMap::new(),
                dead: HashMap::new(),
                next_chain: 0,
                rate: HashMap::new(),
                counters: Counters::default(),
                faults: Faults::default(),
                last_purge: None,
                data_window,
                added: HashMap::new(),
                next_grpid: 1,
                subscriptions: Vec::new(),
                ledger: None,
                agent: String::new(),
            }),
        }
    }

    /// The state, for unit tests that drive it without a server.
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> Inner {
        self.inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the state. A panic elsewhere cannot leave it half-updated in a way that matters
    /// for a test server, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 20 random bytes as 40 lowercase hex characters, the shape of Withings' tokens.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 20];
    // The OS generator failing is not something a test server can recover from sensibly;
    // fall back to a time-derived value rather than panicking in a request.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    hex::encode(bytes)
}

/// Removes the entry that expires first, to make room under a hard cap.
pub(crate) fn evict_oldest<V>(map: &mut HashMap<String, V>, expiry: impl Fn(&V) -> SystemTime) {
    if let Some(key) = map
        .iter()
        .min_by_key(|(_, v)| expiry(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&key);
    }
}

impl Inner {
    /// Drops expired codes, nonces and tokens, at most once per [`PURGE_EVERY`].
    pub(crate) fn maybe_purge(&mut self, now: SystemTime) {
        if self
            .last_purge
            .is_some_and(|t| now.duration_since(t).is_ok_and(|d| d < PURGE_EVERY))
        {
            return;
        }
        self.last_purge = Some(now);
        self.codes.retain(|_, c| c.expires_at > now);
        self.nonces.retain(|_, n| n.expires_at > now);
        self.access.retain(|_, a| a.expires_at > now);
        let died: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, r)| r.deadline() <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for token in died {
            self.bury(&token);
        }
        self.dead.retain(|_, d| d.expires_at > now);
        let window_start = now
            .checked_sub(self.config.rate_limit_window)
            .unwrap_or(now);
        self.rate.retain(|_, hits| {
            hits.retain(|t| *t > window_start);
            !hits.is_empty()
        });
    }

    /// Counts one request of `client_id` against the limit of its window; `false` means the
    /// request must be answered with status 601. Unknown client ids are not tracked, so
    /// garbage cannot grow the table.
    pub(crate) fn rate_limit_allows(&mut self, client_id: &str, now: SystemTime) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        if !self.apps.contains_key(client_id) {
            return true;
        }
        let window_start = now
            .checked_sub(self.config.rate_limit_window)
            .unwrap_or(now);
        let hits = self.rate.entry(client_id.to_owned()).or_default();
        while hits.front().is_some_and(|t| *t <= window_start) {
            hits.pop_front();
        }
        let allowed = hits.len() < limit as usize;
        if allowed {
            hits.push_back(now);
        } else {
            self.counters.rate_limited += 1;
        }
        if let Some(ledger) = &mut self.ledger {
            ledger.write(
                now,
                "rate",
                serde_json::json!({ "client": client_id, "allowed": allowed, "agent": self.agent }),
            );
        }
        allowed
    }

    pub(crate) fn issue_code(&mut self, code: Code) -> String {
        if self.codes.len() >= MAX_CODES {
            evict_oldest(&mut self.codes, |c| c.expires_at);
        }
        let value = random_token();
        self.codes.insert(value.clone(), code);
        value
    }

    pub(crate) fn issue_nonce(&mut self, client_id: &str, now: SystemTime) -> String {
        if self.nonces.len() >= MAX_NONCES {
            evict_oldest(&mut self.nonces, |n| n.expires_at);
        }
        let value = random_token();
        let expires_at = later(now, self.config.nonce_lifetime);
        self.nonces.insert(
            value.clone(),
            Nonce {
                client_id: client_id.to_owned(),
                expires_at,
            },
        );
        value
    }

    /// Consumes a nonce if it is live and was issued to `client_id`.
    pub(crate) fn take_nonce(&mut self, nonce: &str, client_id: &str, now: SystemTime) -> bool {
        let ok = self
            .nonces
            .get(nonce)
            .is_some_and(|n| n.client_id == client_id && n.expires_at > now);
        if ok {
            self.nonces.remove(nonce);
        }
        ok
    }

    /// Issues a new access/refresh pair. `replaces` is the refresh token this pair rotates
    /// away, which dies when the new access token is first used.
    pub(crate) fn issue_pair(
        &mut self,
        client_id: &str,
        userid: u64,
        scopes: Vec<String>,
        replaces: Option<String>,
        now: SystemTime,
    ) -> Pair {
        let lifetime = self.config.access_token_lifetime;
        self.issue_pair_lasting(client_id, userid, scopes, replaces, lifetime, now)
    }

    /// [`issue_pair`](Self::issue_pair) with an access token living `lifetime`.
    pub(crate) fn issue_pair_lasting(
        &mut self,
        client_id: &str,
        userid: u64,
        scopes: Vec<String>,
        replaces: Option<String>,
        lifetime: Duration,
        now: SystemTime,
    ) -> Pair {
        // Read before any eviction below could remove the token being replaced.
        let inherited = replaces
            .as_ref()
            .and_then(|t| self.refresh.get(t))
            .map(|r| r.chain);
        let chain = inherited.unwrap_or_else(|| {
            self.next_chain += 1;
            self.next_chain
        });
        if self.access.len() >= MAX_TOKENS {
            evict_oldest(&mut self.access, |a| a.expires_at);
        }
        if self.refresh.len() >= MAX_TOKENS {
            evict_oldest(&mut self.refresh, Refresh::deadline);
        }
        let access_token = random_token();
        let refresh_token = random_token();
        if let Some(ledger) = &mut self.ledger {
            let hash = crate::ledger::hash;
            ledger.write(
                now,
                "issued",
                serde_json::json!({
                    "user": userid,
                    "client": client_id,
                    "chain": chain,
                    "access": hash(&access_token),
                    "refresh": hash(&refresh_token),
                    "parent": replaces.as_deref().map(hash),
                    "scope": scopes.join(","),
                    "agent": self.agent,
                }),
            );
        }
        self.access.insert(
            access_token.clone(),
            Access {
                client_id: client_id.to_owned(),
                userid,
                scopes: scopes.clone(),
                expires_at: later(now, lifetime),
                used: false,
                replaces,
                chain,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            Refresh {
                client_id: client_id.to_owned(),
                userid,
                scopes: scopes.clone(),
                expires_at: later(now, self.config.refresh_token_lifetime),
                dies_at: None,
                chain,
            },
        );
        Pair {
            userid,
            access_token,
            refresh_token,
            expires_in: lifetime.as_secs(),
            scopes,
        }
    }

    /// Revokes every token of `userid` for `client_id`, and the app's notification
    /// subscriptions for that user, as Withings' `revoke` does.
    pub(crate) fn revoke(&mut self, client_id: &str, userid: u64, now: SystemTime) {
        if let Some(ledger) = &mut self.ledger {
            ledger.write(
                now,
                "revoked",
                serde_json::json!({ "user": userid, "client": client_id }),
            );
        }
        self.access
            .retain(|_, a| !(a.client_id == client_id && a.userid == userid));
        self.refresh
            .retain(|_, r| !(r.client_id == client_id && r.userid == userid));
        self.subscriptions
            .retain(|s| !(s.client_id == client_id && s.userid == userid));
    }

    pub(crate) fn live_codes(&self, now: SystemTime) -> Vec<CodeInfo> {
        let mut codes: Vec<CodeInfo> = self
            .codes
            .iter()
            .filter(|(_, c)| c.expires_at > now)
            .map(|(code, c)| CodeInfo {
                code: code.clone(),
                client_id: c.client_id.clone(),
                userid: c.userid,
                redirect_uri: c.redirect_uri.clone(),
                scopes: c.scopes.clone(),
                expires_at: c.expires_at,
            })
            .collect();
        codes.sort_by_key(|c| c.expires_at);
        codes
    }

    pub(crate) fn live_tokens(&self, now: SystemTime) -> Vec<TokenInfo> {
        let access = self
            .access
            .iter()
            .filter(|(_, a)| a.expires_at > now)
            .map(|(t, a)| TokenInfo {
                token: t.clone(),
                kind: TokenKind::Access,
                client_id: a.client_id.clone(),
                userid: a.userid,
                scopes: a.scopes.clone(),
                expires_at: a.expires_at,
                used: a.used,
            });
        let refresh = self
            .refresh
            .iter()
            .filter(|(_, r)| r.deadline() > now)
            .map(|(t, r)| TokenInfo {
                token: t.clone(),
                kind: TokenKind::Refresh,
                client_id: r.client_id.clone(),
                userid: r.userid,
                scopes: r.scopes.clone(),
                expires_at: r.deadline(),
                used: r.dies_at.is_some(),
            });
        let mut tokens: Vec<TokenInfo> = access.chain(refresh).collect();
        tokens.sort_by_key(|t| t.expires_at);
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        let shared = Shared::new(SandboxConfig::default());
        shared.inner.into_inner().unwrap()
    }

    #[test]
    fn random_tokens_are_40_hex_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 40);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, random_token());
    }

    #[test]
    fn nonce_cap_evicts_instead_of_growing() {
        let mut s = inner();
        let now = SystemTime::now();
        for _ in 0..MAX_NONCES + 5 {
            s.issue_nonce(crate::DEFAULT_CLIENT_ID, now);
        }
        assert_eq!(s.nonces.len(), MAX_NONCES);
    }

    #[test]
    fn rate_limit_window_slides() {
        let mut s = inner();
        s.config.rate_limit = Some(2);
        let t0 = SystemTime::now();
        let id = crate::DEFAULT_CLIENT_ID;
        assert!(s.rate_limit_allows(id, t0));
        assert!(s.rate_limit_allows(id, t0));
        assert!(!s.rate_limit_allows(id, t0 + Duration::from_secs(59)));
        assert!(s.rate_limit_allows(id, t0 + Duration::from_secs(61)));
        // Unknown clients are never tracked.
        for _ in 0..10 {
            assert!(s.rate_limit_allows("nobody", t0));
        }
        assert_eq!(s.counters.rate_limited, 1);
    }

    #[test]
    fn rate_limit_window_is_configurable() {
        let mut s = inner();
        s.config.rate_limit = Some(1);
        s.config.rate_limit_window = Duration::from_secs(5);
        let t0 = SystemTime::now();
        let id = crate::DEFAULT_CLIENT_ID;
        assert!(s.rate_limit_allows(id, t0));
        assert!(!s.rate_limit_allows(id, t0 + Duration::from_secs(4)));
        assert!(s.rate_limit_allows(id, t0 + Duration::from_secs(6)));
        s.config.rate_limit_window = Duration::ZERO;
        for _ in 0..3 {
            assert!(s.rate_limit_allows(id, t0 + Duration::from_secs(6)));
        }
    }

    #[test]
    fn purge_drops_expired_entries() {
        let mut s = inner();
        let now = SystemTime::now();
        s.issue_nonce(crate::DEFAULT_CLIENT_ID, now);
        s.issue_pair(crate::DEFAULT_CLIENT_ID, 1, vec![], None, now);
        s.maybe_purge(now + Duration::from_secs(366 * 24 * 3600));
        assert!(s.nonces.is_empty() && s.access.is_empty() && s.refresh.is_empty());
    }
}
