//! The credential store: a [`FileStore`] for one person (the default), or a SQL store
//! (`sqlite://...`, `postgres://...`, feature `sql`) for a fleet; with the CLI's user selection
//! and error messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use withings_oauth::UserId;
use withings_oauth::{
    DEFAULT_LEASE_TTL, Expected, StoreError, StoreLocation, StoredEntry, TokenStore,
};
use withings_oauth_store::FileStore;

use crate::error::CliError;
use crate::settings::APP_NAME;

/// `tokens.json` in the platform's data directory.
pub(crate) fn default_path() -> Option<PathBuf> {
    FileStore::default_path(APP_NAME)
}

/// The store's error, saying what to do.
pub(crate) fn store_error(error: &StoreError) -> CliError {
    match error {
        StoreError::Corrupt {
            location: location @ StoreLocation::Path(_),
            reason,
        } => CliError::store(format!(
            "the credential store {location} is damaged ({reason}); it was left untouched: fix or delete it (its users will have to run `withings-oauth login` again)"
        )),
        other => CliError::store(other.to_string()),
    }
}

/// A `--store` value that names a database rather than a file.
pub(crate) fn database_url(store: &Path) -> Option<&str> {
    let text = store.to_str()?;
    let lower = text.to_ascii_lowercase();
    ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
        .then_some(text)
}

