//! A logged-in user whose tokens stay fresh: [`Session`].
//!
//! A session holds one user's [`Authorized`] login and a [`TokenStore`]. It hands out access
//! tokens, refreshing them shortly before they expire, and keeps three promises:
//!
//! - **One refresh at a time.** Any number of concurrent callers cause one refresh; the others
//!   wait for it and get its token. Processes sharing a store do the same through
//!   [`TokenStore::lock`]: a process that finds newer tokens in the store adopts them instead of
//!   refreshing.
//! - **Persist before use.** New tokens are saved to the store before any caller sees the new
//!   access token: using it kills the previous refresh token, so a pair that was used but not
//!   saved would force the user to log in again. If the save fails, the caller gets
//!   [`SessionError::TokensNotSaved`], the new pair stays in memory unpublished, and the next
//!   call saves it before publishing it, unless another program stored a newer pair
//!   meanwhile: that pair wins, as the store's lock would have made it win had the save worked.
//! - **Dead logins are recorded.** When Withings rejects the refresh token, every caller gets
//!   [`SessionError::LoginRequired`] and the store records it for the other programs.
//! - **Logouts stick.** A user another program deleted from the store (a logout) is not saved
//!   back: the session's next refresh finds the entry gone and returns
//!   [`SessionError::LoginRequired`] without asking Withings.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use withings_oauth::{Authorized, Client, Credentials, StoredCredentials};
//! use withings_oauth::session::Session;
//! use withings_oauth::store::{MemoryStore, TokenStore};
//!
//! let client = Client::builder()
//!     .client_id("my-client-id")
//!     .client_secret("my-client-secret")
//!     .redirect_uri("https://app.example.com/withings/callback")
//!     .build()?;
//! // Usually the result of `authorize`; here a login restored from its stored form.
//! let stored: StoredCredentials = serde_json::from_str(&format!(
//!     r#"{{"format":1,"user_id":1001,"access_token":"a075","refresh_token":"f631",
//!         "expires_at":"{}","scopes":"user.metrics","token_type":"Bearer"}}"#,
//!     chrono::Utc::now() + chrono::TimeDelta::hours(3),
//! ))?;
//! let authorized = Authorized::restore_from_stored(&client, Credentials::from_stored(stored)?);
//!
//! let store = Arc::new(MemoryStore::new());
//! let session = Session::start(authorized, store.clone()).await?; // saved before use
//! assert_eq!(session.access_token().await?.expose_secret(), "a075"); // fresh: no request
//! assert_eq!(store.users().await?, vec![session.user_id()]);
//!
//! // Later, in another run of the program:
//! let again = Session::restore(&client, store, session.user_id()).await?;
//! assert_eq!(again.status().expires_at, session.status().expires_at);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tracing::{Instrument, info, info_span, warn};

use crate::config::Client;
use crate::credentials::{Credentials, UserId};
use crate::error::ApiError;
use crate::flow::Authorized;
use crate::scope::Scopes;
use crate::store::{StoreError, StoredEntry, TokenStore};

/// Largest answer read from a data endpoint (a long `getmeas` history is a few megabytes).
const DATA_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The default refresh margin: a token expiring within it is refreshed first.
pub const DEFAULT_MARGIN: TimeDelta = TimeDelta::minutes(5);

/// Where a session reads the time. Tests inject their own to age tokens without waiting.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
///
/// A session on this clock checks its token's expiry on every call with a cheap read of the
/// wall clock (on Linux the coarse realtime clock, which advances once a kernel tick, every 1 to
/// 4 ms), and refreshes that much earlier than its margin says, so that it never hands out a
/// token the precise clock would call expired. Being a wall clock, it jumps forward after a
/// suspend: a resumed machine never gets a token that expired while it slept.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// An access token, for `Authorization: Bearer ...`. Cheap to clone; `Debug` hides it.
#[derive(Clone)]
pub struct AccessToken(Arc<SecretString>);

impl AccessToken {
    /// The token's text.
    ///
    /// # Security
    /// Send it to Withings' API host only; never log it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// What a session knows about its login, without any secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStatus {
    /// The user.
    pub user_id: UserId,
    /// The granted scopes.
    pub scopes: Scopes,
    /// When the published access token expires.
    pub expires_at: DateTime<Utc>,
    /// Whether the refresh token was rejected (or the login revoked): the user must log in
    /// again.
    pub login_required: bool,
}

/// Why a session could not do what was asked. No message holds a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The refresh token was rejected, the login was revoked, or the store has no usable login
    /// for the user.
    #[error("user {user} must log in again: the stored login is missing, revoked or expired")]
    LoginRequired {
        /// The user.
        user: UserId,
    },
    /// The token store failed while loading, locking or deleting.
    #[error(transparent)]
    Store(StoreError),
    /// Saving refreshed tokens failed. They are kept in memory, not used yet, and the next
    /// call saves them before using them.
    #[error(
        "saving the new tokens failed: {0}; the new tokens are kept in memory, not used yet, and the next call retries saving them"
    )]
    TokensNotSaved(StoreError),
    /// [`Session::start`] could not save the new login. Nothing was used:
    /// [`SessionError::into_authorized`] gives the login back to retry with a working store.
    #[error(
        "saving the new login failed: {source}; it was not used: fix the store and start the session again"
    )]
    StartNotSaved {
        /// What the store said.
        source: StoreError,
        /// The login, unused.
        authorized: Box<Authorized>,
    },
    /// A call to Withings failed (a refresh that may succeed later keeps the old tokens).
    #[error(transparent)]
    Api(ApiError),
    /// A refresh made by a concurrent call, which this call waited for, failed. This call did
    /// not try again, so that a failing Withings is not asked once per waiting caller.
    #[error("a concurrent refresh of the tokens failed: {message}")]
    ConcurrentRefreshFailed {
        /// That refresh's error message.
        message: String,
    },
    /// [`Session::call`] was given something other than a path on the API host.
    #[error(
        "{path:?} is not a path on the Withings API host: pass a relative path such as \"measure\""
    )]
    InvalidPath {
        /// The path given.
        path: String,
    },
    /// The async runtime shut down during a refresh.
    #[error("the async runtime shut down during a refresh; the stored tokens are the latest saved")]
    Shutdown,
}

