//! The credential store: a [`FileStore`], with the CLI's user selection and error messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use withings_oauth::UserId;
use withings_oauth::{DEFAULT_LEASE_TTL, Expected, StoreError, StoredEntry, TokenStore};
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
        StoreError::Corrupt { path, reason } => CliError::store(format!(
            "the credential store {} is damaged ({reason}); it was left untouched: fix or delete it (its users will have to run `withings-oauth login` again)",
            path.display()
        )),
        other => CliError::store(other.to_string()),
    }
}

/// A store file. Nothing is created until credentials are saved.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    inner: Arc<FileStore>,
}

impl Store {
    pub(crate) fn open(path: PathBuf) -> Result<Self, CliError> {
        let inner = FileStore::open(path)
            .map_err(|e| CliError::config(format!("{e} (set with --store or WITHINGS_STORE)")))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.inner.path()
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
                self.path().display(),
                list(&users, " (stored users: ", ")")
            )));
        }
        match users.as_slice() {
            [] => Err(CliError::login_required(format!(
                "not logged in (no credentials in {}): run `withings-oauth login`",
                self.path().display()
            ))),
            [only] => Ok(*only),
            several => Err(CliError::config(format!(
                "the store {} holds several users{}: choose one with --user ID",
                self.path().display(),
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
