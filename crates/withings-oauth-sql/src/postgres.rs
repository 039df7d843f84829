//! Opening the PostgreSQL backend: a pool, optionally in its own schema.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use withings_oauth::StoreError;

use crate::location::Location;
use crate::store::{Pool, SqlOptions, Suspicion};

/// How long a connection may sit idle in the pool before it is checked again when acquired.
const CHECK_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) async fn open(
    url: &str,
    options: &SqlOptions,
    location: &Location,
    suspicion: Suspicion,
) -> Result<Pool, StoreError> {
    crate::postgres_params::check(url, &location.shown)?;
    let mut connect = PgConnectOptions::from_str(url)
        .map_err(|e| crate::error::database_failure(location, "read its URL", &e))?;
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
        .map_err(|e| crate::error::database_failure(location, "connect", &e))?;
    Ok(Pool::Postgres(pool))
}
