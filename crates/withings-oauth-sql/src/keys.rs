//! [`Keyring`]: the keys that seal tokens at rest, one active and the others kept for reading.

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

    /// Reads the keys from a file (see [`parse`](Self::parse)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let path = path.as_ref();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::File {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Keyring::parse(&text)
    }

    /// The keys from the environment: [`KEYS_ENV`], else the file named by [`KEYS_FILE_ENV`],
    /// else `None` (tokens will be stored in clear text).
    pub fn from_env() -> Result<Option<Keyring>, KeyError> {
        if let Some(text) = std::env::var_os(KEYS_ENV) {
            let text = Zeroizing::new(
                text.into_string()
                    .map_err(|_| KeyError::Malformed { position: 1 })?,
            );
            if !text.trim().is_empty() {
                return Keyring::parse(&text).map(Some);
            }
        }
        match std::env::var_os(KEYS_FILE_ENV) {
            Some(path) if !path.is_empty() => Keyring::from_file(PathBuf::from(path)).map(Some),
            _ => Ok(None),
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
