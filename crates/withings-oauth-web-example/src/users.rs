//! [`Users`]: the application's own users, their Argon2 password hashes, and sign-in through
//! `axum-login`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum_login::{AuthUser, AuthnBackend};

use crate::db::{Db, reason};

/// The users table. `demo` marks the seeded demo accounts, whose passwords are published.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS web_example_users \
    (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, demo BOOLEAN NOT NULL)";
const GET: &str = "SELECT name, password_hash, demo FROM web_example_users WHERE name = $1";
const ADD: &str = "INSERT INTO web_example_users (name, password_hash, demo) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET password_hash = $2, demo = $3";
const SEED: &str = "INSERT INTO web_example_users (name, password_hash, demo) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO NOTHING";

/// The demo accounts seeded when the example runs on a sandbox: their names; each one's
/// password is [`demo_password`].
pub const DEMO_USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// The published password of demo account `name`: `demo-<name>`. The page shows it when demo
/// accounts are on, as it shows the sandbox's accounts.
pub fn demo_password(name: &str) -> String {
    format!("demo-{name}")
}

/// A user of the application. Its `Debug` shows its name only.
#[derive(Clone, sqlx::FromRow)]
pub struct User {
    name: String,
    password_hash: String,
    demo: bool,
}

impl User {
    /// Its name: the owner of its Withings logins.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.name.clone()
    }

    /// The password hash: a changed password signs the user's sessions out.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// A sign-in form's content. Its `Debug` hides the password.
#[derive(Clone, serde::Deserialize)]
pub struct Credentials {
    /// The user's name.
    pub name: String,
    /// The password typed.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Why the users could not be read or written. Its message is for the operator's log.
#[derive(Debug, thiserror::Error)]
#[error(
    "the users table could not {action} ({reason}): check that the database is reachable, then retry"
)]
pub struct UsersError {
    action: &'static str,
    reason: String,
}

impl UsersError {
    fn new(action: &'static str, reason: String) -> Self {
        Self { action, reason }
    }
}

/// The application's users, in memory ([`Users::in_memory`]) or in the table
/// `web_example_users` of its database, shared by its instances. Demo accounts sign in only
/// when [`demo_accounts`](Self::demo_accounts) is on: a database seeded on a sandbox and later
/// used against the real Withings does not let anyone in with a published password.
#[derive(Clone, Debug)]
pub struct Users {
    backend: Backend,
    demo_accounts: bool,
}

#[derive(Clone, Debug)]
enum Backend {
    Memory(Arc<Mutex<BTreeMap<String, User>>>),
    Sql(Db),
}

impl Users {
    /// Users in memory, shared by the clones; demo accounts off.
    pub fn in_memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
            demo_accounts: false,
        }
    }

    /// The users in `db`, creating the table if it is missing.
    pub(crate) async fn open(db: Db) -> Result<Self, UsersError> {
        db.create(CREATE)
            .await
            .map_err(|e| UsersError::new("be created", reason(&e)))?;
        Ok(Self {
            backend: Backend::Sql(db),
            demo_accounts: false,
        })
    }

    /// Whether the demo accounts may sign in (default off).
    pub fn demo_accounts(mut self, on: bool) -> Self {
        self.demo_accounts = on;
        self
    }

    /// Adds the demo accounts ([`DEMO_USERS`], passwords [`demo_password`]) that are missing;
    /// existing users of those names are left as they are.
    pub async fn seed_demo_accounts(&self) -> Result<(), UsersError> {
        for name in DEMO_USERS {
            if self.get(name).await?.is_some() {
                continue;
            }
            let user = User {
                name: name.to_owned(),
                password_hash: hash(demo_password(name)).await?,
                demo: true,
            };
            self.write(&user, false).await?;
        }
        Ok(())
    }

    /// Adds user `name` with `password`, or sets the password of the user of that name (who is
    /// then no demo account).
    pub async fn add(&self, name: &str, password: &str) -> Result<(), UsersError> {
        let user = User {
            name: name.to_owned(),
            password_hash: hash(password.to_owned()).await?,
            demo: false,
        };
        self.write(&user, true).await
    }

    /// Writes `user`, over an existing user of that name only if `replace`.
    async fn write(&self, user: &User, replace: bool) -> Result<(), UsersError> {
        let statement = if replace { ADD } else { SEED };
        match &self.backend {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                if replace || !map.contains_key(&user.name) {
                    map.insert(user.name.clone(), user.clone());
                }
                return Ok(());
            }
            Backend::Sql(Db::Postgres { pool, .. }) => sqlx::query(statement)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(user.demo)
                .execute(pool)
                .await
                .map(drop),
            Backend::Sql(Db::Sqlite(pool)) => sqlx::query(statement)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(user.demo)
                .execute(pool)
                .await
                .map(drop),
        }
        .map_err(|e| UsersError::new("be written", reason(&e)))
    }

    /// The user `name`, whatever its kind.
    async fn get(&self, name: &str) -> Result<Option<User>, UsersError> {
        match &self.backend {
            Backend::Memory(map) => {
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                return Ok(map.get(name).cloned());
            }
            Backend::Sql(Db::Postgres { pool, .. }) => {
                sqlx::query_as(GET).bind(name).fetch_optional(pool).await
            }
            Backend::Sql(Db::Sqlite(pool)) => {
                sqlx::query_as(GET).bind(name).fetch_optional(pool).await
            }
        }
        .map_err(|e| UsersError::new("be read", reason(&e)))
    }

    /// The user `name` if they may sign in: demo accounts only when they are on.
    async fn allowed(&self, name: &str) -> Result<Option<User>, UsersError> {
        Ok(self
            .get(name)
            .await?
            .filter(|user| !user.demo || self.demo_accounts))
    }
}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = UsersError;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<User>, UsersError> {
        let user = self.allowed(&credentials.name).await?;
        // An unknown name costs a hash check too, so that timing does not tell which names exist.
        let hash = match &user {
            Some(user) => user.password_hash.clone(),
            None => unknown_user_hash().to_owned(),
        };
        let password = credentials.password;
        let verified = tokio::task::spawn_blocking(move || {
            password_auth::verify_password(password, &hash).is_ok()
        })
        .await
        .map_err(|e| UsersError::new("check a password", e.to_string()))?;
        Ok(user.filter(|_| verified))
    }

    async fn get_user(&self, name: &String) -> Result<Option<User>, UsersError> {
        self.allowed(name).await
    }
}

/// The Argon2 hash of `password`, computed off the async threads (it takes a while, on
/// purpose).
async fn hash(password: String) -> Result<String, UsersError> {
    tokio::task::spawn_blocking(move || password_auth::generate_hash(password))
        .await
        .map_err(|e| UsersError::new("hash a password", e.to_string()))
}

/// A hash no password matches in practice, checked for names that are not users.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut random = [0u8; 32];
        let _ = getrandom::fill(&mut random);
        password_auth::generate_hash(random)
    })
}