impl SessionError {
    /// Whether the user must log in again.
    pub fn login_required(&self) -> bool {
        matches!(self, SessionError::LoginRequired { .. })
    }

    /// The store's error, for [`SessionError::Store`], [`SessionError::TokensNotSaved`] and
    /// [`SessionError::StartNotSaved`].
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            SessionError::Store(e) | SessionError::TokensNotSaved(e) => Some(e),
            SessionError::StartNotSaved { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The unused login of a [`SessionError::StartNotSaved`].
    pub fn into_authorized(self) -> Option<Authorized> {
        match self {
            SessionError::StartNotSaved { authorized, .. } => Some(*authorized),
            _ => None,
        }
    }
}

/// A user's login that keeps its tokens fresh. Cheap to clone: clones share the login, so
/// share one session per user across tasks.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    margin: TimeDelta,
    /// `margin` in microseconds, plus the resolution of the system clock when that is the
    /// clock: what the fast path adds to the time read.
    margin_micros: i64,
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the system clock, which the fast path reads through `system_micros`.
    system_clock: bool,
}

/// Ends a refresh attempt when dropped: records its failure, counts it and wakes the waiters.
struct AttemptEnd {
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

struct Shared {
    client: Client,
    user: UserId,
    store: Arc<dyn TokenStore>,
    /// What readers see: only tokens already saved in the store.
    published: RwLock<Arc<Published>>,
    /// The login itself; whoever holds this lock may refresh.
    slot: Arc<tokio::sync::Mutex<Slot>>,
    /// Refresh attempts finished, successful or not.
    attempts: AtomicU64,
    /// Woken when a refresh attempt (or a revoke) ends.
    finished: tokio::sync::Notify,
    /// The message of the last failed attempt, for the callers that waited for it.
    last_failure: Mutex<String>,
}

struct Published {
    token: AccessToken,
    expires_at: DateTime<Utc>,
    /// `expires_at` in microseconds since the Unix epoch, or `i64::MIN` once the login is dead:
    /// the fast path is one comparison against it.
    expires_micros: i64,
    scopes: Scopes,
    generation: u64,
    login_required: bool,
}

/// Microseconds since the Unix epoch on the system's wall clock, read cheaply: `Utc::now()`
/// takes about 60 ns, as much as twice a whole naive token cache read.
///
/// On Linux the coarse realtime clock, read from the vDSO without a system call; it lags the
/// precise clock by up to [`system_resolution_micros`]. A wall clock, not a CPU counter: it
/// counts the time a machine spent suspended.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn system_micros() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    match std::time::Duration::try_from(now) {
        Ok(since_epoch) => i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
        // A clock set before 1970: rare enough for the slower read.
        Err(_) => Utc::now().timestamp_micros(),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn system_micros() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// How far [`system_micros`] may lag the precise clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn system_resolution_micros() -> i64 {
    static RESOLUTION: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *RESOLUTION.get_or_init(|| {
        let resolution = rustix::time::clock_getres(rustix::time::ClockId::RealtimeCoarse);
        std::time::Duration::try_from(resolution)
            .ok()
            .and_then(|r| i64::try_from(r.as_micros()).ok())
            .unwrap_or(0)
            // Rounded up: a 4 ms tick is 4,000 µs, never less.
            .saturating_add(1)
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn system_resolution_micros() -> i64 {
    0
}

/// `margin` in microseconds for the fast path, widened by the system clock's lag.
fn margin_micros(margin: TimeDelta, system_clock: bool) -> i64 {
    let margin = margin.num_microseconds().unwrap_or(i64::MAX);
    if system_clock {
        margin.saturating_add(system_resolution_micros())
    } else {
        margin
    }
}

struct Slot {
    /// `None` once the login is dead (refresh token rejected, revoked, or logged out).
    authorized: Option<Authorized>,
    /// When `authorized` holds a refreshed pair the store does not have yet: the refresh
    /// token it was refreshed from, which tells whether the store moved on since.
    unsaved_from: Option<SecretString>,
}

impl Slot {
    fn forget(&mut self) {
        self.authorized = None;
        self.unsaved_from = None;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("status", &self.status())
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session with a new login, saving it to `store` first.
    ///
    /// If saving fails, [`SessionError::StartNotSaved`] hands the login back.
    pub async fn start(
        authorized: Authorized,
        store: Arc<dyn TokenStore>,
    ) -> Result<Session, SessionError> {
        let user = authorized.user_id();
        if let Err(source) = store.save(user, authorized.credentials()).await {
            return Err(SessionError::StartNotSaved {
                source,
                authorized: Box::new(authorized),
            });
        }
        Ok(Self::new(authorized, store))
    }

    /// Restores the user's session from `store`.
    ///
    /// [`SessionError::LoginRequired`] if the store has nothing for the user or says the user
    /// must log in again.
    pub async fn restore(
        client: &Client,
        store: Arc<dyn TokenStore>,
        user: UserId,
    ) -> Result<Session, SessionError> {
        match store.load(user).await.map_err(SessionError::Store)? {
            Some(StoredEntry::Credentials(credentials)) => {
                check_owner(user, &credentials)?;
                let authorized = Authorized::restore_from_stored(client, credentials);
                Ok(Self::new(authorized, store))
            }
            Some(StoredEntry::LoginRequired) | None => Err(SessionError::LoginRequired { user }),
        }
    }

    fn new(authorized: Authorized, store: Arc<dyn TokenStore>) -> Session {
        let published = Published::of(authorized.credentials(), 0);
        Session {
            shared: Arc::new(Shared {
                client: authorized.client().clone(),
                user: authorized.user_id(),
                store,
                published: RwLock::new(Arc::new(published)),
                slot: Arc::new(tokio::sync::Mutex::new(Slot {
                    authorized: Some(authorized),
                    unsaved_from: None,
                })),
                attempts: AtomicU64::new(0),
                finished: tokio::sync::Notify::new(),
                last_failure: Mutex::new(String::new()),
            }),
            margin: DEFAULT_MARGIN,
            margin_micros: margin_micros(DEFAULT_MARGIN, true),
            clock: Arc::new(SystemClock),
            system_clock: true,
        }
    }

    /// Refreshes tokens that expire within `margin` (default 5 minutes). A negative margin
    /// counts as zero.
    pub fn with_margin(mut self, margin: TimeDelta) -> Self {
        self.margin = margin.max(TimeDelta::zero());
        self.margin_micros = margin_micros(self.margin, self.system_clock);
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.system_clock = false;
        self.margin_micros = margin_micros(self.margin, false);
        self
    }

    /// Whether the published token is fresh: on the hot path of every call.
    fn usable(&self, published: &Published) -> bool {
        let now = if self.system_clock {
            system_micros()
        } else {
            self.clock.now().timestamp_micros()
        };
        now.saturating_add(self.margin_micros) < published.expires_micros
    }

    /// The user.
    pub fn user_id(&self) -> UserId {
        self.shared.user
    }

    /// The client this session calls Withings with.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The user, scopes and expiry of the published tokens.
    pub fn status(&self) -> SessionStatus {
        let published = self.shared.read();
        SessionStatus {
            user_id: self.shared.user,
            scopes: published.scopes.clone(),
            expires_at: published.expires_at,
            login_required: published.login_required,
        }
    }

    /// A valid access token, refreshed first if it expires within the margin.
    pub async fn access_token(&self) -> Result<AccessToken, SessionError> {
        self.token_and_generation().await.map(|(token, _)| token)
    }

    async fn token_and_generation(&self) -> Result<(AccessToken, u64), SessionError> {
        let seen = {
            let published = self.shared.read();
            if self.usable(&published) {
                return Ok((published.token.clone(), published.generation));
            }
            published.generation
        };
        // Boxed: the slow path's state would otherwise make every call's future several
        // times larger, which callers holding many of them pay for.
        Box::pin(self.refresh_after(seen, false)).await
    }

    /// Refreshes now, whatever the expiry (joining a refresh already under way).
    pub async fn refresh(&self) -> Result<(), SessionError> {
        let seen = self.shared.read().generation;
        self.refresh_after(seen, true).await.map(drop)
    }

    /// Refreshes unless a refresh published after generation `seen` (one this caller waited
    /// for). Without `force`, also skips it if the published token is still usable.
    async fn refresh_after(
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
            if let Some(outcome) =
                self.outcome_since(seen, force, attempts, slot.unsaved_from.is_some())
            {
                return outcome;
            }
            // Spawned so that a caller giving up (a timeout, a dropped request) can't drop a
            // refreshed pair between Withings' answer and the save.
            let task = tokio::spawn(self.shared.clone().refresh_locked(
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
    /// refreshing, if anything.
    fn outcome_since(
        &self,
        seen: u64,
        force: bool,
        attempts: u64,
        unsaved: bool,
    ) -> Option<Result<(AccessToken, u64), SessionError>> {
        let published = self.shared.read();
        if published.login_required {
            return Some(Err(SessionError::LoginRequired {
                user: self.shared.user,
            }));
        }
        if unsaved {
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

    /// Calls a Withings data endpoint (`path` on the API host, e.g. `measure`) with the access
    /// token as `Authorization: Bearer`, and returns the envelope's `body`.
    ///
    /// If Withings answers that the access token is invalid (status 401 `invalid_token`), the
    /// session refreshes once and retries once.
    pub async fn call(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, SessionError> {
        self.call_as(path, form).await
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<T, SessionError> {
        let path = self.check_path(path)?;
        let (token, generation) = self.token_and_generation().await?;
        match self.post(path, form, &token).await {
            Err(ApiError::InvalidAccessToken) => {
                info!(user_id = %self.shared.user, "access token rejected; refreshing once");
                let (token, _) = self.refresh_after(generation, true).await?;
                self.post(path, form, &token).await
            }
            other => other,
        }
        .map_err(SessionError::Api)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
        token: &AccessToken,
    ) -> Result<T, ApiError> {
        let secret = token.expose_secret();
        crate::wire::post_form(
            &self.shared.client,
            path,
            form,
            Some(secret),
            &[secret],
            DATA_BODY_LIMIT,
        )
        .await
    }

    /// A path that stays on the API host: the bearer token must never go anywhere else.
    fn check_path<'p>(&self, path: &'p str) -> Result<&'p str, SessionError> {
        let relative = path.strip_prefix('/').unwrap_or(path);
        let base = self.shared.client.api_url();
        let stays = !relative.starts_with('/')
            && !relative.contains(['?', '#', '\\'])
            && base.join(relative).is_ok_and(|url| {
                url.origin() == base.origin() && url.path().starts_with(base.path())
            });
        if stays && !relative.is_empty() {
            Ok(relative)
        } else {
            Err(SessionError::InvalidPath {
                path: path.chars().take(100).collect(),
            })
        }
    }

    /// Withings' `getmeas`: body measures (weight, fat, blood pressure...).
    pub async fn get_meas(&self, query: &GetMeas) -> Result<MeasureGroups, SessionError> {
        let params = query.params();
        let mut form: Vec<(&str, &str)> = vec![("action", "getmeas")];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        self.call_as("measure", &form).await
    }

    /// Revokes the app's access at Withings (both tokens die), then deletes the user from the
    /// store. On failure the session is unchanged.
    pub async fn revoke(self) -> Result<(), SessionError> {
        let user = self.shared.user;
        let mut slot = self.shared.slot.lock().await;
        let revoked = self.revoke_locked(&mut slot).await;
        drop(slot);
        // Callers that found the lock taken look again: they find the login gone, or take it.
        self.shared.finished.notify_waiters();
        revoked?;
        self.shared
            .store
            .delete(user)
            .await
            .map_err(SessionError::Store)
    }

    async fn revoke_locked(&self, slot: &mut Slot) -> Result<(), SessionError> {
        let user = self.shared.user;
        let Some(authorized) = slot.authorized.as_ref() else {
            return Err(SessionError::LoginRequired { user });
        };
        let span = info_span!("withings_oauth.session.revoke", user_id = %user);
        crate::token::revoke(authorized.client(), user)
            .instrument(span)
            .await
            .map_err(SessionError::Api)?;
        info!(user_id = %user, "access revoked");
        slot.forget();
        self.shared.set_login_required();
        Ok(())
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Arc<Published>> {
        // Writers replace the Arc in one statement, so a poisoned lock still holds a whole value.
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, credentials: &Credentials) -> (AccessToken, u64) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = Published::of(credentials, published.generation + 1);
        let result = (next.token.clone(), next.generation);
        *published = Arc::new(next);
        result
    }

    fn last_failure(&self) -> String {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_login_required(&self) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *published = Arc::new(Published {
            token: published.token.clone(),
            expires_at: published.expires_at,
            expires_micros: i64::MIN,
            scopes: published.scopes.clone(),
            generation: published.generation + 1,
            login_required: true,
        });
    }

    /// The refresh itself, with the slot lock held. Counts as one attempt.
    async fn refresh_locked(
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
        let result = self
            .refresh_in_slot(&mut slot, margin, clock.as_ref())
            .instrument(span)
            .await;
        end.failure = result.as_ref().err().map(ToString::to_string);
        // The slot is released before the waiters are woken, so they can take it at once.
        drop(slot);
        drop(end);
        result
    }

    async fn refresh_in_slot(
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
            let adopted = Authorized::restore_from_stored(&self.client, stored);
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
                slot.authorized = Some(Authorized::restore_from_stored(&client, credentials));
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

impl Published {
    fn of(credentials: &Credentials, generation: u64) -> Self {
        Published {
            token: AccessToken(Arc::new(credentials.access_token.clone())),
            expires_at: credentials.expires_at,
            expires_micros: credentials.expires_at.timestamp_micros(),
            scopes: credentials.scopes.clone(),
            generation,
            login_required: false,
        }
    }
}

fn check_owner(user: UserId, credentials: &Credentials) -> Result<(), SessionError> {
    if credentials.user_id == user {
        Ok(())
    } else {
        Err(SessionError::Store(StoreError::Other(format!(
            "the entry of user {user} holds the tokens of user {}: delete it and log in again",
            credentials.user_id
        ))))
    }
}

/// A `getmeas` query. Empty means every measure type, all dates.
///
/// ```
/// use withings_oauth::session::{GetMeas, measure_type};
/// let query = GetMeas::new()
///     .meastype(measure_type::WEIGHT)
///     .startdate(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
/// assert_eq!(query.params(), [("meastype", "1".to_owned()), ("startdate", "1700000000".to_owned())]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetMeas {
    meastypes: Vec<u32>,
    category: Option<u8>,
    startdate: Option<DateTime<Utc>>,
    enddate: Option<DateTime<Utc>>,
    lastupdate: Option<DateTime<Utc>>,
    offset: Option<u64>,
}

impl GetMeas {
    /// Every measure type, all dates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a measure type (see [`measure_type`]); several are sent as `meastypes`.
    pub fn meastype(mut self, meastype: u32) -> Self {
        self.meastypes.push(meastype);
        self
    }

    /// `1` for real measures, `2` for the user's objectives.
    pub fn category(mut self, category: u8) -> Self {
        self.category = Some(category);
        self
    }

    /// Measures taken at or after this time.
    pub fn startdate(mut self, at: DateTime<Utc>) -> Self {
        self.startdate = Some(at);
        self
    }

    /// Measures taken at or before this time.
    pub fn enddate(mut self, at: DateTime<Utc>) -> Self {
        self.enddate = Some(at);
        self
    }

    /// Measures added or changed since this time (for syncing).
    pub fn lastupdate(mut self, at: DateTime<Utc>) -> Self {
        self.lastupdate = Some(at);
        self
    }

    /// The `offset` of the previous answer, when it said there is [`more`](MeasureGroups::more).
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The form parameters besides `action=getmeas`.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        match self.meastypes.as_slice() {
            [] => {}
            [one] => params.push(("meastype", one.to_string())),
            many => params.push((
                "meastypes",
                many.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
        }
        if let Some(category) = self.category {
            params.push(("category", category.to_string()));
        }
        for (name, at) in [
            ("startdate", self.startdate),
            ("enddate", self.enddate),
            ("lastupdate", self.lastupdate),
        ] {
            if let Some(at) = at {
                params.push((name, at.timestamp().to_string()));
            }
        }
        if let Some(offset) = self.offset {
            params.push(("offset", offset.to_string()));
        }
        params
    }
}

/// Withings' measure type codes (the `type` of a [`Measure`]); a few common ones.
pub mod measure_type {
    /// Weight (kg).
    pub const WEIGHT: u32 = 1;
    /// Height (m).
    pub const HEIGHT: u32 = 4;
    /// Fat free mass (kg).
    pub const FAT_FREE_MASS: u32 = 5;
    /// Fat ratio (%).
    pub const FAT_RATIO: u32 = 6;
    /// Fat mass weight (kg).
    pub const FAT_MASS_WEIGHT: u32 = 8;
    /// Diastolic blood pressure (mmHg).
    pub const DIASTOLIC_BLOOD_PRESSURE: u32 = 9;
    /// Systolic blood pressure (mmHg).
    pub const SYSTOLIC_BLOOD_PRESSURE: u32 = 10;
    /// Heart pulse (bpm).
    pub const HEART_PULSE: u32 = 11;
}

/// The body of a `getmeas` answer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct MeasureGroups {
    /// When the answer was made (unix seconds).
    #[serde(default)]
    pub updatetime: Option<i64>,
    /// The user's time zone, e.g. `Europe/Paris`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The groups, each one a weighing or a blood pressure reading.
    #[serde(rename = "measuregrps", default)]
    pub groups: Vec<MeasureGroup>,
    /// Whether more groups remain: ask again with [`GetMeas::offset`].
    #[serde(default, deserialize_with = "flag")]
    pub more: bool,
    /// The offset to ask for the rest with.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Measures taken together.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct MeasureGroup {
    /// The group's id.
    pub grpid: u64,
    /// How the measures were captured (device, manual...).
    #[serde(default)]
    pub attrib: i64,
    /// When they were taken (unix seconds).
    pub date: i64,
    /// `1` real measures, `2` objectives.
    #[serde(default)]
    pub category: i64,
    /// The measures.
    #[serde(default)]
    pub measures: Vec<Measure>,
}

impl MeasureGroup {
    /// When the measures were taken, if the date is representable.
    pub fn taken_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.date, 0)
    }

    /// The group's measure of `kind` (see [`measure_type`]).
    pub fn measure(&self, kind: u32) -> Option<&Measure> {
        self.measures.iter().find(|m| m.kind == i64::from(kind))
    }
}

/// One measure: `value × 10^unit`, in the unit of its type.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Measure {
    /// The mantissa.
    pub value: i64,
    /// The type (see [`measure_type`]).
    #[serde(rename = "type")]
    pub kind: i64,
    /// The power of ten to scale `value` by.
    pub unit: i32,
}

impl Measure {
    /// `value × 10^unit`: 72345 with unit -3 is 72.345.
    pub fn real_value(&self) -> f64 {
        // Dividing by a positive power of ten is exact where multiplying by 10^-n is not.
        if self.unit < 0 {
            self.value as f64 / 10f64.powi(self.unit.saturating_neg())
        } else {
            self.value as f64 * 10f64.powi(self.unit)
        }
    }
}

/// `more` is `0`/`1` on the wire; accept a boolean too.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Bool(bool),
        Number(i64),
    }
    Ok(match Option::<Wire>::deserialize(d)? {
        Some(Wire::Bool(b)) => b,
        Some(Wire::Number(n)) => n != 0,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::FlakyStore;
    use std::sync::Mutex;
    use std::time::Duration;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// A clock tests move by hand.
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(Utc::now())))
        }
        fn advance(&self, by: TimeDelta) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    const USER: UserId = UserId::new(1001);

    fn client(server: &MockServer) -> Client {
        Client::builder()
            .client_id("cid")
            .client_secret("csecret")
            .redirect_uri("https://app.example.com/cb")
            .base_url(server.uri().parse().unwrap())
            .build()
            .unwrap()
    }

    fn credentials(access: &str, refresh: &str, expires_at: DateTime<Utc>) -> Credentials {
        Credentials {
            user_id: USER,
            access_token: SecretString::from(access.to_owned()),
            refresh_token: SecretString::from(refresh.to_owned()),
            expires_at,
            scopes: "user.metrics".parse().unwrap(),
            token_type: "Bearer".into(),
        }
    }

    fn token_answer(access: &str, refresh: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_string(format!(
            r#"{{"status":0,"body":{{"userid":1001,"access_token":"{access}","refresh_token":"{refresh}","expires_in":10800,"scope":"user.metrics","token_type":"Bearer"}}}}"#
        ))
    }

    fn refresh_with(refresh: &str) -> wiremock::MockBuilder {
        Mock::given(method("POST"))
            .and(path("/v2/oauth2"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains(format!("refresh_token={refresh}")))
    }

    async fn session(
        server: &MockServer,
        store: Arc<dyn TokenStore>,
        expires_in: TimeDelta,
    ) -> Session {
        let authorized = Authorized::restore_from_stored(
            &client(server),
            credentials("old-access", "old-refresh", Utc::now() + expires_in),
        );
        Session::start(authorized, store).await.unwrap()
    }

    async fn stored_refresh_token(store: &dyn TokenStore) -> Option<String> {
        match store.load(USER).await.unwrap() {
            Some(StoredEntry::Credentials(c)) => Some(c.refresh_token.expose_secret().to_owned()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_fresh_token_is_served_without_any_request() {
        let server = MockServer::start().await;
        Mock::given(path("/v2/oauth2"))
            .respond_with(token_answer("x", "y"))
            .expect(0)
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
        for _ in 0..10 {
            assert_eq!(
                session.access_token().await.unwrap().expose_secret(),
                "old-access"
            );
        }
        server.verify().await;
    }

    #[tokio::test]
    async fn the_margin_decides_on_the_system_clock_too() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        // Six minutes left: fresh with the default 5-minute margin, due with a 7-minute one.
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(6)).await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "old-access"
        );
        let eager = session.clone().with_margin(TimeDelta::minutes(7));
        assert_eq!(
            eager.access_token().await.unwrap().expose_secret(),
            "new-access"
        );
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_token_entering_the_margin_is_refreshed_once_and_saved_before_it_is_returned() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new();
        let session = session(&server, store.clone(), TimeDelta::hours(3))
            .await
            .with_clock(clock.clone());
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "old-access"
        );
        // 2 h 56 min later the token has 4 minutes left: inside the 5-minute margin.
        clock.advance(TimeDelta::minutes(176));
        let token = session.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), "new-access");
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("new-refresh")
        );
        // The new expiry is on the session's clock: no second refresh.
        assert!(session.status().expires_at > clock.now() + TimeDelta::hours(2));
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(
                token_answer("new-access", "new-refresh").set_delay(Duration::from_millis(100)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { session.access_token().await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().expose_secret(), "new-access");
        }
        server.verify().await;
    }

    /// A store whose refresh lock panics after a while, as a buggy custom store might.
    struct PanickyStore(MemoryStore);

    impl TokenStore for PanickyStore {
        fn load<'a>(&'a self, user: UserId) -> crate::store::StoreFuture<'a, Option<StoredEntry>> {
            self.0.load(user)
        }
        fn save<'a>(
            &'a self,
            user: UserId,
            credentials: &'a Credentials,
        ) -> crate::store::StoreFuture<'a, ()> {
            self.0.save(user, credentials)
        }
        fn delete<'a>(&'a self, user: UserId) -> crate::store::StoreFuture<'a, ()> {
            self.0.delete(user)
        }
        fn mark_login_required<'a>(&'a self, user: UserId) -> crate::store::StoreFuture<'a, ()> {
            self.0.mark_login_required(user)
        }
        fn users<'a>(&'a self) -> crate::store::StoreFuture<'a, Vec<UserId>> {
            self.0.users()
        }
        fn lock<'a>(
            &'a self,
            _user: UserId,
        ) -> crate::store::StoreFuture<'a, crate::store::StoreLock> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("a buggy store");
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_for_a_refresh_that_panicked_do_not_hang() {
        let server = MockServer::start().await;
        let store: Arc<dyn TokenStore> = Arc::new(PanickyStore(MemoryStore::new()));
        let session = session(&server, store, TimeDelta::minutes(1)).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { session.access_token().await })
            })
            .collect();
        let (mut panicked, mut shared) = (0, 0);
        for task in tasks {
            match tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a waiting caller hung after the refresh panicked")
            {
                Err(e) if e.is_panic() => panicked += 1,
                Ok(Err(SessionError::ConcurrentRefreshFailed { message })) => {
                    assert!(message.contains("stopped unexpectedly"), "{message}");
                    shared += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(panicked, 1, "the caller that refreshed sees the panic");
        assert_eq!(shared, 19, "the waiters get an error instead of hanging");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_for_a_failed_refresh_get_its_error_without_retrying() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(ResponseTemplate::new(502).set_delay(Duration::from_millis(200)))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { session.access_token().await })
            })
            .collect();
        let mut direct = 0;
        for task in tasks {
            match task.await.unwrap().unwrap_err() {
                SessionError::Api(ApiError::HttpStatus { status: 502 }) => direct += 1,
                SessionError::ConcurrentRefreshFailed { message } => {
                    assert!(message.contains("HTTP 502"), "{message}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            direct, 1,
            "one caller refreshed; the others shared its failure"
        );
        server.verify().await;

        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .mount(&server)
            .await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access",
            "the next call tries again with the kept refresh token"
        );
    }

    #[tokio::test]
    async fn a_failed_save_keeps_the_new_pair_unpublished_and_the_next_call_saves_it() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        let store = Arc::new(FlakyStore::default());
        let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
        store.fail_next_saves(1);

        let err = session.access_token().await.unwrap_err();
        assert!(matches!(err, SessionError::TokensNotSaved(_)), "{err:?}");
        assert!(err.to_string().contains("kept in memory"), "{err}");
        // Not published: nobody can have used the new access token yet.
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("old-refresh")
        );
        assert!(session.status().expires_at < Utc::now() + TimeDelta::minutes(2));

        let token = session.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), "new-access");
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("new-refresh")
        );
        server.verify().await;
    }

    /// A session whose refresh of `old-refresh` to `ours-*` failed to save, after which
    /// another program refreshed the same stored pair and saved `theirs-*`, expiring in
    /// `theirs_expire_in`.
    async fn unsaved_pair_and_a_newer_stored_one(
        server: &MockServer,
        theirs_expire_in: TimeDelta,
    ) -> (Session, Arc<FlakyStore>) {
        refresh_with("old-refresh")
            .respond_with(token_answer("ours-access", "ours-refresh"))
            .expect(1)
            .mount(server)
            .await;
        let store = Arc::new(FlakyStore::default());
        let session = session(server, store.clone(), TimeDelta::minutes(1)).await;
        store.fail_next_saves(1);
        let err = session.access_token().await.unwrap_err();
        assert!(matches!(err, SessionError::TokensNotSaved(_)), "{err:?}");
        store
            .inner()
            .save(
                USER,
                &credentials(
                    "theirs-access",
                    "theirs-refresh",
                    Utc::now() + theirs_expire_in,
                ),
            )
            .await
            .unwrap();
        (session, store)
    }

    #[tokio::test]
    async fn an_unsaved_pair_does_not_overwrite_a_newer_pair_another_program_stored() {
        let server = MockServer::start().await;
        let (session, store) =
            unsaved_pair_and_a_newer_stored_one(&server, TimeDelta::hours(3)).await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "theirs-access"
        );
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("theirs-refresh")
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn an_unsaved_pair_gives_way_to_a_newer_stored_one_that_is_then_refreshed() {
        let server = MockServer::start().await;
        refresh_with("theirs-refresh")
            .respond_with(token_answer("next-access", "next-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        let (session, store) =
            unsaved_pair_and_a_newer_stored_one(&server, TimeDelta::minutes(1)).await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "next-access"
        );
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("next-refresh")
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_transient_refresh_failure_keeps_the_old_pair_for_the_next_call() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
        let err = session.access_token().await.unwrap_err();
        assert!(
            matches!(err, SessionError::Api(ApiError::HttpStatus { status: 502 })),
            "{err:?}"
        );
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access"
        );
    }

    #[tokio::test]
    async fn a_rejected_refresh_token_requires_login_and_is_recorded() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let store = Arc::new(MemoryStore::new());
        let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
        let err = session.access_token().await.unwrap_err();
        assert!(err.login_required(), "{err:?}");
        assert!(matches!(
            store.load(USER).await.unwrap(),
            Some(StoredEntry::LoginRequired)
        ));
        assert!(session.status().login_required);
        // Known dead: no second request.
        assert!(session.access_token().await.unwrap_err().login_required());
        let restored = Session::restore(&client(&server), store, USER).await;
        assert!(restored.unwrap_err().login_required());
        server.verify().await;
    }

    #[test]
    fn the_fast_path_reads_the_wall_clock() {
        let before = Utc::now().timestamp_micros();
        let fast = system_micros();
        let after = Utc::now().timestamp_micros();
        // Never ahead, and lagging by a few ticks at most (a virtual machine under load may
        // deliver a tick late): a counter from some other epoch, or one that stops during a
        // suspend, would be far off. A lag of milliseconds is nothing against the margin.
        assert!(fast <= after, "{fast} > {after}");
        assert!(
            fast >= before - system_resolution_micros() - 250_000,
            "{fast} lags {before} by more than a quarter of a second"
        );
    }

    #[tokio::test]
    async fn a_token_is_refreshed_as_soon_as_the_system_clock_reaches_the_margin() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        let session = session(
            &server,
            Arc::new(MemoryStore::new()),
            DEFAULT_MARGIN + TimeDelta::milliseconds(500),
        )
        .await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "old-access"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "new-access"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_logout_by_another_program_is_not_undone_by_a_refresh() {
        let server = MockServer::start().await;
        Mock::given(path("/v2/oauth2"))
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(0)
            .mount(&server)
            .await;
        let store = Arc::new(MemoryStore::new());
        let session = session(&server, store.clone(), TimeDelta::hours(3)).await;
        // `withings-oauth logout` in another process.
        store.delete(USER).await.unwrap();

        let err = session.refresh().await.unwrap_err();
        assert!(err.login_required(), "{err:?}");
        assert!(
            store.load(USER).await.unwrap().is_none(),
            "still logged out"
        );
        assert!(session.status().login_required);
        // Known logged out: later calls neither refresh nor save.
        assert!(session.access_token().await.unwrap_err().login_required());
        assert!(store.users().await.unwrap().is_empty());
        server.verify().await;
    }

    #[tokio::test]
    async fn an_invalid_token_answer_refreshes_once_and_retries_once() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/measure"))
            .and(header("authorization", "Bearer old-access"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"status":401,"body":{},"error":"XRequestID: Not provided invalid_token: The access token provided is invalid"}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/measure"))
            .and(header("authorization", "Bearer new-access"))
            .and(body_string_contains("action=getmeas"))
            .and(body_string_contains("meastype=1"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"status":0,"body":{"updatetime":1700000100,"timezone":"Europe/Paris","more":0,"offset":0,
                   "measuregrps":[{"grpid":7,"attrib":0,"date":1700000000,"created":1700000060,"category":1,
                   "deviceid":null,"measures":[{"value":72345,"type":1,"unit":-3,"algo":3}]}]}}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
        let groups = session
            .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
            .await
            .unwrap();
        let weight = groups.groups[0].measure(measure_type::WEIGHT).unwrap();
        assert_eq!(weight.real_value(), 72.345);
        assert!(!groups.more);
        assert_eq!(
            groups.groups[0].taken_at().unwrap().timestamp(),
            1_700_000_000
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_second_invalid_token_answer_is_returned_not_retried_again() {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(token_answer("new-access", "new-refresh"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/measure"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"status":401,"body":{},"error":"invalid_token: The access token provided is invalid"}"#,
            ))
            .expect(2)
            .mount(&server)
            .await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
        let err = session
            .call("measure", &[("action", "getmeas")])
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::Api(ApiError::InvalidAccessToken)),
            "{err:?}"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_session_adopts_fresh_tokens_another_program_stored() {
        let server = MockServer::start().await;
        Mock::given(path("/v2/oauth2"))
            .respond_with(token_answer("x", "y"))
            .expect(0)
            .mount(&server)
            .await;
        let store = Arc::new(MemoryStore::new());
        let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
        // Another program refreshed and saved the newer pair.
        store
            .save(
                USER,
                &credentials(
                    "their-access",
                    "their-refresh",
                    Utc::now() + TimeDelta::hours(3),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "their-access"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn the_bearer_token_never_leaves_the_api_host() {
        let server = MockServer::start().await;
        let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
        for bad in [
            "https://evil.example.com/measure",
            "//evil.example.com/measure",
            "",
            "measure?x=1",
            "\\\\evil",
        ] {
            let err = session.call(bad, &[]).await.unwrap_err();
            assert!(
                matches!(err, SessionError::InvalidPath { .. }),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(server.received_requests().await.unwrap().len(), 0);
    }

    #[tokio::test]
    async fn start_hands_the_login_back_when_the_store_fails() {
        let server = MockServer::start().await;
        let store = Arc::new(FlakyStore::default());
        store.fail_next_saves(1);
        let authorized = Authorized::restore_from_stored(
            &client(&server),
            credentials("a", "r", Utc::now() + TimeDelta::hours(3)),
        );
        let err = Session::start(authorized, store.clone()).await.unwrap_err();
        assert!(err.store_error().is_some());
        let authorized = err.into_authorized().expect("the login comes back");
        assert!(Session::start(authorized, store).await.is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let token = AccessToken(Arc::new(SecretString::from("s3cret-token")));
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn getmeas_sends_several_types_as_meastypes() {
        let query = GetMeas::new()
            .meastype(measure_type::WEIGHT)
            .meastype(measure_type::FAT_RATIO)
            .category(1)
            .offset(3);
        assert_eq!(
            query.params(),
            [
                ("meastypes", "1,6".to_owned()),
                ("category", "1".to_owned()),
                ("offset", "3".to_owned())
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_measure_has_a_real_value(value: i64, unit: i32) {
            let real = Measure { value, kind: 1, unit }.real_value();
            proptest::prop_assert!(!real.is_nan());
            if (-12..=12).contains(&unit) && value.unsigned_abs() < 1 << 40 {
                let expected: f64 = format!("{value}e{unit}").parse().unwrap();
                proptest::prop_assert!((real - expected).abs() <= expected.abs() * 1e-12, "{real} vs {expected}");
            }
        }

        #[test]
        fn measure_groups_parse_whatever_the_types_of_more(more in proptest::option::of(proptest::prop_oneof![
            proptest::prelude::Just("0".to_owned()),
            proptest::prelude::Just("1".to_owned()),
            proptest::prelude::Just("true".to_owned()),
            proptest::prelude::Just("false".to_owned()),
            proptest::prelude::Just("null".to_owned()),
        ])) {
            let body = match &more {
                Some(m) => format!(r#"{{"measuregrps":[],"more":{m}}}"#),
                None => r#"{"measuregrps":[]}"#.to_owned(),
            };
            let groups: MeasureGroups = serde_json::from_str(&body).unwrap();
            proptest::prop_assert_eq!(groups.more, matches!(more.as_deref(), Some("1" | "true")));
        }
    }

    #[test]
    fn real_values_scale_by_powers_of_ten() {
        let m = |value, unit| {
            Measure {
                value,
                kind: 1,
                unit,
            }
            .real_value()
        };
        assert_eq!(m(72345, -3), 72.345);
        assert_eq!(m(2150, -2), 21.5);
        assert_eq!(m(80, 0), 80.0);
        assert_eq!(m(12, 3), 12000.0);
        assert!(m(1, i32::MIN).is_finite());
        assert!(m(i64::MAX, i32::MAX).is_infinite());
    }
}
