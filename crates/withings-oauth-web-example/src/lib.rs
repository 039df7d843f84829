//! A multi-user web application that connects its users' Withings accounts: the server-side
//! counterpart of the CLI demo, and a reference for backend integrators to copy.
//!
//! - **Sign-in** for the application's own users ([`Users`]: Argon2 password hashes through
//!   `password-auth`, sign-in through `axum-login`, sessions through `tower-sessions` in the
//!   same database as everything else). The session cookie is `HttpOnly`, `SameSite=Lax`,
//!   signed with a key derived from the [`CookieKey`], `Secure` and `__Host-` when the
//!   application is served over https; its id is renewed at sign-in.
//! - **Per-user isolation**: the home page shows the signed-in user's own Withings link (one
//!   query), and every route acts on the signed-in user only; the owner of a login is the
//!   signed-in user ([`withings_oauth_axum::LoginOwner`]), never a query parameter.
//! - **CSRF defence**: every state-changing route (sign-in, sign-out, connect, disconnect) is
//!   `POST` and behind [`withings_oauth_axum::refuse_cross_site`] (`Sec-Fetch-Site`, then
//!   `Origin`), which answers a 403 page.
//! - **Login bindings the server issued**: the connect and callback routes of
//!   [`withings_oauth_axum::WithingsLogin`], whose binding cookie is encrypted with the
//!   [`CookieKey`] and finishes a login only for its owner.
//! - **Error pages without internals**: what to do and a short reference; the details (a
//!   database's message, Withings' answer) go to the log under that reference.
//!
//! The binary (`withings-web-example`) keeps everything in a database ([`Shared::open`]: a
//! SQLite file by default, PostgreSQL for several instances) and runs against an embedded
//! sandbox, or an external Withings (the real one, or one sandbox shared by several
//! instances); `withings-web-example --help` and the crate's README list its settings. The
//! end-to-end tests run it in-process, several instances at once sharing one [`Shared`] in
//! memory, and as several processes on one PostgreSQL database.
//!
//! ```
//! use withings_oauth::Client;
//! use withings_oauth_axum::CookieKey;
//! use withings_oauth_web_example::{Config, Shared, router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .client_id("sandbox-client-id")
//!     .client_secret("sandbox-client-secret")
//!     .redirect_uri("http://127.0.0.1:8080/callback")
//!     .build()?;
//! let shared = Shared::in_memory();
//! shared.users.add("alice", "a long passphrase").await?;
//! let app: axum::Router = router(Config::new(client, CookieKey::generate()?), shared);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod accounts;
mod db;
mod key_file;
mod operations;
mod pages;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, MemoryStore as MemorySessions, SessionManagerLayer, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};
use withings_oauth::chrono::TimeDelta;
use withings_oauth::{
    Client, DEFAULT_PENDING_LOGIN_TTL, GetMeas, MemoryPendingLogins, MemoryStore,
    PendingLoginStore, Scope, Scopes, Session, SessionError, StoreError, TokenStore, UserId,
    measure_type,
};
use withings_oauth_axum::{CookieKey, LoginOwner, WithingsLogin, refuse_cross_site};
use withings_oauth_sql::{SqlOptions, SqlStore};

pub use accounts::{Accounts, AccountsError};
pub use key_file::{KeyFileError, read_cookie_key, read_or_create_cookie_key};
pub use operations::operations_router;
pub use users::{Credentials, DEMO_USERS, User, Users, UsersError, demo_password};

use crate::db::Db;
use crate::pages::Connection;

/// How long a session lasts without a request, by default: 8 hours.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// What the instances of the application share: the pending logins, the credentials, the
/// accounts, the users and their sessions, all in memory ([`Shared::in_memory`]) or all in one
/// database ([`Shared::open`]).
#[derive(Clone)]
pub struct Shared {
    /// Logins waiting for their callback.
    pub pending: Arc<dyn PendingLoginStore>,
    /// Withings credentials.
    pub tokens: Arc<dyn TokenStore>,
    /// Which Withings user each application user connected.
    pub accounts: Accounts,
    /// The application's users.
    pub users: Users,
    sessions: Sessions,
    /// The token store, when it is a database: what the readiness probe asks.
    database: Option<SqlStore>,
}

