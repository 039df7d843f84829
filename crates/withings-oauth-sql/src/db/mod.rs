//! The database handle at the bottom of the crate: the pool of either backend, the URL it was
//! opened from (shown without its password), and the pool's connection checks. Every feature
//! above (the gathered calls, the leases, the pending logins, the rate buckets) takes a [`Db`];
//! nothing here knows of them.

mod error;
mod location;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_params;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_file;

use std::time::Duration;

use withings_oauth::StoreError;

pub(crate) use error::{RUN_MIGRATIONS, is_missing_table};
pub(crate) use location::Location;
#[cfg(feature = "postgres")]
pub(crate) use postgres::Suspicion;

use crate::options::{Backend, SqlOptions};

/// The pool of the backend the URL picked.
#[derive(Clone)]
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A pool, where it leads, and (PostgreSQL) whether its connections are checked before use.
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: Pool,
    pub(crate) location: Location,
    /// Raised when a connection was found closed: the pool then checks every connection it
    /// hands out for a while.
    #[cfg(feature = "postgres")]
    pub(crate) suspicion: Suspicion,
}

/// Runs `$body` with `$pool` bound to the concrete pool, whichever backend it is.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            $crate::db::Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}

/// Runs one write statement in a `BEGIN IMMEDIATE` transaction on a SQLite pool: the write
/// lock is taken first, waiting up to the busy timeout (a plain `BEGIN` would fail with
/// SQLITE_BUSY at once when it later writes). Gives the rows it changed.
#[cfg(feature = "sqlite")]
macro_rules! sqlite_immediate {
    ($pool:expr, $statement:expr) => {
        async {
            let mut tx = $pool.begin_with("BEGIN IMMEDIATE").await?;
            let rows = $statement.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(rows)
        }
        .await
    };
}

/// Runs one write statement on either backend (SQLite: in `BEGIN IMMEDIATE`); gives the rows
/// it changed.
macro_rules! execute_write {
    ($pool:expr, $statement:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            $crate::db::Pool::Sqlite(p) => $crate::db::sqlite_immediate!(p, $statement),
            #[cfg(feature = "postgres")]
            $crate::db::Pool::Postgres(p) => $statement.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) use sqlite_immediate;
pub(crate) use {execute_write, on_pool};

impl Db {
    /// Opens the pool the URL names.
    pub(crate) async fn open(url: &str, options: &SqlOptions) -> Result<Db, StoreError> {
        let location = Location::parse(url).map_err(StoreError::Other)?;
        #[cfg(feature = "postgres")]
        let suspicion = Suspicion::default();
        let pool = match location.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => sqlite::open(url, options, &location).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres => postgres::open(url, options, &location, suspicion.clone()).await?,
            #[allow(unreachable_patterns)]
            other => {
                return Err(StoreError::Other(format!(
                    "this build has no {other:?} support: build withings-oauth-sql with the feature `{}`",
                    format!("{other:?}").to_lowercase()
                )));
            }
        };
        Ok(Db {
            pool,
            location,
            #[cfg(feature = "postgres")]
            suspicion,
        })
    }

    /// A database failure, saying what to do, without the password.
    pub(crate) fn fail(&self, action: &str, error: sqlx::Error) -> StoreError {
        self.failure(action, &error)
    }

    /// [`fail`](Self::fail), for an error that several callers share.
    pub(crate) fn failure(&self, action: &str, error: &sqlx::Error) -> StoreError {
        error::database_failure(&self.location, action, error)
    }

    /// The URL without its password, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.location.shown
    }
}

/// Now, in Unix seconds (the credentials' timestamps).
pub(crate) fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Now, in Unix milliseconds (SQLite's leases and rate buckets: its processes share a clock).
#[cfg(feature = "sqlite")]
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A duration in whole milliseconds, for the database.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A user id as the database keeps it.
pub(crate) fn user_id(user: withings_oauth::UserId) -> Result<i64, StoreError> {
    i64::try_from(user.get()).map_err(|_| {
        StoreError::Other(format!(
            "user id {user} is too large for the token database (at most {})",
            i64::MAX
        ))
    })
}