/// A store file, or a database. Nothing is created in a file store until credentials are
/// saved.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<dyn TokenStore>,
    /// The file's path or the database URL without its password.
    location: String,
    #[cfg(feature = "sql")]
    sql: Option<withings_oauth_sql::SqlStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The store `--store` names: a database URL, or a file path.
    pub(crate) async fn open_setting(store: PathBuf) -> Result<Self, CliError> {
        match database_url(&store) {
            Some(url) => Self::connect(url).await,
            None => Self::open(store),
        }
    }

    pub(crate) fn open(path: PathBuf) -> Result<Self, CliError> {
        let inner = FileStore::open(path)
            .map_err(|e| CliError::config(format!("{e} (set with --store or WITHINGS_STORE)")))?;
        Ok(Self {
            location: inner.path().display().to_string(),
            inner: Arc::new(inner),
            #[cfg(feature = "sql")]
            sql: None,
        })
    }

    #[cfg(feature = "sql")]
    async fn connect(url: &str) -> Result<Self, CliError> {
        use withings_oauth_sql::{SqlOptions, SqlStore};
        let options = SqlOptions::from_env()
            .map_err(|e| CliError::config(e.to_string()))?
            // A command that waits for another process's refresh says so, rather than hanging
            // silently.
            .on_lease_wait(Arc::new(|wait| crate::out::note!("{wait}")));
        let sql = SqlStore::connect(url, options)
            .await
            .map_err(|e| store_error(&e))?;
        if let Some(warning) = sql.clear_text_warning() {
            crate::out::note!("warning: {warning}");
        }
        Ok(Self {
            location: sql.location().to_owned(),
            inner: Arc::new(sql.clone()),
            sql: Some(sql),
        })
    }

    #[cfg(not(feature = "sql"))]
    async fn connect(_url: &str) -> Result<Self, CliError> {
        Err(CliError::config(
            "this withings-oauth was built without SQL stores: rebuild it with the feature `sql`, or give --store a file path",
        ))
    }

    /// Where the credentials are: a file path, or a database URL without its password.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// The SQL store, for the `store` commands.
    #[cfg(feature = "sql")]
    pub(crate) fn sql(&self) -> Result<&withings_oauth_sql::SqlStore, CliError> {
        self.sql.as_ref().ok_or_else(|| {
            CliError::config(format!(
                "the store {} is a file; this command works on a database: set --store or WITHINGS_STORE to sqlite:///path/tokens.db or postgres://user@host/db",
                self.location
            ))
        })
    }

    /// The SQL store, if this is one.
    #[cfg(feature = "sql")]
    pub(crate) fn sql_store(&self) -> Option<&withings_oauth_sql::SqlStore> {
        self.sql.as_ref()
    }

    /// Lets the store finish its background work (a database releases the refresh leases this
    /// process held, so other processes need not wait for them to expire).
    pub(crate) async fn close(&self) {
        #[cfg(feature = "sql")]
        if let Some(sql) = &self.sql {
            sql.close().await;
        }
    }

    /// Whether the store answers (and a database's migrations are applied): a readiness probe.
    pub(crate) async fn check_ready(&self) -> Result<(), StoreError> {
        #[cfg(feature = "sql")]
        if let Some(sql) = &self.sql {
            return sql.check_ready().await;
        }
        self.inner.users().await.map(drop)
    }

    /// The store, for sessions.
    pub(crate) fn shared(&self) -> Arc<dyn TokenStore> {
        self.inner.clone()
    }

    /// The users the store has an entry for.
    pub(crate) async fn users(&self) -> Result<Vec<UserId>, CliError> {
        self.inner.users().await.map_err(|e| store_error(&e))
    }

    pub(crate) async fn load(&self, user: UserId) -> Result<Option<StoredEntry>, CliError> {
        let entry = self.inner.load(user).await.map_err(|e| store_error(&e))?;
        Ok(entry.map(|e| e.entry))
    }

    /// Deletes the user's entry as it is now. It holds the user's refresh lease meanwhile, so no
    /// refresh can slip in between the read and the delete; without `force`, an entry that
    /// still changes (another program logged the user in again) is kept, and the user is told.
    /// `force` deletes whatever is there.
    pub(crate) async fn delete(&self, user: UserId, force: bool) -> Result<(), CliError> {
        if force {
            return self
                .inner
                .force_delete(user)
                .await
                .map_err(|e| store_error(&e));
        }
        let _lease = self
            .inner
            .lease(user, DEFAULT_LEASE_TTL)
            .await
            .map_err(|e| store_error(&e))?;
        let expected = match self.inner.load(user).await.map_err(|e| store_error(&e))? {
            None => return Ok(()),
            Some(entry) => Expected::Version(entry.version),
        };
        match self.inner.delete(user, expected).await {
            Err(StoreError::Conflict(_)) => Err(CliError::store(format!(
                "user {user}'s stored login changed while logging out (another program refreshed it or logged in again); nothing was deleted: run `withings-oauth logout` again, or `withings-oauth logout --force`"
            ))),
            other => other.map_err(|e| store_error(&e)),
        }
    }

    /// The user to act on: `wanted`, or the only one stored.
    pub(crate) async fn select_user(&self, wanted: Option<u64>) -> Result<UserId, CliError> {
        let users = self.users().await?;
        if let Some(id) = wanted {
            let id = UserId::new(id);
            if users.contains(&id) {
                return Ok(id);
            }
            return Err(CliError::login_required(format!(
                "user {id} has no stored credentials in {}{}: run `withings-oauth login`",
                self.location,
                list(&users, " (stored users: ", ")")
            )));
        }
        match users.as_slice() {
            [] => Err(CliError::login_required(format!(
                "not logged in (no credentials in {}): run `withings-oauth login`",
                self.location
            ))),
            [only] => Ok(*only),
            several => Err(CliError::config(format!(
                "the store {} holds several users{}: choose one with --user ID",
                self.location,
                list(several, " (", ")")
            ))),
        }
    }
}

fn list(users: &[UserId], before: &str, after: &str) -> String {
    if users.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
    format!("{before}{}{after}", ids.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_sql_store_and_paths_the_file_store() {
        for url in [
            "sqlite:///var/lib/t.db",
            "postgres://u@h/db",
            "postgresql://u@h/db",
        ] {
            assert_eq!(database_url(Path::new(url)), Some(url));
        }
        for path in ["/home/a/tokens.json", "tokens.json", "./sqlite/tokens.json"] {
            assert_eq!(database_url(Path::new(path)), None);
        }
    }
}
