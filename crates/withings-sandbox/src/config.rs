//! What the sandbox knows before it starts: registered apps, seeded users and lifetimes.

use std::time::Duration;

/// Client id of the app registered by default.
pub const DEFAULT_CLIENT_ID: &str = "sandbox-client-id";
/// Client secret of the app registered by default.
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-client-secret";
/// Loopback callback of the default app.
///
/// It has no port, so it matches a `redirect_uri` on *any* port of `127.0.0.1`, `[::1]` or
/// `localhost` with the same scheme and path, as RFC 8252 §7.3 asks of loopback redirects.
/// Whether Withings itself does this is not documented, and it may require an exact match;
/// [`SandboxConfig::exact_redirect_uris`] makes the sandbox do that.
pub const LOOPBACK_CALLBACK: &str = "http://127.0.0.1/callback";
/// HTTPS callback of the default app, the kind of callback Withings' dashboard accepts.
pub const HTTPS_CALLBACK: &str = "https://app.example.com/withings/callback";
/// Email of the user seeded by default.
pub const SEEDED_EMAIL: &str = "alice@example.com";
/// Password of the user seeded by default.
pub const SEEDED_PASSWORD: &str = "correct-horse-battery";
/// Withings user id of the user seeded by default.
pub const SEEDED_USERID: u64 = 1001;
/// Numbered users ([`User::numbered`], [`SandboxConfig::seed_users`]) have user ids above
/// this one: user `i` is `NUMBERED_USERID_BASE + i`. It is above [`DEMO_USERID`], so the two
/// never collide.
pub const NUMBERED_USERID_BASE: u64 = 1_000_000;
/// User id of the demo account (`mode=demo` on the authorize page, `action=getdemoaccess`).
pub const DEMO_USERID: u64 = 999999;

/// The four scopes Withings knows; anything else is refused.
pub const KNOWN_SCOPES: [&str; 4] = [
    "user.info",
    "user.metrics",
    "user.activity",
    "user.sleepevents",
];

/// Records per page of the data services that page (`getmeas`, `getactivity`,
/// `getworkouts`, sleep `getsummary`, heart `list`) unless
/// [`SandboxConfig::page_size`] says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// A registered partner application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret, also the HMAC key of signed calls.
    pub client_secret: String,
    /// Registered callback URLs; a `redirect_uri` must equal one of them (see
    /// [`LOOPBACK_CALLBACK`] for the one exception).
    pub callback_urls: Vec<String>,
}

impl App {
    /// An app with the given credentials and callbacks.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        callback_urls: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            callback_urls: callback_urls.into_iter().map(Into::into).collect(),
        }
    }
}

impl Default for App {
    /// The default app: [`DEFAULT_CLIENT_ID`], [`DEFAULT_CLIENT_SECRET`], callbacks
    /// [`LOOPBACK_CALLBACK`] and [`HTTPS_CALLBACK`].
    fn default() -> Self {
        Self::new(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            [LOOPBACK_CALLBACK, HTTPS_CALLBACK],
        )
    }
}

/// A Withings account that can log in on the authorize page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Withings user id, returned as `userid` by the token endpoint.
    pub userid: u64,
    /// Login email.
    pub email: String,
    /// Login password.
    pub password: String,
}

impl User {
    /// A user with the given id and credentials.
    pub fn new(userid: u64, email: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            userid,
            email: email.into(),
            password: password.into(),
        }
    }
}

impl User {
    /// User number `i` of a fleet: email `user<i>@example.com`, password
    /// `sandbox-password-<i>`, userid [`NUMBERED_USERID_BASE`]` + i`.
    ///
    /// ```
    /// use withings_sandbox::User;
    /// let user = User::numbered(7);
    /// assert_eq!(user.email, "user7@example.com");
    /// assert_eq!(user.password, "sandbox-password-7");
    /// assert_eq!(user.userid, 1_000_007);
    /// ```
    pub fn numbered(i: u32) -> Self {
        Self::new(
            NUMBERED_USERID_BASE + u64::from(i),
            format!("user{i}@example.com"),
            format!("sandbox-password-{i}"),
        )
    }
}

impl Default for User {
    /// The seeded user: [`SEEDED_USERID`], [`SEEDED_EMAIL`], [`SEEDED_PASSWORD`].
    fn default() -> Self {
        Self::new(SEEDED_USERID, SEEDED_EMAIL, SEEDED_PASSWORD)
    }
}

