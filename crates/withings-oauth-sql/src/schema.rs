//! The tables: the migrations applied when a store opens, or checked when their owner applies
//! them.

use std::time::Duration;

use withings_oauth::StoreError;

use crate::db::{Db, Pool, RUN_MIGRATIONS, is_missing_table, on_pool};
use crate::options::SqlOptions;

/// The migrations applied, to check a database migrated by someone else.
const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success = TRUE";

/// Applies the migrations (with `run_migrations`, the default), or checks that none is missing.
pub(crate) async fn prepare(db: &Db, options: &SqlOptions) -> Result<(), StoreError> {
    let migrator = migrator(db);
    if options.run_migrations {
        #[cfg(feature = "postgres")]
        if let (Pool::Postgres(p), Some(schema)) = (&db.pool, &options.schema) {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(p)
                .await
                .map_err(|e| db.fail("create its schema", e))?;
        }
        // Several processes opening a new SQLite file at once may race to apply the first
        // migration; the loser finds it applied on the next attempt.
        let mut attempts = 0;
        loop {
            let result = on_pool!(&db.pool, p => migrator.run(p).await);
            match result {
                Ok(()) => return Ok(()),
                Err(_) if attempts < 3 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempts)).await;
                }
                Err(e) => return Err(migration_failed(db, e)),
            }
        }
    }
    check_migrations(db).await
}

/// Checks that the database answers and that every migration this build knows is applied.
pub(crate) async fn check_migrations(db: &Db) -> Result<(), StoreError> {
    let migrator = migrator(db);
    let applied: Result<Vec<i64>, sqlx::Error> = on_pool!(&db.pool, p => {
        sqlx::query_scalar(APPLIED_MIGRATIONS).fetch_all(p).await
    });
    let applied = match applied {
        Ok(applied) => applied,
        Err(e) if is_missing_table(&e) => Vec::new(),
        Err(e) => return Err(db.fail("read its migrations", e)),
    };
    match migrator.iter().find(|m| !applied.contains(&m.version)) {
        None => Ok(()),
        Some(missing) => Err(StoreError::Other(format!(
            "the token database {} lacks migration {} ({}): {RUN_MIGRATIONS}",
            db.shown(),
            missing.version,
            missing.description,
        ))),
    }
}

fn migrator(db: &Db) -> &'static sqlx::migrate::Migrator {
    match &db.pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(_) => &crate::SQLITE_MIGRATIONS,
        #[cfg(feature = "postgres")]
        Pool::Postgres(_) => &crate::POSTGRES_MIGRATIONS,
    }
}

fn migration_failed(db: &Db, error: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    let shown = db.shown();
    let message = match error {
        MigrateError::VersionMissing(version) => format!(
            "the token database {shown} was migrated by a newer version of withings-oauth-sql (migration {version} is unknown here): upgrade this program"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "migration {version} of the token database {shown} differs from this program's: the database was migrated by another build; restore the original migration files"
        ),
        MigrateError::Execute(e) => {
            return db.fail("apply its migrations", e);
        }
        other => format!(
            "could not apply the migrations of the token database {shown}: {}",
            db.location.scrub(other.to_string())
        ),
    };
    StoreError::Other(message)
}
