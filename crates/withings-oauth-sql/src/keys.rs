//! [`Keyring`]: the keys that seal tokens at rest, one active and the others kept for reading.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use zeroize::Zeroizing;

/// The environment variable holding the keys: `id:base64key`, comma- or newline-separated, the
/// first one active.
pub const KEYS_ENV: &str = "WITHINGS_STORE_KEYS";

/// The environment variable naming a file that holds the keys (same format, one per line,
/// `#` comments), read when [`KEYS_ENV`] is unset.
pub const KEYS_FILE_ENV: &str = "WITHINGS_STORE_KEYS_FILE";

/// The length of a key: 32 bytes (256 bits), written as base64.
pub const KEY_LEN: usize = 32;

/// The longest key id.
const MAX_ID_LEN: usize = 32;

/// Keys for sealing tokens at rest: the first is active (it seals every write), the others
/// only open what they sealed earlier, until [`SqlStore::rotate_keys`](crate::SqlStore::rotate_keys)
/// moved every row to the active key.
///
/// A key is 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`) named by a short
/// id (letters, digits, `-`, `_`; at most 32) that is stored next to each ciphertext. Key
/// bytes are zeroized when the keyring is dropped; neither `Debug` nor an error shows them.
///
/// ```
/// use withings_oauth_sql::Keyring;
///
/// let keys = Keyring::parse(
///     "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
/// )?;
/// assert_eq!(keys.active_id(), "k2");
/// assert_eq!(keys.ids().collect::<Vec<_>>(), ["k2", "k1"]);
/// assert!(!format!("{keys:?}").contains("AAEC"));
/// # Ok::<(), withings_oauth_sql::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>,
}

impl Keyring {
    /// Reads `id:base64key` entries separated by commas or newlines (blank lines and lines
    /// starting with `#` are skipped); the first is active.
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        let mut keys: Vec<(String, Zeroizing<[u8; KEY_LEN]>)> = Vec::new();
        let entries = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let position = index + 1;
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(KeyError::Malformed { position });
            };
            let id = id.trim();
            let valid_id = !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(KeyError::BadId { position });
            }
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(encoded.trim()))
                    .map_err(|_| KeyError::BadKey {
                        id: id.to_owned(),
                        problem: "it is not base64",
                    })?,
            );
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            if decoded.len() != KEY_LEN {
                return Err(KeyError::BadKey {
                    id: id.to_owned(),
                    problem: "it is not 32 bytes long",
                });
            }
            key.copy_from_slice(&decoded);
            if keys.iter().any(|(known, _)| known == id) {
                return Err(KeyError::DuplicateId(id.to_owned()));
            }
            keys.push((id.to_owned(), key));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// Reads the keys from a file (see [`parse`](Self::parse)), which must be readable and
    /// writable by its owner only (mode 0600), as a file holding a secret must be.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = path.as_ref();
        let file_error = |source| KeyError::File {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(file_error)?;
        if open_to_others(&file.metadata().map_err(file_error)?) {
            return Err(KeyError::FileOpenToOthers {
                path: path.to_owned(),
            });
        }
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut file, &mut text).map_err(file_error)?;
        Keyring::parse(&text)
    }

    /// The keys from the environment: [`KEYS_ENV`], else the file named by [`KEYS_FILE_ENV`],
    /// else `None` (tokens will be stored in clear text).
    ///
    /// A variable set but empty is refused rather than read as "no key", and so is, when
    /// neither is set, a variable whose name is close to theirs (`WITHINGS_STORE_KEY`,
    /// `WITHINGS_STORE_KEYS_FIL`): either would store tokens in clear text where keys were
    /// meant.
    pub fn from_env() -> Result<Option<Keyring>, KeyError> {
        Keyring::from_vars(std::env::vars_os())
    }

    /// [`from_env`](Self::from_env) on the given variables, so that tests need not change the
    /// process's environment.
    fn from_vars(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Option<Keyring>, KeyError> {
        let mut keys = None;
        let mut file = None;
        let mut near_miss = None;
        for (name, value) in vars {
            if name == KEYS_ENV {
                keys = Some(value);
            } else if name == KEYS_FILE_ENV {
                file = Some(value);
            } else if let Some(name) = name.to_str().filter(|name| close_to_ours(name)) {
                near_miss.get_or_insert_with(|| name.to_owned());
            }
        }
        let set = |value: &OsString| !value.to_string_lossy().trim().is_empty();
        match (keys, file) {
            (Some(text), _) => {
                if !set(&text) {
                    return Err(KeyError::EmptyVariable { name: KEYS_ENV });
                }
                let text = Zeroizing::new(
                    text.into_string()
                        .map_err(|_| KeyError::Malformed { position: 1 })?,
                );
                Keyring::parse(&text).map(Some)
            }
            (None, Some(path)) => {
                if !set(&path) {
                    return Err(KeyError::EmptyVariable {
                        name: KEYS_FILE_ENV,
                    });
                }
                Keyring::from_file(PathBuf::from(path)).map(Some)
            }
            (None, None) => match near_miss {
                Some(found) => Err(KeyError::MisspelledVariable { found }),
                None => Ok(None),
            },
        }
    }

    /// The id of the active key, the one that seals every write.
    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every key id, the active one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    pub(crate) fn active(&self) -> (&str, &[u8; KEY_LEN]) {
        let (id, key) = &self.keys[0];
        (id, key)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&[u8; KEY_LEN]> {
        self.keys
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, key)| &**key)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_id())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether a file's mode lets group or others read or change it.
#[cfg(unix)]
fn open_to_others(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 != 0
}

