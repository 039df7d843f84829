//! [`SqlOptions`]: how to open a [`SqlStore`](crate::SqlStore), and the [`Backend`] a URL picks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use withings_oauth::UserId;

use crate::keys::Keyring;

/// How long a refresh lease lasts in the database unless renewed, by default: what another
/// instance waits, at most, after the holder died. See [`SqlOptions::lease_ttl`].
pub const DEFAULT_DATABASE_LEASE: Duration = Duration::from_secs(2);

/// What a store tells its caller when it has been waiting for another holder's lease for a
/// second: see [`SqlOptions::on_lease_wait`].
pub type OnLeaseWait = Arc<dyn Fn(&LeaseWait) + Send + Sync>;

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
///     .lease_ttl(Duration::from_secs(3));
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
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_renewal: Option<Duration>,
    pub(crate) on_lease_wait: Option<OnLeaseWait>,
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
            lease_ttl: DEFAULT_DATABASE_LEASE,
            lease_renewal: None,
            on_lease_wait: None,
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

    /// How long a refresh lease lasts in the database before it is renewed (default
    /// [`DEFAULT_DATABASE_LEASE`], 2 s; at least 1 s, so that a refresh request gets at least
    /// [`MIN_REQUEST_TIMEOUT`](withings_oauth::MIN_REQUEST_TIMEOUT) under it, ending
    /// [`LEASE_SLACK`](withings_oauth::LEASE_SLACK) before it): how long other instances wait, at
    /// most, before taking over from one that died while refreshing. While its refresh runs,
    /// the holder's store renews it every [`lease_renewal`](Self::lease_renewal), up to the
    /// time to live its caller asked for; a refresh request under it goes with a timeout that
    /// ends before it does, so a longer lease allows slower answers from Withings, and a
    /// shorter one recovers sooner. See the crate docs, "The refresh lease".
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How often the store renews the leases it holds, all in one statement (default a
    /// quarter of [`lease_ttl`](Self::lease_ttl)). Kept below half the time to live, so that a
    /// renewal that is slow or lost is made up by the next one.
    pub fn lease_renewal(mut self, period: Duration) -> Self {
        self.lease_renewal = Some(period.max(Duration::from_millis(10)));
        self
    }

    /// Called once per wait when taking a user's lease has waited a second for another
    /// holder: a command-line program tells its user which user is waited for, by whom, and
    /// how long at most. Every such wait is also logged (`tracing`, level INFO).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use withings_oauth_sql::SqlOptions;
    ///
    /// let options = SqlOptions::default().on_lease_wait(Arc::new(|wait| eprintln!("{wait}")));
    /// # let _ = options;
    /// ```
    pub fn on_lease_wait(mut self, tell: OnLeaseWait) -> Self {
        self.on_lease_wait = Some(tell);
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

    /// The heartbeat's period: as set, kept below half the lease's time to live.
    pub(crate) fn lease_renewal_value(&self) -> Duration {
        self.lease_renewal
            .unwrap_or(self.lease_ttl / 4)
            .min(self.lease_ttl / 2)
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
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_renewal", &self.lease_renewal_value())
            .field("on_lease_wait", &self.on_lease_wait.is_some())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A wait for another holder's refresh lease that has lasted a second: what
/// [`SqlOptions::on_lease_wait`] is told, once per wait.
///
/// ```
/// use std::time::Duration;
/// use withings_oauth::UserId;
/// use withings_oauth_sql::LeaseWait;
///
/// let wait = LeaseWait::new(UserId::new(1001), Some(4242), Duration::from_secs(88));
/// assert_eq!(
///     wait.to_string(),
///     "user 1001's tokens are being refreshed by another process (pid 4242); waiting for it, at most 88 s"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseWait {
    /// The user whose lease is held.
    pub user: UserId,
    /// The process id of the holder, as it wrote it in the lease (on its own machine), if it
    /// did.
    pub holder_pid: Option<u32>,
    /// The longest the holder may still keep the lease: it is renewed while its refresh runs,
    /// up to the time to live its caller asked for.
    pub at_most: Duration,
}

impl LeaseWait {
    /// A wait for `user`'s lease, held by process `holder_pid` at most `at_most` longer.
    pub fn new(user: UserId, holder_pid: Option<u32>, at_most: Duration) -> Self {
        Self {
            user,
            holder_pid,
            at_most,
        }
    }
}

impl fmt::Display for LeaseWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}'s tokens are being refreshed by ", self.user)?;
        match self.holder_pid {
            Some(pid) if pid == std::process::id() => {
                f.write_str("another task of this process")?
            }
            Some(pid) => write!(f, "another process (pid {pid})")?,
            None => f.write_str("another process")?,
        }
        write!(
            f,
            "; waiting for it, at most {} s",
            self.at_most.as_secs_f64().ceil() as u64
        )
    }
}
