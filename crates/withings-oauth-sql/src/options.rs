//! [`SqlOptions`]: how to open a [`SqlStore`](crate::SqlStore), and the [`Backend`] a URL picks.

use std::fmt;
use std::time::Duration;

use withings_oauth::DEFAULT_LEASE_TTL;

use crate::keys::Keyring;

/// The database a store URL picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `sqlite://path`: one file, one machine (feature `sqlite`, on by default).
    Sqlite,
    /// `postgres://...` or `postgresql://...`: several instances on several machines
    /// (feature `postgres`).
    Postgres,
}

/// How to open a [`SqlStore`](crate::SqlStore).
///
/// ```
/// use std::time::Duration;
/// use withings_oauth_sql::{Keyring, SqlOptions};
///
/// let options = SqlOptions::default()
///     .keys(Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?)
///     .max_connections(16)
///     .max_lease(Duration::from_secs(60));
/// # Ok::<(), withings_oauth_sql::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SqlOptions {
    pub(crate) keys: Option<Keyring>,
    pub(crate) run_migrations: bool,
    max_connections: Option<u32>,
    min_connections: u32,
    busy_timeout: Duration,
    acquire_timeout: Duration,
    pub(crate) max_lease: Duration,
    pub(crate) schema: Option<String>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            keys: None,
            run_migrations: true,
            max_connections: None,
            min_connections: 0,
            busy_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
            max_lease: DEFAULT_LEASE_TTL,
            schema: None,
        }
    }
}

impl SqlOptions {
    /// The defaults, with the keys from the environment ([`Keyring::from_env`]): tokens are
    /// encrypted when `WITHINGS_STORE_KEYS` or `WITHINGS_STORE_KEYS_FILE` is set.
    pub fn from_env() -> Result<Self, crate::KeyError> {
        Ok(Self {
            keys: Keyring::from_env()?,
            ..Self::default()
        })
    }

    /// Encrypts tokens with these keys (the first seals, all open).
    pub fn keys(mut self, keys: Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Whether opening the store applies its migrations (default `true`). Turn it off when
    /// the database's owner runs them (see the crate docs); opening then checks that every
    /// migration was applied and says which one is missing.
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// The pool's size (default 4 for SQLite, 10 for PostgreSQL).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = Some(connections.max(1));
        self
    }

    /// How many connections the pool keeps open even when idle (default 0: opened when
    /// needed, closed after a while unused). Opened in the background once the store is
    /// open, so that a burst of refreshes after a quiet spell does not wait for connections
    /// (each a process to start on the PostgreSQL server, and a TLS handshake). At most
    /// [`max_connections`](Self::max_connections).
    pub fn min_connections(mut self, connections: u32) -> Self {
        self.min_connections = connections;
        self
    }

    /// SQLite: how long a write waits for another process's write to finish (default 30 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long to wait for a connection, the first one included (default 10 s): a database
    /// that is down is reported after this.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The longest refresh lease the store grants (default
    /// [`DEFAULT_LEASE_TTL`](withings_oauth::DEFAULT_LEASE_TTL), 90 s): how long the others
    /// wait before taking over from an instance that died while refreshing. Keep it above the
    /// longest refresh (a token call of at most 30 s, then a save).
    pub fn max_lease(mut self, ttl: Duration) -> Self {
        self.max_lease = ttl.max(Duration::from_millis(1));
        self
    }

    /// PostgreSQL: keeps the tables in this schema (created if missing when migrations run)
    /// instead of the connection's `search_path`. Letters, digits and `_` only.
    pub fn postgres_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

impl SqlOptions {
    pub(crate) fn max_connections_value(&self, default: u32) -> u32 {
        self.max_connections.unwrap_or(default)
    }

    pub(crate) fn min_connections_value(&self, default_max: u32) -> u32 {
        self.min_connections
            .min(self.max_connections_value(default_max))
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn busy_timeout_value(&self) -> Duration {
        self.busy_timeout
    }

    pub(crate) fn acquire_timeout_value(&self) -> Duration {
        self.acquire_timeout
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn schema_value(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("keys", &self.keys)
            .field("run_migrations", &self.run_migrations)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("max_lease", &self.max_lease)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}
