//! The SQLite file is its user's alone: the store's directory private, the database and its
//! companion files private, created 0600, never reached through a symbolic link.
//!
//! The rules are the core's ([`check_private_dir`], [`check_private_file`]), the ones the
//! `FileStore` follows: the directory first, so that once it is checked no one else can
//! replace a file in it between the checks and SQLite opening it.

use std::io;
use std::path::{Path, PathBuf};

use withings_oauth::{StoreError, check_private_dir, check_private_file};

/// The files SQLite keeps next to the database: the write-ahead log, its shared-memory index,
/// and the rollback journal of a database once used without WAL. SQLite creates them with the
/// database file's mode.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Makes the database's directory if it is missing (mode 0700), then refuses a directory
/// others can write to or another user owns, and a database file or companion file that is a
/// symbolic link, another user's, or readable or writable by others; creates a missing
/// database file with mode 0600. Each refusal is a [`StoreError::InsecurePermissions`] that
/// names the `chmod`, `chown` or `mkdir` to run.
pub(crate) fn prepare(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            action: "create the directory",
            source,
        })?;
    }
    check_private_dir(dir)?;
    if !check_existing(path)? {
        create_private(path)?;
    }
    for suffix in COMPANIONS {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        check_existing(&PathBuf::from(name))?;
    }
    Ok(())
}

/// Checks `path` if it exists (a link is not followed); `false` when there is nothing there.
fn check_existing(path: &Path) -> Result<bool, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => check_private_file(path, &metadata).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            action: "inspect",
            source,
        }),
    }
}

/// Creates the database file readable by its owner only, before SQLite would create it with
/// the umask's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut open = std::fs::OpenOptions::new();
    // `create_new` never follows a link: one planted since the check makes it fail.
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        // Another process created it since the check: check what it made.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_existing(path).map(drop),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            action: "create",
            source,
        }),
    }
}
