//! The file system side: private directories (checked by the core's `check_private_dir`, as
//! ssh checks `~/.ssh`), atomic writes, leftover temporary files, and lock files that are never
//! followed through a symbolic link.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use withings_oauth::{StoreError, check_private_dir, check_private_file};

/// `tokens.json` + `.lock` = `tokens.json.lock`, in the same directory.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub(crate) fn io_error(path: &Path, action: &'static str, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Creates the store's missing directories, private to the user, and checks the store's own.
pub(crate) fn prepare_dir(path: &Path) -> Result<(), StoreError> {
    let dir = parent(path);
    if !dir.is_dir() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io_error(dir, "create the directory", e))?;
    }
    check_private_dir(dir)
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// The prefix of `path`'s temporary files: `.tokens.json.` for `tokens.json`.
fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent(path);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Other(format!("the system random generator failed: {e}")))?;
    let temp = dir.join(format!(
        "{}{}.{:016x}.tmp",
        temp_prefix(path),
        std::process::id(),
        u64::from_le_bytes(random)
    ));
    let written = (|| {
        let mut file = private_options().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp, "write", e));
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error(path, "replace", e));
    }
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "flush the directory", e))?;
    Ok(())
}

/// Removes the temporary files a crash between write and rename left behind. Called with the
/// write lock held: no other writer has a temporary file then. Returns how many were removed.
pub(crate) fn remove_leftover_temp_files(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(parent(path)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".tmp")
        })
        .filter(|entry| fs::remove_file(entry.path()).is_ok())
        .count()
}

/// Opens (creating it if needed) a lock file: never through a symbolic link, and only if it is
/// private (this user's, mode 0600), so that no one can point it at a file of theirs or hold
/// it open.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let mut options = private_options();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
    );
    let file = options.open(path).map_err(|e| {
        if is_a_link_refusal(&e) {
            StoreError::Other(format!(
                "the lock file {} is a symbolic link: remove it (`rm {}`), the store recreates it",
                path.display(),
                path.display()
            ))
        } else {
            io_error(path, "open the lock file", e)
        }
    })?;
    let metadata = file.metadata().map_err(|e| io_error(path, "inspect", e))?;
    check_private_file(path, &metadata)?;
    Ok(file)
}

/// Whether opening failed because the path is a symbolic link (`O_NOFOLLOW`).
fn is_a_link_refusal(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
    #[cfg(not(unix))]
    return {
        let _ = e;
        false
    };
}

/// An exclusive lock on `path`, released when the returned file is dropped (or the process
/// exits, however it ends).
///
/// Polls with a growing pause rather than blocking in the kernel, so that it can give up after
/// `timeout` with a clear error.
pub(crate) fn lock_file(path: &Path, timeout: Duration) -> Result<File, StoreError> {
    let file = open_lock_file(path)?;
    // A timeout past the end of `Instant` (`Duration::MAX`, say) means waiting for ever.
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(fs4::TryLockError::WouldBlock)
                if deadline.is_none_or(|deadline| Instant::now() < deadline) =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                    seconds: timeout.as_secs(),
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_error(path, "lock", e)),
        }
    }
}
