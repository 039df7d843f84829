//! [`Session`]: a logged-in user whose tokens stay fresh. The single flight of refreshes lives
//! in `single_flight`, the refresh against the store in `refresh`, data calls in `data`.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{Instrument, info, info_span};

use crate::config::Client;
use crate::credentials::{Credentials, UserId};
use crate::login::Authorized;
use crate::scope::Scopes;
use crate::secret::AccessToken;
use crate::store::{DEFAULT_LEASE_TTL, Expected, StoreError, StoredEntry, TokenStore, Version};
use crate::time::{Clock, SystemClock, system_micros, system_resolution_micros};

mod data;
mod error;
mod refresh;
mod single_flight;

pub use error::SessionError;

/// The default refresh margin: a token expiring within it is refreshed first.
pub const DEFAULT_MARGIN: TimeDelta = TimeDelta::minutes(5);

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

/// A logged-in user whose tokens stay fresh. Cheap to clone: clones share the login, so share
/// one session per user across tasks.
///
/// A session holds one user's [`Authorized`] login and a [`TokenStore`]. It hands out access
/// tokens, refreshing them shortly before they expire, and keeps these promises:
///
/// - **One refresh at a time.** Any number of concurrent callers cause one refresh; the others
///   wait for it and get its token. Processes sharing a store do the same through the store's
///   lease ([`TokenStore::lease`]): whoever takes it re-reads the store, and adopts a newer pair
///   another process stored instead of refreshing.
/// - **Persist before use.** New tokens are saved to the store before any caller sees the new
///   access token: using it kills the previous refresh token, so a pair that was used but not
///   saved would force the user to log in again. If the save fails, the caller gets
///   [`SessionError::TokensNotSaved`], the new pair stays in memory unpublished, and the
///   session saves it again in the background, every quarter second at first, until the store
///   takes it (or holds a newer login), whether or not anyone calls: Withings rotated the
///   stored refresh token, and once the lease lapses another program would refresh from it.
///   A call meanwhile saves it too.
/// - **Never lose the newest login.** Every write is a compare-and-swap against the version the
///   session holds. A login, a logout or a refresh another program stored meanwhile wins: the
///   session's refreshed pair is dropped unused and the stored entry adopted (or, after a
///   logout, the session ends with [`SessionError::LoginRequired`] without saving the user
///   back). A stored entry older than the session's (a stale read) is never adopted.
/// - **Dead logins are recorded, and only they.** When Withings rejects the refresh token, the
///   session first reads the store again: a newer entry means another program refreshed or
///   logged in, and is adopted. Otherwise every caller gets [`SessionError::LoginRequired`] and
///   the store records it, replacing only the version whose refresh token died.
/// - **No stuck session.** A refresh that never finished (a panic, its runtime shut down) leaves
///   the login in the store; the next call reads it back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use withings_oauth::{Authorized, Client, Credentials, MemoryStore, Session, StoredCredentials, TokenStore};
///
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback")
///     .build()?;
/// // Usually the result of `authorize`; here a login restored from its stored form.
/// let stored: StoredCredentials = serde_json::from_str(&format!(
///     r#"{{"format":1,"user_id":1001,"access_token":"a075","refresh_token":"f631",
///         "expires_at":"{}","scopes":"user.metrics","token_type":"Bearer"}}"#,
///     chrono::Utc::now() + chrono::TimeDelta::hours(3),
/// ))?;
/// let authorized = Authorized::from_credentials(&client, Credentials::from_stored(stored)?);
///
/// let store = Arc::new(MemoryStore::new());
/// let session = Session::start(authorized, store.clone()).await?; // saved before use
/// assert_eq!(session.access_token().await?.expose_secret(), "a075"); // fresh: no request
/// assert_eq!(store.users().await?, vec![session.user_id()]);
///
/// // Later, in another run of the program:
/// let again = Session::restore(&client, store, session.user_id()).await?;
/// assert_eq!(again.status().expires_at, session.status().expires_at);
/// # Ok(())
/// # }
/// ```
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
    /// For a token just issued by Withings, half its lifetime: a token that lives less than
    /// the margin is refreshed at half its life rather than on every call. `i64::MAX` for a
    /// token read from the store, whose lifetime is unknown.
    half_life_micros: i64,
    /// `expires_at` in microseconds since the Unix epoch, or `i64::MIN` once the login is dead:
    /// the fast path is one comparison against it.
    expires_micros: i64,
    scopes: Scopes,
    generation: u64,
    login_required: bool,
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
    /// `None` once the login is dead (refresh token rejected, revoked, logged out), or if a
    /// refresh panicked while holding it: the next attempt re-reads the store.
    authorized: Option<Authorized>,
    /// The stored version `authorized` is, or, while `unsaved`, the version it was refreshed
    /// from: what the next write expects to replace.
    version: Option<Version>,
    /// `authorized` is a refreshed pair whose save failed: it is not published yet.
    unsaved: bool,
    /// A task saves the unsaved pair again until the store takes it (or a newer entry wins).
    saving_again: bool,
    /// How the refresh attempt under way ended, where the result alone does not tell (an
    /// adopted login, a rejected refresh token), for the metrics.
    outcome: Option<crate::telemetry::RefreshOutcome>,
}

