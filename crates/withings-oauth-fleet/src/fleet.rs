//! [`Fleet`]: fresh tokens and data calls for any user, through cached sessions, one rate
//! limiter, per-user health and events.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::{Semaphore, broadcast};
use tokio::time::Instant;
use tracing::{info, warn};
use withings_oauth::{
    AccessToken, ApiError, Client, ClientBuilder, ConfigError, DEFAULT_MARGIN, GetMeas,
    MeasureGroups, Session, SessionError, TokenStore, UserId,
};

use crate::cache::{Cache, Member};
use crate::error::FleetError;
use crate::event::FleetEvent;
use crate::health::{Cooldown, UserHealth};
use crate::limiter::{RateLimit, RateLimiter, TokenBucket, request_gate};
use crate::save_gate::{Entry, SaveGate};

/// Fresh access tokens and data calls for any number of users, shared by every task of an
/// instance; any number of instances may share one store. Cheap to clone.
///
/// - **Sessions cached, bounded.** Each user asked for gets a [`Session`] restored once from
///   the store and kept in a bounded cache (users not asked for lately are dropped first). A
///   fresh token costs a read lock, a lookup, a read of the clock and a comparison: the
///   cache's entry keeps a copy of the session's token and the moment from which the session
///   would refresh it ([`Session::fresh_token_until`]), set again after every call that may
///   change it.
/// - **One refresh per user.** Within the instance the session's single flight; across
///   instances the store's lease, under which the session reads the store again and adopts a
///   pair another instance stored instead of refreshing. A refresh token is never spent twice.
/// - **One rate limit.** Every request to Withings (token and data calls) waits for the
///   [`RateLimiter`] first. A 601 answer slows the limiter and the call is retried with
///   exponential backoff and jitter.
/// - **No retry storms.** A refresh that fails starts a cooldown for that user: calls get
///   [`FleetError::CoolingDown`], saying when to retry, without reaching Withings. A rejected
///   refresh token is terminal ([`FleetError::NeedsReauthorization`]) until a new login is
///   stored.
/// - **No refresh the store can't keep.** After the store failed to save a refreshed pair
///   (its disk full, its database gone), the instance sends no refresh for 2 s: due users get
///   [`FleetError::StoreNotSaving`]. Then one refresh tries alone, and once it got its token
///   the others follow. Each refresh meanwhile would spend a pair that, unsaved, costs the
///   user's login once another instance refreshes from the stored token. (The session saves
///   the pairs it holds again in the background, whatever the fleet does.)
/// - **Events.** [`subscribe`](Self::subscribe) tells the application about refreshes, users
///   who must authorize again, and revocations.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use withings_oauth::{Client, Expected, MemoryStore, TokenStore, UserId, testing};
/// use withings_oauth_fleet::{Fleet, FleetEvent};
/// use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK};
/// use withings_sandbox::{Sandbox, SandboxConfig, User};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sandbox = Sandbox::start(SandboxConfig::default().seed_users(1)).await?;
/// let user = UserId::new(User::numbered(1).userid);
/// // A stored login whose access token has expired.
/// let issued = sandbox.handle().issue_tokens(
///     user.get(), DEFAULT_CLIENT_ID, &["user.metrics"], Duration::ZERO)?;
/// let store = Arc::new(MemoryStore::new());
/// let login = testing::credentials(
///     user, &issued.access_token, &issued.refresh_token, chrono::Utc::now());
/// store.save(user, &login, Expected::Absent).await?;
///
/// let client = Client::builder()
///     .client_id(DEFAULT_CLIENT_ID)
///     .client_secret(DEFAULT_CLIENT_SECRET)
///     .redirect_uri(LOOPBACK_CALLBACK)
///     .base_url(sandbox.base_url());
/// let fleet = Fleet::builder(client, store).build()?;
/// let mut events = fleet.subscribe();
///
/// let token = fleet.access_token(user).await?; // refreshed, saved, then handed out
/// assert_ne!(token.expose_secret(), issued.access_token);
/// assert!(matches!(events.recv().await?, FleetEvent::Refreshed { .. }));
/// assert_eq!(fleet.health(user).unwrap().failures, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    store: Arc<dyn TokenStore>,
    cache: Cache,
    limiter: Arc<dyn RateLimiter>,
    events: broadcast::Sender<FleetEvent>,
    policy: Policy,
    jitter: Jitter,
    /// Permits to refresh: see [`FleetBuilder::concurrent_refreshes`].
    refreshes: Semaphore,
    /// Refreshes held back while the store fails to save.
    saves: SaveGate,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) margin: TimeDelta,
    pub(crate) cooldown: Cooldown,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) attempts: u32,
    pub(crate) idle_after: Duration,
    pub(crate) claim_wait: Duration,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("client", &self.inner.client)
            .field("cached_users", &self.inner.cache.len())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Fleet`]; see each setting for its default.
pub struct FleetBuilder {
    client: ClientBuilder,
    store: Arc<dyn TokenStore>,
    capacity: usize,
    limiter: Option<Arc<dyn RateLimiter>>,
    rate_limit: RateLimit,
    policy: Policy,
    events: usize,
    refreshes: usize,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("client", &self.client)
            .field("capacity", &self.capacity)
            .field("rate_limit", &self.rate_limit)
            .field("policy", &self.policy)
            .field("concurrent_refreshes", &self.refreshes)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// How many users' sessions to keep, about (default 100,000; up to an eighth more, as
    /// users spread unevenly over the cache's shards). Users not asked for lately are dropped
    /// first, and restored from the store when asked for again.
    pub fn capacity(mut self, users: usize) -> Self {
        self.capacity = users.max(1);
        self
    }

    /// The budget of the local [`TokenBucket`] (default [`RateLimit::default`]: 120 requests a
    /// minute). Ignored if [`limiter`](Self::limiter) is set.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// A limiter of your own, e.g. one shared with other clients of the application or with
    /// other instances. Every request of the fleet waits for it.
    pub fn limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Refresh tokens that expire within `margin` (default [`DEFAULT_MARGIN`], 5 minutes).
    pub fn margin(mut self, margin: TimeDelta) -> Self {
        self.policy.margin = margin;
        self
    }

    /// The cooldown after a failed refresh: `base` after the first failure (default 30 s),
    /// doubling with each further one, at most `max` (default 15 minutes).
    pub fn cooldown(mut self, base: Duration, max: Duration) -> Self {
        self.policy.cooldown = Cooldown {
            base,
            max: max.max(base),
        };
        self
    }

    /// The backoff after a 601 answer: about `base` (default 1 s) before the first retry,
    /// doubling, at most `max` (default 60 s), each with a random part; `attempts` calls in
    /// all (default 8) before [`FleetError::RateLimited`].
    pub fn backoff(mut self, base: Duration, max: Duration, attempts: u32) -> Self {
        self.policy.backoff = base;
        self.policy.max_backoff = max.max(base);
        self.policy.attempts = attempts.max(1);
        self
    }

    /// How long a login may go unrefreshed before [`Fleet::sweep_once`] renews it (default 30
    /// days): refresh tokens live a year, and only those nobody asked for need the sweep.
    pub fn sweep_idle_after(mut self, idle: Duration) -> Self {
        self.policy.idle_after = idle;
        self
    }

    /// How long [`Fleet::sweep_once`] tries to claim a due user before leaving it to the
    /// instance that holds its lease (default 20 ms). A sweep run by a command on a busy
    /// database may want longer: a slow claim is counted as claimed elsewhere.
    pub fn sweep_claim_wait(mut self, wait: Duration) -> Self {
        self.policy.claim_wait = wait;
        self
    }

    /// How many of this instance's users may be refreshing at once (default 64); callers of
    /// the others wait in the instance until one is done. A burst of due users (after a
    /// restart, or with the limiter generous) then keeps at most this many refreshes in
    /// flight, instead of queueing thousands on the store until they time out. A SQL store
    /// gathers the statements of the refreshes in flight (see `withings_oauth_sql`'s group
    /// commit), so more of them share each round trip and commit. Fresh tokens never wait
    /// for it.
    pub fn concurrent_refreshes(mut self, users: usize) -> Self {
        self.refreshes = users.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How many events wait for a slow subscriber before it misses the oldest (default 1024).
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.events = events.max(1);
        self
    }

    /// Builds the client, with the limiter in front of every request, and the fleet.
    pub fn build(self) -> Result<Fleet, ConfigError> {
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(TokenBucket::new(self.rate_limit)));
        let client = self
            .client
            .before_request(request_gate(limiter.clone()))
            .build()?;
        let (events, _) = broadcast::channel(self.events);
        let seed = getrandom::u64().map_err(|e| ConfigError::Random(e.to_string()))?;
        Ok(Fleet {
            inner: Arc::new(Inner {
                client,
                store: self.store,
                cache: Cache::new(self.capacity),
                limiter,
                events,
                policy: self.policy,
                jitter: Jitter(AtomicU64::new(seed)),
                refreshes: Semaphore::new(self.refreshes),
                saves: SaveGate::default(),
            }),
        })
    }
}

/// What to do after a failed attempt.
enum Next {
    Retry,
    Fail(FleetError),
}

impl Fleet {
    /// Starts a builder. `client` is completed with the limiter by
    /// [`FleetBuilder::build`]; `store` is shared with the other instances.
    pub fn builder(client: ClientBuilder, store: Arc<dyn TokenStore>) -> FleetBuilder {
        FleetBuilder {
            client,
            store,
            capacity: 100_000,
            limiter: None,
            rate_limit: RateLimit::default(),
            policy: Policy {
                margin: DEFAULT_MARGIN,
                cooldown: Cooldown {
                    base: Duration::from_secs(30),
                    max: Duration::from_secs(15 * 60),
                },
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                attempts: 8,
                idle_after: Duration::from_secs(30 * 24 * 3600),
                claim_wait: Duration::from_millis(20),
            },
            events: 1024,
            refreshes: 64,
        }
    }

    /// The client every session of the fleet calls Withings with (the limiter in front).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.inner.limiter
    }

    /// How many users' sessions are cached.
    pub fn cached_users(&self) -> usize {
        self.inner.cache.len()
    }

    /// The user's health, if the user is cached.
    pub fn health(&self, user: UserId) -> Option<UserHealth> {
        self.inner
            .cache
            .get(user)
            .map(|member| member.health().public.clone())
    }

    /// Events from now on: refreshes, users who must authorize again, revocations.
    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.inner.events.subscribe()
    }

    /// Drops the user's cached session and health: the next call restores the user from the
    /// store. For a user who just logged in again through another path, say.
    pub fn forget(&self, user: UserId) {
        self.inner.cache.remove(user);
    }

    /// A valid access token for `user`, refreshed first if it expires within the margin.
    pub async fn access_token(&self, user: UserId) -> Result<AccessToken, FleetError> {
        if let Some(token) = self.inner.cache.fresh_token(user) {
            return Ok(token);
        }
        // Boxed: the slow path's state would make every call's future larger.
        Box::pin(self.ready(user)).await.map(|(_, _, token)| token)
    }

    /// Withings' `getmeas` for `user`: body measures.
    pub async fn get_meas(
        &self,
        user: UserId,
        query: &GetMeas,
    ) -> Result<MeasureGroups, FleetError> {
        self.data_call(user, |session| async move { session.get_meas(query).await })
            .await
    }

    /// A Withings data endpoint (`path` on the API host, e.g. `measure`) for `user`: see
    /// [`Session::call`].
    pub async fn call(
        &self,
        user: UserId,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, FleetError> {
        self.data_call(
            user,
            |session| async move { session.call(path, form).await },
        )
        .await
    }

    /// Revokes the app's access for `user` at Withings and deletes the stored login; sends
    /// [`FleetEvent::Revoked`].
    pub async fn revoke(&self, user: UserId) -> Result<(), FleetError> {
        let member = self.inner.cache.member(user);
        let session = self.session(user, &member).await?;
        let revoked = session.clone().revoke().await;
        // Revoked (or dead already), the session hands out nothing: nor does the fresh path.
        self.inner.cache.set_fresh_from(user, &member, &session);
        revoked.map_err(|e| match e {
            SessionError::LoginRequired { .. } => FleetError::NeedsReauthorization { user },
            other => other.into(),
        })?;
        member
            .health()
            .needs_reauthorization(self.inner.policy.cooldown.max);
        info!(user_id = %user, "access revoked");
        let _ = self.inner.events.send(FleetEvent::Revoked { user });
        Ok(())
    }

    /// The member, its session whose token is fresh, and the token: the slow path of every
    /// call. The fresh path's copy of the token is set from the session on the way out.
    async fn ready(&self, user: UserId) -> Result<(Arc<Member>, Session, AccessToken), FleetError> {
        let mut member = self.inner.cache.member(user);
        let mut attempt = 0;
        loop {
            if member.health().public.needs_reauthorization {
                // Terminal until a new login is stored: the store is looked at again now and
                // then, Withings never.
                member = self
                    .recheck(user, &member)
                    .ok_or(FleetError::NeedsReauthorization { user })?;
                self.session(user, &member).await?;
                member.health().public.needs_reauthorization = false;
                info!(user_id = %user, "a new login was stored for the user");
            }
            self.check_health(user, &member)?;
            let session = self.session(user, &member).await?;
            // Due: the user's first caller waits for a permit to refresh (never closed, so
            // `ok()` is always some); the user's other callers wait behind it, without one,
            // and find the token it got.
            let mut _gate = None;
            let mut permit = None;
            let mut probe = false;
            if session.fresh_token().is_none() {
                _gate = Some(member.refresh_gate.lock().await);
                // What the caller ahead learned holds for those behind it: a user it left
                // cooling down or needing a new login is not sent to Withings again.
                if member.health().public.needs_reauthorization {
                    return Err(FleetError::NeedsReauthorization { user });
                }
                self.check_health(user, &member)?;
                if session.fresh_token().is_none() {
                    // No refresh while the store fails to save: each would spend a pair the
                    // store can't keep. One tries after a pause; the others follow it.
                    match self.inner.saves.enter() {
                        Entry::Open => {}
                        Entry::Probe => probe = true,
                        Entry::Closed(retry_in) => {
                            crate::telemetry::store_not_saving();
                            return Err(FleetError::StoreNotSaving { retry_in });
                        }
                    }
                    permit = self.inner.refreshes.acquire().await.ok();
                }
            }
            let before = session.status().expires_at;
            let result = session.access_token().await;
            // Whatever happened (a refresh, a pair adopted from the store, a dead login), the
            // fresh path now hands out what the session would.
            self.inner.cache.set_fresh_from(user, &member, &session);
            match &result {
                Err(SessionError::TokensNotSaved(_)) => self.inner.saves.save_failed(),
                result if probe => self.inner.saves.leave(result.is_ok()),
                _ => {}
            }
            match result {
                Ok(token) => {
                    let after = session.status().expires_at;
                    let renewed = after != before;
                    member.health().succeeded(renewed);
                    if renewed {
                        let _ = self.inner.events.send(FleetEvent::Refreshed {
                            user,
                            expires_at: after,
                        });
                    }
                    return Ok((member.clone(), session, token));
                }
                Err(e) => {
                    // The backoff before a retry refreshes nothing: other users may have the
                    // permit meanwhile.
                    drop(permit);
                    match self.after_failure(user, &member, e, &mut attempt).await {
                        Next::Retry => continue,
                        Next::Fail(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// A data call with a fresh token; a 601 answer is retried with backoff.
    async fn data_call<'a, T, F, Fut>(&self, user: UserId, call: F) -> Result<T, FleetError>
    where
        F: Fn(Session) -> Fut,
        Fut: Future<Output = Result<T, SessionError>> + 'a,
    {
        let mut attempt = 0;
        loop {
            let (member, session, _) = self.ready(user).await?;
            let result = call(session.clone()).await;
            // On a token Withings refused, the session refreshed: the fresh path must not hand
            // out the old one.
            self.inner.cache.set_fresh_from(user, &member, &session);
            match result {
                Ok(answer) => return Ok(answer),
                Err(SessionError::Api(ApiError::RateLimited { .. })) => {
                    self.inner.limiter.rate_limited();
                    attempt += 1;
                    if attempt >= self.inner.policy.attempts {
                        return Err(FleetError::RateLimited { attempts: attempt });
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(SessionError::LoginRequired { .. }) => {
                    let member = self.inner.cache.member(user);
                    return Err(self.reauthorize(user, &member));
                }
                Err(e) => {
                    if matches!(e, SessionError::TokensNotSaved(_)) {
                        self.inner.saves.save_failed();
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// The member's session, restored from the store on first use (once, whoever asks).
    pub(crate) async fn session(
        &self,
        user: UserId,
        member: &Member,
    ) -> Result<Session, FleetError> {
        let restored = member
            .session
            .get_or_try_init(|| async {
                Session::restore(&self.inner.client, self.inner.store.clone(), user)
                    .await
                    .map(|s| s.with_margin(self.inner.policy.margin))
            })
            .await;
        match restored {
            Ok(session) => Ok(session.clone()),
            Err(SessionError::LoginRequired { .. }) => Err(self.reauthorize(user, member)),
            Err(e) => Err(e.into()),
        }
    }

    /// For a user who must authorize again, once the recheck time has come: a fresh member
    /// (keeping the health), so that a new login in the store is found.
    fn recheck(&self, user: UserId, member: &Arc<Member>) -> Option<Arc<Member>> {
        let due = {
            let health = member.health();
            health.public.needs_reauthorization
                && health.recheck_at.is_some_and(|at| at <= Instant::now())
        };
        due.then(|| self.inner.cache.renew(user, member))
    }

    fn check_health(&self, user: UserId, member: &Member) -> Result<(), FleetError> {
        let health = member.health();
        match (health.cooling(Instant::now()), health.public.retry_at) {
            (Some(retry_in), Some(retry_at)) => {
                crate::telemetry::cooling_down();
                Err(FleetError::CoolingDown {
                    user,
                    retry_at,
                    retry_in,
                })
            }
            _ => Ok(()),
        }
    }

    /// Records that the user must authorize again, telling subscribers the first time; the
    /// fresh path hands out nothing for the user from now on.
    pub(crate) fn reauthorize(&self, user: UserId, member: &Member) -> FleetError {
        self.inner.cache.clear_fresh(user, member);
        let first = member
            .health()
            .needs_reauthorization(self.inner.policy.cooldown.max);
        if first {
            warn!(user_id = %user, "the refresh token was rejected: the user must authorize again");
            let _ = self
                .inner
                .events
                .send(FleetEvent::NeedsReauthorization { user });
        }
        FleetError::NeedsReauthorization { user }
    }

    async fn after_failure(
        &self,
        user: UserId,
        member: &Member,
        error: SessionError,
        attempt: &mut u32,
    ) -> Next {
        let policy = &self.inner.policy;
        match error {
            SessionError::LoginRequired { .. } => Next::Fail(self.reauthorize(user, member)),
            SessionError::Api(ApiError::RateLimited { .. }) => {
                self.inner.limiter.rate_limited();
                *attempt += 1;
                if *attempt >= policy.attempts {
                    member.health().failed(policy.cooldown);
                    return Next::Fail(FleetError::RateLimited { attempts: *attempt });
                }
                tokio::time::sleep(self.backoff(*attempt)).await;
                Next::Retry
            }
            // The refresh this call waited for failed (its caller records why): look again
            // after a pause, when the cooldown it started, if any, is in place.
            SessionError::ConcurrentRefreshFailed { .. } if *attempt + 1 < policy.attempts => {
                *attempt += 1;
                tokio::time::sleep(self.backoff(*attempt)).await;
                Next::Retry
            }
            SessionError::Api(api) => {
                let wait = member.health().failed(policy.cooldown);
                warn!(user_id = %user, error = %api, cooldown_s = wait.as_secs(), "refresh failed; cooling down");
                Next::Fail(SessionError::Api(api).into())
            }
            other => Next::Fail(other.into()),
        }
    }

    /// The pause before retry `attempt` (from 1): exponential, with the upper half random.
    fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.inner.policy;
        let full = policy
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(policy.max_backoff);
        let random = self.inner.jitter.next() as f64 / u64::MAX as f64;
        full.mul_f64(0.5 + 0.5 * random)
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<FleetEvent> {
        &self.inner.events
    }
}

/// Random numbers for jitter (splitmix64 from a random seed): spreading retries, not secrets.
pub(crate) struct Jitter(pub(crate) AtomicU64);

impl Jitter {
    pub(crate) fn next(&self) -> u64 {
        let mut x = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}