/// Where sessions live.
#[derive(Clone, Debug)]
enum Sessions {
    Memory(MemorySessions),
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

impl Shared {
    /// Everything in memory.
    pub fn in_memory() -> Self {
        Self {
            pending: Arc::new(MemoryPendingLogins::new()),
            tokens: Arc::new(MemoryStore::new()),
            accounts: Accounts::in_memory(),
            users: Users::in_memory(),
            sessions: Sessions::Memory(MemorySessions::default()),
            database: None,
        }
    }

    /// Everything in memory but the pending logins, which are `pending`'s (a store whose clock
    /// a test moves, say).
    pub fn in_memory_with_pending(pending: Arc<dyn PendingLoginStore>) -> Self {
        Self {
            pending,
            ..Self::in_memory()
        }
    }

    /// Everything in the database at `url` (`sqlite://file.db`, or `postgres://...` for
    /// several instances): the tokens in a [`SqlStore`] opened with `options` (encrypted when
    /// they carry keys), the pending logins in its
    /// [`pending_logins`](SqlStore::pending_logins) (waiting at most `pending_lifetime`), and
    /// the application's tables `web_example_users`, `web_example_sessions` and
    /// `web_example_accounts`. Opening applies the store's migrations and creates the tables.
    ///
    /// ```
    /// use withings_oauth::DEFAULT_PENDING_LOGIN_TTL;
    /// use withings_oauth_sql::SqlOptions;
    /// use withings_oauth_web_example::Shared;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let url = format!("sqlite://{}", dir.path().join("app.db").display());
    /// let shared = Shared::open(&url, SqlOptions::default(), DEFAULT_PENDING_LOGIN_TTL).await?;
    /// assert_eq!(shared.accounts.get("alice").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(
        url: &str,
        options: SqlOptions,
        pending_lifetime: TimeDelta,
    ) -> Result<Self, OpenError> {
        let store = SqlStore::connect(url, options).await?;
        let db = Db::open(url).await.map_err(OpenError::database)?;
        let sessions = match &db {
            Db::Postgres { pool, schema } => {
                let store = PostgresStore::new(pool.clone())
                    .with_schema_name(schema)
                    .and_then(|s| s.with_table_name("web_example_sessions"))
                    .map_err(OpenError::Sessions)?;
                migrate(|| store.migrate()).await?;
                Sessions::Postgres(store)
            }
            Db::Sqlite(pool) => {
                let store = SqliteStore::new(pool.clone())
                    .with_table_name("web_example_sessions")
                    .map_err(OpenError::Sessions)?;
                migrate(|| store.migrate()).await?;
                Sessions::Sqlite(store)
            }
        };
        Ok(Self {
            pending: Arc::new(store.pending_logins().with_ttl(pending_lifetime)),
            tokens: Arc::new(store.clone()),
            database: Some(store),
            accounts: Accounts::open(db.clone()).await?,
            users: Users::open(db).await?,
            sessions,
        })
    }

    /// Whether the application can serve: the database answers and its migrations are
    /// applied (always, in memory). The error says what is wrong, without a password.
    pub async fn check_ready(&self) -> Result<(), withings_oauth::StoreError> {
        match &self.database {
            Some(store) => store.check_ready().await,
            None => Ok(()),
        }
    }

    /// Deletes expired sessions every hour, for as long as the returned task runs (the
    /// in-memory store drops them when they are read).
    pub fn spawn_session_cleanup(&self) -> tokio::task::JoinHandle<()> {
        use tower_sessions::ExpiredDeletion as _;
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(3600);
            let ended = match sessions {
                Sessions::Memory(_) => return,
                Sessions::Postgres(store) => store.continuously_delete_expired(period).await,
                Sessions::Sqlite(store) => store.continuously_delete_expired(period).await,
            };
            if let Err(e) = ended {
                pages::logged(&format!("expired sessions are no longer deleted: {e}"));
            }
        })
    }
}

/// Runs a session table migration, again up to 3 times: instances starting together race to
/// create the table.
async fn migrate<F, Fut>(run: F) -> Result<(), OpenError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = sqlx::Result<()>>,
{
    let mut attempt = 0;
    loop {
        match run().await {
            Ok(()) => return Ok(()),
            Err(_) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(OpenError::database(e)),
        }
    }
}