impl Slot {
    fn forget(&mut self) {
        self.authorized = None;
        self.unsaved = false;
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
    /// The new login replaces whatever the store holds for the user (an older login, a "login
    /// required" mark), with compare-and-swap: if another program writes meanwhile (a refresh
    /// of the old login, say), the save reads again and replaces that, since a login the user
    /// just made is newer than anything a program derived from the old one.
    ///
    /// If saving fails, [`SessionError::StartNotSaved`] hands the login back.
    pub async fn start(
        authorized: Authorized,
        store: Arc<dyn TokenStore>,
    ) -> Result<Session, SessionError> {
        /// Concurrent writers the save gives way to before giving up.
        const ATTEMPTS: usize = 16;
        let user = authorized.user_id();
        let mut expected = match store.load(user).await {
            Ok(entry) => entry.map_or(Expected::Absent, |e| Expected::Version(e.version)),
            // An old login nobody can open (its key is gone): the new one replaces it.
            Err(StoreError::Unreadable { version, .. }) => Expected::Version(version),
            Err(source) => return Err(start_not_saved(source, authorized)),
        };
        let mut attempts = 0;
        loop {
            match store.save(user, authorized.credentials(), expected).await {
                Ok(version) => return Ok(Self::new(authorized, store, version)),
                Err(StoreError::Conflict(conflict)) if attempts < ATTEMPTS => {
                    attempts += 1;
                    expected = conflict
                        .current_version()
                        .map_or(Expected::Absent, Expected::Version);
                }
                Err(StoreError::Unreadable { version, .. }) if attempts < ATTEMPTS => {
                    attempts += 1;
                    expected = Expected::Version(version);
                }
                Err(source) => return Err(start_not_saved(source, authorized)),
            }
        }
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
        let Some(entry) = store.load(user).await.map_err(SessionError::Store)? else {
            return Err(SessionError::LoginRequired { user });
        };
        match entry.entry {
            StoredEntry::Credentials(credentials) => {
                check_owner(user, &credentials)?;
                let authorized = Authorized::from_credentials(client, credentials);
                Ok(Self::new(authorized, store, entry.version))
            }
            StoredEntry::LoginRequired => Err(SessionError::LoginRequired { user }),
        }
    }

    fn new(authorized: Authorized, store: Arc<dyn TokenStore>, version: Version) -> Session {
        let published = Published::of(authorized.credentials(), 0, false);
        Session {
            shared: Arc::new(Shared {
                client: authorized.client().clone(),
                user: authorized.user_id(),
                store,
                published: RwLock::new(Arc::new(published)),
                slot: Arc::new(tokio::sync::Mutex::new(Slot {
                    authorized: Some(authorized),
                    version: Some(version),
                    unsaved: false,
                    saving_again: false,
                    outcome: None,
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

    /// Whether the published token is fresh: on the hot path of every call, inlined into it
    /// (the callers' crates' too) with the lock and the clock read.
    #[inline]
    fn usable(&self, published: &Published) -> bool {
        let now = if self.system_clock {
            system_micros()
        } else {
            self.clock.now().timestamp_micros()
        };
        now < self.refresh_from(published)
    }

    /// The instant (microseconds since the Unix epoch, on this session's clock) from which the
    /// published token is due: its expiry less the margin, or less half its life if that is
    /// shorter. `i64::MIN` once the login is dead.
    #[inline]
    fn refresh_from(&self, published: &Published) -> i64 {
        let margin = self.margin_micros.min(published.half_life_micros);
        published.expires_micros.saturating_sub(margin)
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
        Box::pin(self.refresh_unless_newer(seen, false)).await
    }

    /// The access token if it is fresh (it does not expire within the margin), with no waiting
    /// and no call: `None` when [`access_token`](Self::access_token) would have to refresh, or
    /// the user must log in again. For callers that keep many sessions behind a lock of their
    /// own and want the fast path without holding the lock across an `await`.
    pub fn fresh_token(&self) -> Option<AccessToken> {
        let published = self.shared.read();
        self.usable(&published).then(|| published.token.clone())
    }

    /// The fresh token, as [`fresh_token`](Self::fresh_token) gives it, and the moment from
    /// which the session will refresh before handing it out: the token's expiry less the
    /// margin (less half the token's life instead, for a token Withings issued to live less
    /// than twice the margin). `None` when a refresh is due now, or the user must log in again.
    ///
    /// For callers that keep the token beside data of their own (a cache of many users, say)
    /// and compare the time with the moment on every call, instead of asking the session. The
    /// moment is on the session's clock: for a session on the system clock (the default),
    /// compare it with [`SystemClock::now_micros`], the cheap read of the wall clock the
    /// session's own fast path makes, and the moment already allows for that clock's tick. The
    /// session may replace the token earlier (an explicit [`refresh`](Self::refresh), a data
    /// call whose token Withings refused, a [`revoke`](Self::revoke)): such a caller asks
    /// again after each call that may have done so.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use withings_oauth::{Authorized, Client, Clock, Credentials, MemoryStore, Session};
    /// use withings_oauth::StoredCredentials;
    ///
    /// /// A clock that stands still, for the example.
    /// struct At(DateTime<Utc>);
    /// impl Clock for At {
    ///     fn now(&self) -> DateTime<Utc> {
    ///         self.0
    ///     }
    /// }
    ///
    /// let client = Client::builder()
    ///     .client_id("my-client-id")
    ///     .client_secret("my-client-secret")
    ///     .redirect_uri("https://app.example.com/withings/callback")
    ///     .build()?;
    /// let stored: StoredCredentials = serde_json::from_str(
    ///     r#"{"format":1,"user_id":1001,"access_token":"a075","refresh_token":"f631",
    ///         "expires_at":"2030-01-01T12:00:00Z","scopes":"user.metrics","token_type":"Bearer"}"#,
    /// )?;
    /// let authorized = Authorized::from_credentials(&client, Credentials::from_stored(stored)?);
    /// let session = Session::start(authorized, Arc::new(MemoryStore::new())).await?;
    ///
    /// // At 9:00 the token expiring at 12:00 is fresh until 11:55, with the 5-minute margin.
    /// let at = |time: &str| -> Arc<dyn Clock> { Arc::new(At(time.parse().unwrap())) };
    /// let nine = session.clone().with_clock(at("2030-01-01T09:00:00Z"));
    /// let (token, refresh_from) = nine.fresh_token_until().expect("fresh");
    /// assert_eq!(token.expose_secret(), "a075");
    /// assert_eq!(refresh_from, "2030-01-01T11:55:00Z".parse::<DateTime<Utc>>()?);
    /// let (_, wider) = nine.with_margin(TimeDelta::minutes(30)).fresh_token_until().unwrap();
    /// assert_eq!(wider, "2030-01-01T11:30:00Z".parse::<DateTime<Utc>>()?);
    ///
    /// // From 11:55 on, the session would refresh first.
    /// let due = session.with_clock(at("2030-01-01T11:55:00Z"));
    /// assert!(due.fresh_token_until().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn fresh_token_until(&self) -> Option<(AccessToken, DateTime<Utc>)> {
        let published = self.shared.read();
        if !self.usable(&published) {
            return None;
        }
        let from = DateTime::from_timestamp_micros(self.refresh_from(&published))?;
        Some((published.token.clone(), from))
    }

    /// Refreshes now, whatever the expiry (joining a refresh already under way).
    pub async fn refresh(&self) -> Result<(), SessionError> {
        let seen = self.shared.read().generation;
        self.refresh_unless_newer(seen, true).await.map(drop)
    }

    /// Revokes the app's access at Withings (both tokens die), then deletes the user's entry
    /// from the store (a login saved by another program at that very moment is left in place).
    /// On failure the session is unchanged.
    pub async fn revoke(self) -> Result<(), SessionError> {
        let mut slot = self.shared.slot.lock().await;
        let revoked = self.revoke_locked(&mut slot).await;
        drop(slot);
        // Callers that found the lock taken look again: they find the login gone, or take it.
        self.shared.finished.notify_waiters();
        revoked
    }

    async fn revoke_locked(&self, slot: &mut Slot) -> Result<(), SessionError> {
        let user = self.shared.user;
        let Some(authorized) = slot.authorized.as_ref() else {
            return Err(SessionError::LoginRequired { user });
        };
        let span = info_span!("withings_oauth.session.revoke", user_id = %user);
        crate::api::token::revoke(authorized.client(), user)
            .instrument(span)
            .await
            .map_err(SessionError::Api)?;
        info!(user_id = %user, "access revoked");
        slot.forget();
        self.shared.set_login_required();
        // Every token of the user's grant is dead now, whichever process refreshed it last:
        // delete what is stored, under the lease so that no refresh slips in between. Only a
        // login made meanwhile changes the entry still, and the delete leaves it.
        let _lease = self
            .shared
            .store
            .lease(user, DEFAULT_LEASE_TTL)
            .await
            .map_err(SessionError::Store)?;
        let expected = match self
            .shared
            .store
            .load(user)
            .await
            .map_err(SessionError::Store)?
        {
            Some(entry) => Expected::Version(entry.version),
            None => return Ok(()),
        };
        match self.shared.store.delete(user, expected).await {
            Err(StoreError::Conflict(conflict)) => {
                info!(stored = ?conflict.current_version(), "the store holds a newer login than the revoked one; it is kept");
                Ok(())
            }
            other => other.map_err(SessionError::Store),
        }
    }
}

impl Shared {
    #[inline]
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Arc<Published>> {
        // Writers replace the Arc in one statement, so a poisoned lock still holds a whole value.
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `credentials`; `issued` says Withings just issued them (a refresh, a login).
    fn publish(&self, credentials: &Credentials, issued: bool) -> (AccessToken, u64) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = Published::of(credentials, published.generation + 1, issued);
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
            half_life_micros: published.half_life_micros,
            expires_micros: i64::MIN,
            scopes: published.scopes.clone(),
            generation: published.generation + 1,
            login_required: true,
        });
    }
}

impl Published {
    fn of(credentials: &Credentials, generation: u64, issued: bool) -> Self {
        let expires_micros = credentials.expires_at.timestamp_micros();
        let half_life_micros = if issued {
            expires_micros
                .saturating_sub(Utc::now().timestamp_micros())
                .max(0)
                / 2
        } else {
            i64::MAX
        };
        Published {
            token: credentials.access_token.clone(),
            expires_at: credentials.expires_at,
            half_life_micros,
            expires_micros,
            scopes: credentials.scopes.clone(),
            generation,
            login_required: false,
        }
    }
}

fn start_not_saved(source: StoreError, authorized: Authorized) -> SessionError {
    SessionError::StartNotSaved {
        source,
        authorized: Box::new(authorized),
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

#[cfg(test)]
mod tests;
