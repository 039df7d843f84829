//! Files that hold tokens are their user's alone: the checks every store on disk makes, as ssh
//! makes them on `~/.ssh`.

use std::fs::Metadata;
use std::path::Path;

use super::StoreError;

/// Refuses a store file that others could read or change: a file whose mode lets group or
/// others read or write it (anything but `0600` or stricter), one owned by another user, or a
/// symbolic link (pass [`std::fs::symlink_metadata`] to catch one).
///
/// The error is [`StoreError::InsecurePermissions`], with the command that fixes it:
/// `chmod 600 <file>`, `chown <uid> <file>`, or for a link, moving the file it points to in its
/// place.
/// These checks hold only as long as no one else can replace the file: check its directory
/// with [`check_private_dir`] first. On other systems than Unix, every file passes.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// use withings_oauth::{StoreError, check_private_file};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("tokens.db");
/// std::fs::write(&path, b"").unwrap();
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
/// let error = check_private_file(&path, &std::fs::symlink_metadata(&path).unwrap()).unwrap_err();
/// assert!(matches!(error, StoreError::InsecurePermissions { mode: 0o644, .. }));
/// assert!(error.to_string().contains(&format!("chmod 600 {}", path.display())));
///
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
/// check_private_file(&path, &std::fs::symlink_metadata(&path).unwrap()).unwrap();
/// # }
/// ```
pub fn check_private_file(path: &Path, metadata: &Metadata) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if metadata.file_type().is_symlink() {
            let fix = match std::fs::canonicalize(path) {
                Ok(target) => format!("mv {} {}", target.display(), path.display()),
                Err(_) => format!("rm {}", path.display()),
            };
            return Err(insecure(
                path,
                mode,
                "a symbolic link, which whoever can change it can point at another file".into(),
                fix,
            ));
        }
        if mode & 0o077 != 0 {
            return Err(insecure(
                path,
                mode,
                format!("mode {mode:03o}"),
                format!("chmod 600 {}", path.display()),
            ));
        }
        check_owner(path, metadata, mode)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, metadata);
        Ok(())
    }
}

/// Refuses a store directory that others could change: one that group or others may write to
/// (they could replace the store's file, or create its companion files before the store does),
/// or that belongs to another user. `dir` must exist.
///
/// A shared directory with the sticky bit, such as `/tmp` (mode `1777`), is refused too: there
/// others can't replace a file of this user's, but they can create the names the store is
/// about to use (a lock file, SQLite's `-wal` and `-shm` files) first, and the store would
/// write tokens into files of theirs. The fix it gives then is a directory of the user's own
/// inside it, never a `chmod` of the shared one. A directory made by
/// [`tempfile::tempdir`](https://docs.rs/tempfile) is `0700`, and passes.
///
/// The error is [`StoreError::InsecurePermissions`], with the command that fixes it:
/// `chmod 700 <dir>`, `chown <uid> <dir>`, or `mkdir -m 700 <dir>/withings-<uid>`. On other
/// systems than Unix, every directory passes.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// use withings_oauth::{StoreError, check_private_dir};
///
/// let dir = tempfile::tempdir().unwrap();
/// check_private_dir(dir.path()).unwrap();
///
/// std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
/// let error = check_private_dir(dir.path()).unwrap_err();
/// assert!(matches!(error, StoreError::InsecurePermissions { .. }));
/// assert!(error.to_string().contains(&format!("chmod 700 {}", dir.path().display())));
/// # }
/// ```
pub fn check_private_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            action: "inspect",
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o1000 != 0 && mode & 0o022 != 0 {
            let me = rustix::process::geteuid().as_raw();
            return Err(insecure(
                dir,
                mode,
                format!(
                    "a shared directory (mode {mode:04o}): others can create the store's files there first; keep the store in a directory of your own"
                ),
                format!(
                    "mkdir -m 700 {}",
                    dir.join(format!("withings-{me}")).display()
                ),
            ));
        }
        if mode & 0o022 != 0 {
            return Err(insecure(
                dir,
                mode,
                format!("directory mode {mode:03o}, writable by others"),
                format!("chmod 700 {}", dir.display()),
            ));
        }
        check_owner(dir, &metadata, mode)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(unix)]
fn check_owner(path: &Path, metadata: &Metadata, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(insecure(
            path,
            mode,
            format!(
                "owned by user id {}, not by this user ({me})",
                metadata.uid()
            ),
            format!("chown {me} {}", path.display()),
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn insecure(path: &Path, mode: u32, problem: String, fix: String) -> StoreError {
    StoreError::InsecurePermissions {
        path: path.to_owned(),
        mode,
        problem,
        fix,
    }
}
