//! The credential store file: one JSON document holding each user's stored credentials.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use withings_oauth::{Credentials, StoredCredentials, UserId};

use crate::error::CliError;
use crate::settings::APP_NAME;

/// `credentials.json` in the platform's data directory.
pub(crate) fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", APP_NAME).map(|d| d.data_dir().join("credentials.json"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: u32,
    users: BTreeMap<String, StoredCredentials>,
}

const FORMAT: u32 = 1;

/// A store file. Nothing is created until credentials are saved.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
}

impl Store {
    pub(crate) fn open(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn damaged(&self, what: impl std::fmt::Display) -> CliError {
        CliError::store(format!(
            "the credential store {} is damaged ({what}): fix or delete it, then run `withings-oauth login`",
            self.path.display()
        ))
    }

    fn read(&self) -> Result<BTreeMap<UserId, StoredCredentials>, CliError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(CliError::store(format!(
                    "cannot read the credential store {}: {e}; check its permissions or choose another with --store",
                    self.path.display()
                )));
            }
        };
        // serde_json's messages quote no input, only positions: safe to show.
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| self.damaged(e))?;
        if doc.format != FORMAT {
            return Err(self.damaged(format_args!(
                "format {} is not one this version reads",
                doc.format
            )));
        }
        doc.users
            .into_iter()
            .map(|(key, stored)| {
                let id: UserId = key
                    .parse()
                    .map_err(|_| self.damaged("a user id is not a number"))?;
                if id != stored.user_id {
                    return Err(
                        self.damaged(format_args!("the entry of user {id} is another user's"))
                    );
                }
                Ok((id, stored))
            })
            .collect()
    }

    fn write(&self, users: BTreeMap<UserId, StoredCredentials>) -> Result<(), CliError> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::store(format!(
                "cannot write the credential store {}: {e}; check the directory's permissions or choose another with --store",
                self.path.display()
            ))
        };
        let doc = Document {
            format: FORMAT,
            users: users
                .into_iter()
                .map(|(id, stored)| (id.to_string(), stored))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&doc).map_err(|e| fail(&e))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        // A temporary file (mode 0600 on Unix) renamed over the old one: a crash leaves the old
        // file or the new one, never half of each.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(&e))?;
        tmp.write_all(&json).map_err(|e| fail(&e))?;
        tmp.as_file().sync_all().map_err(|e| fail(&e))?;
        tmp.persist(&self.path).map_err(|e| fail(&e.error))?;
        Ok(())
    }

    /// The users with stored credentials.
    pub(crate) fn users(&self) -> Result<Vec<UserId>, CliError> {
        Ok(self.read()?.into_keys().collect())
    }

    /// The user to act on: `wanted`, or the only one stored.
    pub(crate) fn select_user(&self, wanted: Option<u64>) -> Result<UserId, CliError> {
        let users = self.users()?;
        if let Some(id) = wanted {
            let id = UserId::new(id);
            if users.contains(&id) {
                return Ok(id);
            }
            return Err(CliError::login_required(format!(
                "user {id} has no stored credentials in {}{}: run `withings-oauth login`",
                self.path.display(),
                list(&users, " (stored users: ", ")")
            )));
        }
        match users.as_slice() {
            [] => Err(CliError::login_required(format!(
                "not logged in (no credentials in {}): run `withings-oauth login`",
                self.path.display()
            ))),
            [only] => Ok(*only),
            several => Err(CliError::config(format!(
                "the store {} holds several users{}: choose one with --user ID",
                self.path.display(),
                list(several, " (", ")")
            ))),
        }
    }

    pub(crate) fn load(&self, user: UserId) -> Result<Option<Credentials>, CliError> {
        match self.read()?.remove(&user) {
            None => Ok(None),
            Some(stored) => Credentials::from_stored(stored)
                .map(Some)
                .map_err(|e| self.damaged(e)),
        }
    }

    pub(crate) fn save(&self, credentials: &Credentials) -> Result<(), CliError> {
        let mut users = self.read()?;
        users.insert(credentials.user_id(), credentials.reveal_for_storage());
        self.write(users)
    }

    /// Deletes a user's credentials; `false` if there were none.
    pub(crate) fn remove(&self, user: UserId) -> Result<bool, CliError> {
        let mut users = self.read()?;
        if users.remove(&user).is_none() {
            return Ok(false);
        }
        self.write(users)?;
        Ok(true)
    }
}

fn list(users: &[UserId], before: &str, after: &str) -> String {
    if users.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
    format!("{before}{}{after}", ids.join(", "))
}
