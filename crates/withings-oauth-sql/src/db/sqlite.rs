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
        // A connection still inside a transaction is closed, not handed out. A commit that
        // failed on a disk error (a full disk, a file-size limit) leaves SQLite rolled back on
        // its own, the driver's rollback then fails too, and the driver counts the
        // transaction as open for good: every later transaction on that connection would be
        // refused ("begin_with at non-zero transaction depth") long after the disk recovered,
        // and the process could save nothing.
        .before_acquire(|connection, _| {
            Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(connection)) })
        })
        .connect_with(connect)
        .await
        .map_err(|e| super::error::database_failure(location, "open", &e))?;
    Ok(Pool::Sqlite(pool))
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use super::*;

    #[tokio::test]
    async fn a_connection_left_in_a_transaction_after_a_failed_rollback_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
        let location = Location::parse(&url).unwrap();
        let options = SqlOptions::default().max_connections(1);
        let Pool::Sqlite(pool) = open(&url, &options, &location).await.unwrap() else {
            unreachable!("a SQLite URL")
        };
        {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            // SQLite ends the transaction on its own, as after a commit that failed on a disk
            // error: the driver's rollback on drop then fails, and it still counts one open.
            tx.execute("ROLLBACK").await.unwrap();
        }
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("the next transaction runs on a sound connection");
        tx.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        tx.commit().await.unwrap();
    }
}
