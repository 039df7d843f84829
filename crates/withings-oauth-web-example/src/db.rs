//! [`Db`]: the application's own connection to its database (the one the token store uses),
//! for its tables: users, sessions, accounts.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// A pool on the application's database: PostgreSQL or SQLite, as its URL says.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// PostgreSQL, and the schema the connections work in (their `search_path`'s first).
    Postgres { pool: PgPool, schema: String },
    /// SQLite: the file the token store opened (and made its user's alone) first.
    Sqlite(SqlitePool),
}

impl Db {
    /// Connects to `url` (`postgres://...` or `sqlite://...`).
    pub(crate) async fn open(url: &str) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            let schema: String = sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&pool)
                .await?;
            Ok(Db::Postgres { pool, schema })
        } else {
            // The token store created the file; this pool only joins it.
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }

    /// Runs `statement` (no parameters), again up to 3 times if it fails: instances starting
    /// together on one PostgreSQL database race to create the same tables, and
    /// `CREATE TABLE IF NOT EXISTS` is not atomic there (the loser finds the table on the next
    /// try).
    pub(crate) async fn create(&self, statement: &str) -> Result<(), sqlx::Error> {
        let mut attempt = 0;
        loop {
            let done = match self {
                Db::Postgres { pool, .. } => sqlx::query(statement).execute(pool).await.map(drop),
                Db::Sqlite(pool) => sqlx::query(statement).execute(pool).await.map(drop),
            };
            match done {
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                done => return done,
            }
        }
    }
}

/// A database failure as a short reason for the log: the driver's message, never the URL.
pub(crate) fn reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "no connection within the timeout".to_owned(),
        sqlx::Error::Io(e) => e.to_string(),
        _ => "a database error".to_owned(),
    }
}