/// Why [`Shared::open`] failed. For the operator: it names the database's failure, never its
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The token store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The application's tables could not be reached or created.
    #[error(
        "the application's tables could not be opened ({0}): check that the database is reachable"
    )]
    Database(String),
    /// The session table's name was refused.
    #[error("the session table could not be named ({0})")]
    Sessions(String),
    /// The accounts table could not be opened.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The users table could not be opened.
    #[error(transparent)]
    Users(#[from] UsersError),
}

impl OpenError {
    fn database(error: sqlx::Error) -> Self {
        OpenError::Database(db::reason(&error))
    }
}

/// A sandbox account, shown on the home page so that a visitor can log in at the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxAccount {
    /// Its email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// How the application runs: its Withings client, its cookie key, lifetimes, and what the page
/// shows of the sandbox.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The Withings client; its redirect URI's path is the callback route, and an `https`
    /// redirect URI means the application is served over https (`Secure`, `__Host-` cookies).
    pub client: Client,
    /// The server's cookie key, the same on every instance.
    pub cookie_key: CookieKey,
    /// How long a started login waits for its callback (default 10 minutes).
    pub pending_login_lifetime: TimeDelta,
    /// How long a session lasts without a request (default [`DEFAULT_SESSION_LIFETIME`]).
    pub session_lifetime: Duration,
    /// Whether the demo accounts may sign in and are listed on the page (default off).
    pub demo_accounts: bool,
    /// The sandbox's accounts, listed on the page (empty against the real Withings).
    pub sandbox_accounts: Vec<SandboxAccount>,
}

impl Config {
    /// The defaults, with `client` and `cookie_key`.
    pub fn new(client: Client, cookie_key: CookieKey) -> Self {
        Self {
            client,
            cookie_key,
            pending_login_lifetime: DEFAULT_PENDING_LOGIN_TTL,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            demo_accounts: false,
            sandbox_accounts: Vec::new(),
        }
    }
}

/// The scopes the application asks for.
pub fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

#[derive(Clone)]
struct App {
    withings: WithingsLogin,
    accounts: Accounts,
    demo_accounts: bool,
    sandbox_accounts: Arc<Vec<SandboxAccount>>,
}

/// The signed-in user of a request: the owner of its Withings logins.
struct SignedIn(User);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let auth = AuthSession::<Users>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        auth.user
            .map(SignedIn)
            .ok_or_else(|| Redirect::to("/").into_response())
    }
}

impl LoginOwner for SignedIn {
    fn owner_id(&self) -> String {
        self.0.name().to_owned()
    }
}

/// The application: `/` (the sign-in form, or the signed-in user's Withings link),
/// `POST /sign-in`, `POST /sign-out`, `POST /disconnect`, and the Withings routes
/// (`POST /withings/connect` and the callback at the client's redirect URI's path). Every
/// `POST` is refused when it comes from another site's page.
pub fn router(config: Config, shared: Shared) -> Router {
    let secure = config.client.redirect_uri().scheme() == "https";
    let record = shared.accounts.clone();
    let withings = WithingsLogin::builder::<SignedIn>(
        config.client,
        shared.pending,
        shared.tokens,
        &config.cookie_key,
    )
    .scopes(scopes())
    .after_login("/")
    .pending_login_lifetime(config.pending_login_lifetime)
    .on_connected(move |connected| {
        let record = record.clone();
        async move { record.set(&connected.owner, connected.user_id).await }
    })
    .build();
    let app = App {
        withings: withings.clone(),
        accounts: shared.accounts,
        demo_accounts: config.demo_accounts,
        sandbox_accounts: Arc::new(config.sandbox_accounts),
    };
    let routes = Router::new()
        .route("/", get(home))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/disconnect", post(disconnect))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .merge(withings.router())
        .with_state(app);
    let users = shared.users.demo_accounts(config.demo_accounts);
    let session_key = config.cookie_key.derive("withings-web-example session");
    let lifetime = time::Duration::try_from(config.session_lifetime).unwrap_or(time::Duration::MAX);
    match shared.sessions {
        Sessions::Memory(store) => {
            with_sessions(routes, store, users, session_key, lifetime, secure)
        }
        Sessions::Postgres(store) => {
            with_sessions(routes, store, users, session_key, lifetime, secure)
        }
        Sessions::Sqlite(store) => {
            with_sessions(routes, store, users, session_key, lifetime, secure)
        }
    }
}