/// How a [`Sandbox`](crate::Sandbox) starts.
///
/// The default registers [`App::default`] and [`User::default`], does not auto-approve, and
/// uses Withings' lifetimes: access tokens 3 h, refresh tokens 1 year, codes 30 s, nonces
/// 30 min, a rotated refresh token dies 8 h after its successor was issued; 120 requests per
/// minute per client (answered status 601 beyond); a registered loopback callback without a port matches any port (see
/// [`SandboxConfig::exact_redirect_uris`]).
///
/// Any lifetime is accepted, up to [`Duration::MAX`]: one too long to add to the clock means
/// "a thousand years or more", never a panic.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub(crate) apps: Vec<App>,
    pub(crate) users: Vec<User>,
    pub(crate) auto_approve: bool,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
    pub(crate) code_lifetime: Duration,
    pub(crate) nonce_lifetime: Duration,
    pub(crate) old_refresh_grace: Duration,
    pub(crate) rate_limit: Option<u32>,
    pub(crate) rate_limit_window: Duration,
    pub(crate) exact_redirect_uris: bool,
    pub(crate) strict_rotation: bool,
    pub(crate) page_size: usize,
    pub(crate) loopback_notify: bool,
    pub(crate) admin_api: bool,
    pub(crate) data_through: Option<std::time::SystemTime>,
    pub(crate) ledger: Option<std::path::PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            apps: vec![App::default()],
            users: vec![User::default()],
            auto_approve: false,
            access_token_lifetime: Duration::from_secs(10_800),
            refresh_token_lifetime: Duration::from_secs(365 * 24 * 3600),
            code_lifetime: Duration::from_secs(30),
            nonce_lifetime: Duration::from_secs(30 * 60),
            old_refresh_grace: Duration::from_secs(8 * 3600),
            rate_limit: Some(120),
            rate_limit_window: Duration::from_secs(60),
            exact_redirect_uris: false,
            strict_rotation: false,
            page_size: DEFAULT_PAGE_SIZE,
            loopback_notify: false,
            admin_api: false,
            data_through: None,
            ledger: None,
        }
    }
}

impl SandboxConfig {
    /// Registers an app, replacing any app with the same client id.
    pub fn with_app(mut self, app: App) -> Self {
        self.apps.retain(|a| a.client_id != app.client_id);
        self.apps.push(app);
        self
    }

    /// Adds a user that can log in, replacing any user with the same id or email.
    pub fn with_user(mut self, user: User) -> Self {
        self.users
            .retain(|u| u.userid != user.userid && u.email != user.email);
        self.users.push(user);
        self
    }

    /// Adds users [`User::numbered`]`(1)` to `(n)`, for tests that need a fleet of users;
    /// any user with the same id or email is replaced. The seeded user stays unless
    /// [`without_users`](Self::without_users) comes first.
    ///
    /// Each can log in on the authorize page, or be given tokens at once with
    /// [`SandboxHandle::issue_tokens`](crate::SandboxHandle::issue_tokens).
    pub fn seed_users(mut self, n: u32) -> Self {
        let fleet: Vec<User> = (1..=n).map(User::numbered).collect();
        let emails: std::collections::HashSet<&str> =
            fleet.iter().map(|u| u.email.as_str()).collect();
        let ids = NUMBERED_USERID_BASE + 1..=NUMBERED_USERID_BASE + u64::from(n);
        self.users
            .retain(|u| !ids.contains(&u.userid) && !emails.contains(u.email.as_str()));
        self.users.extend(fleet);
        self
    }

    /// Removes every registered app, including the default one.
    pub fn without_apps(mut self) -> Self {
        self.apps.clear();
        self
    }

    /// Removes every user, including the seeded one. The demo user stays available.
    pub fn without_users(mut self) -> Self {
        self.users.clear();
        self
    }

    /// Skip the login/consent form: the authorize endpoint redirects with a code for the
    /// first user (or the demo user with `mode=demo`) at once.
    pub fn auto_approve(mut self, on: bool) -> Self {
        self.auto_approve = on;
        self
    }

