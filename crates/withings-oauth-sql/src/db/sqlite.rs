//! Opening the SQLite backend: one private file (see `sqlite_file`), WAL, a busy timeout, full
//! sync.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use withings_oauth::StoreError;

use super::{Location, Pool};
use crate::options::SqlOptions;

pub(super) async fn open(
    url: &str,
    options: &SqlOptions,
    location: &Location,
) -> Result<Pool, StoreError> {
    let path = Location::sqlite_path(url);
    if path.is_empty() || path.starts_with(':') {
        return Err(StoreError::Other(format!(
            "the store URL {url} names no file: write sqlite:///absolute/path.db or sqlite://relative/path.db"
        )));
    }
    super::sqlite_file::prepare(Path::new(path))?;
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Readers don't block the writer, and the writer doesn't block readers.
        .journal_mode(SqliteJournalMode::Wal)
        // A write that returned survives a power cut (the store contract's durability).
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.busy_timeout_value());
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections_value(4))
        .min_connections(options.min_connections_value(4))
        .acquire_timeout(options.acquire_timeout_value())
        // A file has no server to drop a connection: no round trip to check one.
        .test_before_acquire(false)
        .connect_with(connect)
        .await
        .map_err(|e| super::error::database_failure(location, "open", &e))?;
    Ok(Pool::Sqlite(pool))
}
