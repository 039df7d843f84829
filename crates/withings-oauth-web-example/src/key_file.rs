//! The cookie key in a file: read (a file its user's alone), or generated and written once for
//! the SQLite default.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use withings_oauth::check_private_file;
use withings_oauth_axum::{CookieKey, CookieKeyError};

/// Why a cookie key file could not be used. It names the file, never the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("the cookie key file {path} could not be {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was tried.
        action: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Others can read or change the file, or it is a link or another user's.
    #[error("the cookie key file is not private: {0}")]
    NotPrivate(#[from] withings_oauth::StoreError),
    /// The file does not hold a key.
    #[error("the cookie key file {path} does not hold a key: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CookieKeyError,
    },
}

/// The key in `path`: base64 of [`CookieKey::LEN`] bytes, in a file only its owner can read
/// (mode `0600`, not a link).
pub fn read_cookie_key(path: &Path) -> Result<CookieKey, KeyFileError> {
    let io = |action| {
        move |source| KeyFileError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    };
    let metadata = std::fs::symlink_metadata(path).map_err(io("read"))?;
    check_private_file(path, &metadata)?;
    let text = std::fs::read_to_string(path).map_err(io("read"))?;
    CookieKey::from_base64(&text).map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// The key in `path`, generated and written there first (mode `0600`) when the file does not
/// exist: what the SQLite default uses, beside its database.
pub fn read_or_create_cookie_key(path: &Path) -> Result<CookieKey, KeyFileError> {
    let key = CookieKey::generate().map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let written = file
                .write_all(key.reveal_base64().as_bytes())
                .and_then(|()| file.sync_all());
            if let Err(source) = written {
                // A half-written key must not be read by the next start.
                let _ = std::fs::remove_file(path);
                return Err(KeyFileError::Io {
                    path: path.to_owned(),
                    action: "written",
                    source,
                });
            }
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_cookie_key(path),
        Err(source) => Err(KeyFileError::Io {
            path: path.to_owned(),
            action: "created",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db.cookie-key");
        let first = read_or_create_cookie_key(&path).unwrap();
        let again = read_or_create_cookie_key(&path).unwrap();
        assert_eq!(first.reveal_base64(), again.reveal_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = read_cookie_key(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            assert!(!error.contains(&first.reveal_base64()), "{error}");
        }
    }

    #[test]
    fn a_file_without_a_key_is_refused_without_showing_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "hunter2").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let error = read_cookie_key(&path).unwrap_err().to_string();
        assert!(error.contains("does not hold a key"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