    /// Lifetime of access tokens, returned as `expires_in` (default 10800 s). Sub-second
    /// parts are ignored in `expires_in` but honoured by the expiry check.
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// Lifetime of refresh tokens (default 1 year, as Withings). A refresh with an expired
    /// refresh token is answered `Invalid Params: invalid refresh_token`.
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// Lifetime of authorization codes (default 30 s).
    pub fn code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = lifetime;
        self
    }

    /// Lifetime of nonces from `getnonce` (default 30 min).
    pub fn nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// How long a rotated refresh token keeps working after its successor was issued, unless
    /// the successor's access token is used first (default 8 h).
    pub fn old_refresh_grace(mut self, grace: Duration) -> Self {
        self.old_refresh_grace = grace;
        self
    }

    /// Requests per client id within a [window](Self::rate_limit_window) (a minute by
    /// default) before status 601; `None` turns the limit off (default 120, the limit third
    /// parties report for Withings).
    pub fn rate_limit(mut self, per_minute: Option<u32>) -> Self {
        self.rate_limit = per_minute;
        self
    }

    /// Length of the sliding window the [rate limit](Self::rate_limit) counts requests in
    /// (default 60 s). A zero window never limits.
    pub fn rate_limit_window(mut self, window: Duration) -> Self {
        self.rate_limit_window = window;
        self
    }

    /// Whether a `redirect_uri` must equal a registered callback letter for letter (default
    /// `false`).
    ///
    /// By default a registered loopback `http` callback without a port, such as
    /// [`LOOPBACK_CALLBACK`], matches a `redirect_uri` on any port of any loopback host, as
    /// RFC 8252 §7.3 asks for native apps, so that a client listening on a free port can log
    /// in. Withings does not document this, and the real service may require an exact match:
    /// `true` turns the leniency off, to check that a client sends exactly the callback it
    /// registered.
    pub fn exact_redirect_uris(mut self, exact: bool) -> Self {
        self.exact_redirect_uris = exact;
        self
    }

    /// Whether a rotated refresh token presented again ends the whole grant (default
    /// `false`).
    ///
    /// Withings rotates the refresh token on every refresh and lets the old one work for 8 h
    /// (or until the new access token is used); a refresh that reuses it inside that window
    /// gets another pair. With strict rotation, a refresh token that was already exchanged
    /// once is never accepted again: the request is answered
    /// [`INVALID_REFRESH_TOKEN`](crate::error_text::INVALID_REFRESH_TOKEN), and every token
    /// of its chain (the newest refresh token and the access tokens issued since the login)
    /// stops working, as the OAuth 2.0 Security BCP (RFC 9700 §4.14.2) recommends for
    /// refresh token reuse. Each such event is counted in
    /// [`Counters::rotated_refresh_reused`](crate::Counters::rotated_refresh_reused), and in
    /// [`Counters::chains_killed`](crate::Counters::chains_killed) when a grant ended.
    ///
    /// It makes the sandbox a detector: a client that ever presents a rotated refresh token
    /// twice (two refreshes racing, a retry after a lost answer) loses its user's login.
    ///
    /// ```
    /// use withings_sandbox::{Sandbox, SandboxConfig, DEFAULT_CLIENT_ID};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sandbox = Sandbox::start(SandboxConfig::default().strict_rotation(true)).await?;
    /// // ... run the client under test ...
    /// assert_eq!(sandbox.handle().counters().rotated_refresh_reused, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn strict_rotation(mut self, on: bool) -> Self {
        self.strict_rotation = on;
        self
    }

    /// How many records a data service answers per page before `more` (default
    /// [`DEFAULT_PAGE_SIZE`]; 0 counts as 1). Withings does not document its page size; a
    /// small one makes a client's paging run on a month of data.
    pub fn page_size(mut self, records: usize) -> Self {
        self.page_size = records;
        self
    }

    /// Whether `subscribe` accepts `http` callback URLs on a loopback address (`127.0.0.1`,
    /// `[::1]`, `localhost`), so that a test can receive notifications (default `false`).
    ///
    /// Withings accepts only `https` callbacks on port 443 of a public host name; so does the
    /// sandbox unless this is on. Either way the sandbox calls the URL (`HEAD`) and refuses it
    /// unless it answers HTTP 200.
    pub fn loopback_notify(mut self, on: bool) -> Self {
        self.loopback_notify = on;
        self
    }

    /// Whether the admin HTTP API under `/admin/` is served (default `false`): counters,
    /// logins minted in bulk, new measurements, the clock, faults. See the crate's README.
    pub fn admin_api(mut self, on: bool) -> Self {
        self.admin_api = on;
        self
    }

    /// Writes the ledger to `path` (created, or truncated, at start; default none): one JSON
    /// line per token issued, refresh token presented, chain revoked by strict rotation,
    /// user revoked, and request counted against the rate limit, with the time on the
    /// sandbox's clock. Tokens appear only as the SHA-256 of their value. See the crate's
    /// README, "Ledger".
    pub fn ledger(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ledger = Some(path.into());
        self
    }

    /// The last day of every user's 30 days of data: the UTC day of `day` (default: the day
    /// before the sandbox starts). With a fixed day, every answer is the same on every run,
    /// whatever the date; without, the data follow the calendar and none lies in the future.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use withings_sandbox::SandboxConfig;
    /// // 2024-03-31: data from 2024-03-02 to 2024-03-31.
    /// let march_31 = UNIX_EPOCH + Duration::from_secs(1_711_843_200);
    /// let config = SandboxConfig::default().data_through(march_31);
    /// ```
    pub fn data_through(mut self, day: std::time::SystemTime) -> Self {
        self.data_through = Some(day);
        self
    }

    /// The registered apps.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// The users who can log in (the demo user aside).
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The request limit per client id and window, `None` if off.
    pub fn rate_limit_per_minute(&self) -> Option<u32> {
        self.rate_limit
    }
}