/// `routes` behind the session and sign-in layers, sessions in `store`.
fn with_sessions<S: SessionStore + Clone>(
    routes: Router,
    store: S,
    users: Users,
    key: cookie::Key,
    lifetime: time::Duration,
    secure: bool,
) -> Router {
    // `__Host-` on https: browsers accept it only with `Secure`, `Path=/` and no `Domain`, so a
    // sibling subdomain can't plant a session of its own.
    let name = if secure {
        "__Host-web-example-session"
    } else {
        "web-example-session"
    };
    let sessions = SessionManagerLayer::new(store)
        .with_name(name)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(lifetime))
        .with_signed(key);
    routes.layer(AuthManagerLayerBuilder::new(users, sessions).build())
}

async fn home(State(app): State<App>, auth: AuthSession<Users>) -> Response {
    let Some(user) = auth.user else {
        let page = pages::signed_out(false, app.demo_accounts, &app.sandbox_accounts);
        return pages::html(StatusCode::OK, page);
    };
    let connection = match app.accounts.get(user.name()).await {
        Ok(Some(withings_user)) => Some(connection(&app.withings, withings_user).await),
        Ok(None) => None,
        Err(e) => return unavailable(&e),
    };
    let page = pages::signed_in(user.name(), connection.as_ref(), &app.sandbox_accounts);
    pages::html(StatusCode::OK, page)
}

async fn sign_in(
    State(app): State<App>,
    mut auth: AuthSession<Users>,
    axum::Form(credentials): axum::Form<Credentials>,
) -> Response {
    let user = match auth.authenticate(credentials).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let page = pages::signed_out(true, app.demo_accounts, &app.sandbox_accounts);
            return pages::html(StatusCode::UNAUTHORIZED, page);
        }
        Err(e) => return unavailable(&e),
    };
    // A new session id at every sign-in, whoever was signed in before (session fixation).
    let signed_in = async {
        if auth.user.is_some() {
            auth.logout().await?;
        }
        auth.login(&user).await?;
        auth.session
            .cycle_id()
            .await
            .map_err(axum_login::Error::Session)
    };
    match signed_in.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn sign_out(mut auth: AuthSession<Users>) -> Response {
    match auth.logout().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => unavailable(&e),
    }
}

/// Disconnects the signed-in user's Withings account: nobody else's, whatever the request says.
async fn disconnect(State(app): State<App>, SignedIn(user): SignedIn) -> Response {
    let owner = user.name();
    let withings_user = match app.accounts.get(owner).await {
        Ok(Some(withings_user)) => withings_user,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(e) => return unavailable(&e),
    };
    match app.withings.disconnect(withings_user).await {
        // Disconnected, or the login is gone anyway: forget it.
        Ok(()) => forget(&app, owner).await,
        Err(e) if e.login_required() => forget(&app, owner).await,
        Err(e) => pages::failure(
            StatusCode::BAD_GATEWAY,
            "Disconnecting from Withings failed; nothing changed. Try again in a moment.",
            &e,
        ),
    }
}

async fn forget(app: &App, owner: &str) -> Response {
    match app.accounts.remove(owner).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => unavailable(&e),
    }
}

/// The page shown when the application's database can't be used.
fn unavailable(error: &dyn std::fmt::Display) -> Response {
    pages::failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "The application can't reach its data right now. Try again in a moment.",
        error,
    )
}

async fn connection(withings: &WithingsLogin, user: UserId) -> Connection {
    let session = match withings.session(user).await {
        Ok(session) => session,
        Err(e) => {
            return Connection {
                user,
                scopes: String::new(),
                expires: String::new(),
                login_required: e.login_required(),
                weight: Err(pages::logged(&e)),
            };
        }
    };
    let weight = last_weight(&session).await;
    let status = session.status();
    Connection {
        user,
        scopes: status.scopes.to_string(),
        expires: status.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        login_required: status.login_required || matches!(&weight, Err(e) if e.login_required()),
        weight: weight.map_err(|e| pages::logged(&e)),
    }
}

async fn last_weight(session: &Session) -> Result<Option<(f64, String)>, SessionError> {
    let groups = session
        .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
        .await?;
    Ok(groups
        .groups
        .iter()
        .filter_map(|g| Some((g.taken_at()?, g.measure(measure_type::WEIGHT)?.real_value())))
        .max_by_key(|(at, _)| *at)
        .map(|(at, kg)| (kg, at.format("%Y-%m-%d").to_string())))
}