#[cfg(not(unix))]
fn open_to_others(_metadata: &std::fs::Metadata) -> bool {
    false
}

/// Whether an environment variable's name looks like a misspelling of [`KEYS_ENV`] or
/// [`KEYS_FILE_ENV`]: one of them in another case, a name starting with `WITHINGS_STORE_KEY`,
/// or one at most two letters away from either.
fn close_to_ours(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("WITHINGS_STORE_KEY")
        || [KEYS_ENV, KEYS_FILE_ENV]
            .iter()
            .any(|ours| edit_distance(&upper, ours) <= 2)
}

/// The Levenshtein distance between two names, or `usize::MAX` when their lengths differ by
/// more than 2.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return usize::MAX;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, &y) in b.iter().enumerate() {
            let replace = previous[j] + usize::from(x != y);
            current.push(replace.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Keys that can't be used. No message shows key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key in the text.
    #[error(
        "no key was given: write `id:base64key` entries, e.g. `k1:$(head -c 32 /dev/urandom | base64)`"
    )]
    Empty,
    /// An entry is not `id:base64key`.
    #[error("key entry {position} is not `id:base64key`: fix {KEYS_ENV} or the key file")]
    Malformed {
        /// Which entry, from 1.
        position: usize,
    },
    /// A key id is empty, too long or has other characters than letters, digits, `-`, `_`.
    #[error("key entry {position} has an invalid id: use at most 32 letters, digits, `-` or `_`")]
    BadId {
        /// Which entry, from 1.
        position: usize,
    },
    /// The key itself can't be used.
    #[error(
        "key `{id}` can't be used ({problem}): a key is 32 random bytes in base64, e.g. `head -c 32 /dev/urandom | base64`"
    )]
    BadKey {
        /// The key's id.
        id: String,
        /// What is wrong, e.g. "it is not 32 bytes long".
        problem: &'static str,
    },
    /// Two keys have the same id.
    #[error("two keys are named `{0}`: give each key its own id")]
    DuplicateId(String),
    /// [`KEYS_ENV`] or [`KEYS_FILE_ENV`] is set but empty (or blank): it would otherwise mean
    /// no key, and tokens stored in clear text.
    #[error(
        "{name} is set but empty: set a key (`id:base64key`, e.g. `k1:$(head -c 32 /dev/urandom | base64)`), or unset the variable to store tokens in clear text"
    )]
    EmptyVariable {
        /// The variable.
        name: &'static str,
    },
    /// Neither [`KEYS_ENV`] nor [`KEYS_FILE_ENV`] is set, but a variable whose name is close
    /// to theirs is: probably a misspelling, which would store tokens in clear text.
    #[error(
        "the environment variable {found} is set, but neither {KEYS_ENV} nor {KEYS_FILE_ENV} is: rename it to one of them (or unset it to store tokens in clear text)"
    )]
    MisspelledVariable {
        /// The name of the variable found (never its value).
        found: String,
    },
    /// The key file can be read or changed by group or others (its mode is not 0600).
    #[error(
        "the key file {} holds the store's keys and other users can read or change it: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    FileOpenToOthers {
        /// The file.
        path: PathBuf,
    },
    /// The key file can't be read.
    #[error("could not read the key file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect()
    }

    #[test]
    fn an_empty_variable_is_refused_not_read_as_no_key() {
        for value in ["", "  ", "\n"] {
            for name in [KEYS_ENV, KEYS_FILE_ENV] {
                let error = Keyring::from_vars(vars(&[(name, value)])).unwrap_err();
                assert!(
                    matches!(error, KeyError::EmptyVariable { name: n } if n == name),
                    "{name}={value:?}: {error:?}"
                );
                let message = error.to_string();
                assert!(
                    message.contains(name) && message.contains("unset"),
                    "{message}"
                );
            }
        }
        // An empty WITHINGS_STORE_KEYS does not fall back to the file either.
        let error =
            Keyring::from_vars(vars(&[(KEYS_ENV, ""), (KEYS_FILE_ENV, "/nowhere")])).unwrap_err();
        assert!(matches!(error, KeyError::EmptyVariable { name: KEYS_ENV }));
    }

    #[test]
    fn a_misspelled_variable_is_refused_and_named_without_its_value() {
        for name in [
            "WITHINGS_STORE_KEY",
            "WITHINGS_STORE_KEYS_FIL",
            "WITHINGS_STORE_KEYS_PATH",
            "withings_store_keys",
            "WITHING_STORE_KEYS",
            "WITHINGS_STORES_KEYS_FILE",
        ] {
            let error = Keyring::from_vars(vars(&[("HOME", "/home/a"), (name, KEY)])).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(&error, KeyError::MisspelledVariable { found } if found == name),
                "{name}: {error:?}"
            );
            assert!(
                message.contains(name)
                    && message.contains(KEYS_ENV)
                    && message.contains(KEYS_FILE_ENV),
                "{message}"
            );
            assert!(!message.contains("AAEC"), "{message}");
        }
    }

    #[test]
    fn unrelated_variables_and_the_right_names_are_read() {
        let none = vars(&[
            ("WITHINGS_STORE", "/home/a/tokens.json"),
            ("WITHINGS_CLIENT_ID", "x"),
            ("WITHINGS_TEST_DATABASE_URL", "postgres://h/db"),
            ("WITHINGS_SQL_BUCKET_URL", "sqlite://t.db"),
        ]);
        assert!(Keyring::from_vars(none.clone()).unwrap().is_none());
        let mut with_key = none;
        with_key.extend(vars(&[(KEYS_ENV, KEY)]));
        let keys = Keyring::from_vars(with_key).unwrap().unwrap();
        assert_eq!(keys.active_id(), "k1");
        // A near miss next to a variable that is set is not a misspelling.
        let keys =
            Keyring::from_vars(vars(&[(KEYS_ENV, KEY), ("WITHINGS_STORE_KEY", "x")])).unwrap();
        assert!(keys.is_some());
    }

    #[test]
    fn names_are_close_within_two_letters() {
        assert_eq!(edit_distance(KEYS_ENV, KEYS_ENV), 0);
        assert_eq!(edit_distance("WITHINGS_STORE_KEYZ", KEYS_ENV), 1);
        assert_eq!(edit_distance("WITHINGS_STROE_KEYS", KEYS_ENV), 2);
        assert!(!close_to_ours("WITHINGS_STORE"));
        assert!(!close_to_ours("WITHINGS_WEB_DATABASE"));
    }
}
