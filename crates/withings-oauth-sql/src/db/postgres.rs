//! Opening the PostgreSQL backend: a pool, optionally in its own schema, whose connections are
//! checked before use when idle for a while or when one was just found closed.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use withings_oauth::StoreError;

use super::{Location, Pool};
use crate::options::SqlOptions;

/// How long a connection may sit idle in the pool before it is checked again when acquired.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// How long, after a connection was found closed, every connection is checked before use: its
/// neighbours in the pool were likely closed with it (a database restart, a failover).
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// Until when the pool checks every connection before handing it out.
#[derive(Clone)]
pub(crate) struct Suspicion(Arc<(Instant, AtomicU64)>);

impl Default for Suspicion {
    fn default() -> Self {
        Self(Arc::new((Instant::now(), AtomicU64::new(0))))
    }
}

impl Suspicion {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection was found closed: check every one for a while.
    pub(crate) fn raise(&self) {
        let until = self.millis().saturating_add(SUSPECT_FOR.as_millis() as u64);
        self.0.1.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether connections are checked before use now.
    pub(crate) fn raised(&self) -> bool {
        self.millis() < self.0.1.load(Ordering::Relaxed)
    }
}

pub(super) async fn open(
    url: &str,
    options: &SqlOptions,
    location: &Location,
    suspicion: Suspicion,
) -> Result<Pool, StoreError> {
    super::postgres_params::check(url, &location.shown)?;
    let mut connect = PgConnectOptions::from_str(url)
        .map_err(|e| super::error::database_failure(location, "read its URL", &e))?;
    if let Some(schema) = options.schema_value() {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(StoreError::Other(
                "the PostgreSQL schema name must be 1 to 63 letters, digits or `_`".into(),
            ));
        }
        connect = connect.options([("search_path", schema)]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections_value(10))
        .min_connections(options.min_connections_value(10))
        .acquire_timeout(options.acquire_timeout_value())
        // A connection idle for a while is checked before it is handed out (the server may
        // have closed it); one in use a moment ago is not, unless one was just found closed:
        // under load, that check was a round trip for every statement.
        .test_before_acquire(false)
        .before_acquire(move |connection, meta| {
            let trusted = meta.idle_for < CHECK_IDLE_AFTER && !suspicion.raised();
            Box::pin(async move {
                // One that fails its check is closed quietly, and another handed out.
                Ok(trusted || sqlx::Connection::ping(connection).await.is_ok())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| super::error::database_failure(location, "connect", &e))?;
    Ok(Pool::Postgres(pool))
}
