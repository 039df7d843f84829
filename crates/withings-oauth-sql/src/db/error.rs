//! Database failures as [`StoreError`]s that say what to do, and never show a password.

use withings_oauth::{StoreError, StoreLocation};

use super::Location;

/// How to apply the migrations, for messages about a database without them.
pub(crate) const RUN_MIGRATIONS: &str = "run the migrations: open the store once with migrations on (the default), or apply withings-oauth-sql's migrations yourself (`sqlx migrate run --source migrations/<backend>`, or `withings_oauth_sql::SQLITE_MIGRATIONS.run(&pool)` / `POSTGRES_MIGRATIONS`)";

/// Whether the error says a table is missing: the migrations were not applied.
pub(crate) fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    }
}

/// A failure of `action` ("read a login") on the database at `location`.
pub(crate) fn database_failure(
    location: &Location,
    action: &str,
    error: &sqlx::Error,
) -> StoreError {
    let shown = &location.shown;
    if let Some(refusal) = encryption_refusal(shown, error) {
        return refusal;
    }
    let detail = location.scrub(error.to_string());
    let message = if is_missing_table(error) {
        format!(
            "the token database {shown} has no withings-oauth tables (could not {action}): {RUN_MIGRATIONS}"
        )
    } else {
        match error {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01" | "28000") => format!(
                    "the token database {shown} refused the login ({}): check the user name and password of the store URL",
                    location.scrub(db.message().to_owned())
                ),
                Some("3D000") => format!(
                    "the token database {shown} does not exist: create it, or fix the store URL"
                ),
                Some("42501") => format!(
                    "the database user of {shown} may not {action} ({detail}): grant it access to the withings-oauth tables"
                ),
                Some("5" | "517" | "261" | "6") => format!(
                    "the token database {shown} stayed locked by another program past the busy timeout (could not {action}): retry, or stop the program holding it"
                ),
                _ => format!("the token database {shown} could not {action} ({detail}): retry"),
            },
            sqlx::Error::Tls(_) => tls_failure(shown, &detail),
            sqlx::Error::Io(io) if is_tls_refusal(io) => tls_failure(shown, &detail),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => format!(
                "could not reach the token database {shown} to {action} ({detail}): check that it is running and reachable, then retry"
            ),
            sqlx::Error::Configuration(_) => {
                format!("the store URL {shown} can't be used ({detail}): fix it")
            }
            _ => format!(
                "the token database {shown} could not {action} ({detail}): retry, or check the database"
            ),
        }
    };
    StoreError::Other(message)
}

/// A write the database's triggers refused (migration 0005): a token in clear text in an
/// encrypted database, or one sealed with a retired key. Their messages start with
/// `withings-oauth:`.
fn encryption_refusal(shown: &str, error: &sqlx::Error) -> Option<StoreError> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let message = db.message();
    let (problem, fix) = if message.contains("withings-oauth: clear text refused") {
        (
            "is encrypted and refused a login in clear text from this program",
            format!(
                "give this program the store's keys ({}) and start it again",
                crate::keys::KEYS_ENV
            ),
        )
    } else if message.contains("withings-oauth: a retired key") {
        (
            "refused a login sealed with a key that a rotation retired",
            format!(
                "load the newer key first ({}=<new id>:<new key>,<old id>:<old key>) and start this program again",
                crate::keys::KEYS_ENV
            ),
        )
    } else {
        return None;
    };
    Some(StoreError::Encryption {
        store: StoreLocation::Database(shown.to_owned()),
        problem: problem.to_owned(),
        fix,
    })
}

/// A TLS handshake with the database that failed.
fn tls_failure(shown: &str, detail: &str) -> String {
    format!(
        "TLS with the token database {shown} failed ({detail}): check the URL's sslmode, and with verify-ca or verify-full its sslrootcert (the certificate of the authority that signed the server's)"
    )
}

/// Whether an I/O error is TLS refusing the server (its certificate, say): sqlx reports those
/// as I/O errors.
fn is_tls_refusal(error: &std::io::Error) -> bool {
    #[cfg(feature = "postgres")]
    {
        error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = error;
        false
    }
}
