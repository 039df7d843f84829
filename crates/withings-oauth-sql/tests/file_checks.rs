//! The SQLite file is its user's alone, as the `FileStore`'s is: a database file, or one of
//! its `-wal` / `-shm` files, that others can read or change, that is a symbolic link or
//! belongs to another user is refused, and so is a directory others can write to; each
//! refusal names the command that fixes it. A new database and its companion files are 0600.

#![cfg(unix)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use withings_oauth::{Expected, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};

const USER: UserId = UserId::new(42);

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

async fn open(url: &str) -> Result<SqlStore, StoreError> {
    SqlStore::connect(url, SqlOptions::default()).await
}

/// The refusal, checked: `InsecurePermissions` on `path`, its message naming `fix`.
fn assert_refused(result: Result<SqlStore, StoreError>, path: &Path, fix: &str) {
    let error = result.expect_err("the store opened");
    assert!(
        matches!(&error, StoreError::InsecurePermissions { path: p, .. } if p == path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("run `{fix}")), "{message}");
}

/// A store with a login in it, so that the database and its companion files exist.
async fn store_with_a_login(url: &str) -> SqlStore {
    let store = open(url).await.unwrap();
    let login = testing::credentials(USER, "a-secret", "r-secret", chrono::Utc::now());
    store.save(USER, &login, Expected::Absent).await.unwrap();
    store
}

#[tokio::test]
async fn a_planted_database_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    store_with_a_login(&support::sqlite_url(&dir))
        .await
        .close()
        .await;
    for planted in [0o666, 0o644, 0o640, 0o620] {
        set_mode(&path, planted);
        assert_refused(
            open(&support::sqlite_url(&dir)).await,
            &path,
            &format!("chmod 600 {}", path.display()),
        );
        assert_eq!(mode(&path), planted, "left as it was");
    }
    set_mode(&path, 0o600);
    let store = open(&support::sqlite_url(&dir)).await.unwrap();
    assert!(store.load(USER).await.unwrap().is_some());
}

#[tokio::test]
async fn an_empty_file_planted_with_mode_666_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    fs::write(&path, b"").unwrap();
    set_mode(&path, 0o666);
    assert_refused(
        open(&support::sqlite_url(&dir)).await,
        &path,
        &format!("chmod 600 {}", path.display()),
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 0, "nothing written");
}

#[tokio::test]
async fn a_database_that_is_a_symbolic_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.db");
    fs::write(&elsewhere, b"").unwrap();
    set_mode(&elsewhere, 0o600);
    let path = dir.path().join("tokens.db");
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_refused(
        open(&support::sqlite_url(&dir)).await,
        &path,
        &format!("mv {} {}", elsewhere.display(), path.display()),
    );
    assert_eq!(
        fs::metadata(&elsewhere).unwrap().len(),
        0,
        "nothing written"
    );

    // A dangling link too: SQLite would create the file it points to.
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere.db"), &path).unwrap();
    assert_refused(
        open(&support::sqlite_url(&dir)).await,
        &path,
        &format!("rm {}", path.display()),
    );
    assert!(!dir.path().join("nowhere.db").exists());
}

#[tokio::test]
async fn wal_and_shm_files_others_can_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    store_with_a_login(&url).await.close().await;
    for suffix in ["-wal", "-shm"] {
        let companion = dir.path().join(format!("tokens.db{suffix}"));
        fs::write(&companion, b"").unwrap();
        set_mode(&companion, 0o644);
        assert_refused(
            open(&url).await,
            &companion,
            &format!("chmod 600 {}", companion.display()),
        );
        fs::remove_file(&companion).unwrap();
    }
    let companion = dir.path().join("tokens.db-wal");
    std::os::unix::fs::symlink(dir.path().join("theirs"), &companion).unwrap();
    assert_refused(
        open(&url).await,
        &companion,
        &format!("rm {}", companion.display()),
    );
}

#[tokio::test]
async fn a_directory_others_can_write_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    for shared in [0o770, 0o777, 0o730] {
        set_mode(dir.path(), shared);
        assert_refused(
            open(&url).await,
            dir.path(),
            &format!("chmod 700 {}", dir.path().display()),
        );
    }
    assert!(!dir.path().join("tokens.db").exists(), "nothing created");

    // A shared directory with the sticky bit, as /tmp: a directory of one's own inside it.
    set_mode(dir.path(), 0o700);
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    set_mode(&tmp, 0o1777);
    let me = my_uid(dir.path());
    assert_refused(
        open(&format!("sqlite://{}", tmp.join("tokens.db").display())).await,
        &tmp,
        &format!(
            "mkdir -m 700 {}",
            tmp.join(format!("withings-{me}")).display()
        ),
    );

    // A missing directory is made private, and used.
    let new = dir.path().join("app/data");
    let store = store_with_a_login(&format!("sqlite://{}", new.join("tokens.db").display())).await;
    assert_eq!(mode(&new), 0o700);
    store.close().await;
}

/// This user's id, read from a file it just made (the tests need no crate for it).
fn my_uid(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("probe");
    fs::write(&probe, b"").unwrap();
    let uid = fs::metadata(&probe).unwrap().uid();
    fs::remove_file(&probe).unwrap();
    uid
}

#[tokio::test]
async fn a_database_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    store_with_a_login(&support::sqlite_url(&dir))
        .await
        .close()
        .await;
    let me = my_uid(dir.path());
    if me != 0 {
        // Only root can hand a file to someone else.
        return;
    }
    std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
    assert_refused(
        open(&support::sqlite_url(&dir)).await,
        &path,
        &format!("chown 0 {}", path.display()),
    );
}

#[tokio::test]
async fn a_new_database_and_its_wal_and_shm_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_login(&support::sqlite_url(&dir)).await;
    for name in ["tokens.db", "tokens.db-wal", "tokens.db-shm"] {
        let path = dir.path().join(name);
        assert!(path.exists(), "{name} exists while the store is open");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    store.close().await;
}

/// `close` lets go of the file: once it returns, no connection of the store has the database
/// or its `-wal` / `-shm` files open. A connection left open keeps the `-shm` file mapped, and
/// a backup, restore or clean-up of the files afterwards (truncating the `-shm` file, say)
/// would crash the program with SIGBUS when that connection is finally closed.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_closed_store_keeps_none_of_its_files_open() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_a_login(&support::sqlite_url(&dir)).await;
        assert!(
            !open_files_under(dir.path()).is_empty(),
            "the store has its file open"
        );
        store.close().await;
        let open = open_files_under(dir.path());
        assert!(
            open.is_empty(),
            "round {round}: still open after close: {open:?}"
        );
    }
}

/// The files under `dir` this process has open, read from `/proc/self/fd`.
#[cfg(target_os = "linux")]
fn open_files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}
