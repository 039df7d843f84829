//! Tests of the file store: the store contract, the file, its privacy and its locks.

use std::fs;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use withings_oauth::testing::conformance;
use withings_oauth::{DEFAULT_LEASE_TTL, StoredEntry};

use super::*;

const USER: UserId = UserId::new(1001);

fn credentials(user: u64, refresh: &str) -> Credentials {
    withings_oauth::testing::credentials(
        UserId::new(user),
        &format!("access-{refresh}"),
        refresh,
        Utc::now() + TimeDelta::hours(3),
    )
}

fn refresh_token_of(entry: Option<VersionedEntry>) -> String {
    match entry.map(|e| e.entry) {
        Some(StoredEntry::Credentials(c)) => c.reveal_for_storage().refresh_token,
        other => panic!("expected credentials, got {other:?}"),
    }
}

/// What is expected to be replaced now: whatever is stored (as a program that just read it).
async fn current(store: &FileStore, user: UserId) -> Expected {
    match store.load(user).await.unwrap() {
        None => Expected::Absent,
        Some(entry) => Expected::Version(entry.version),
    }
}

/// Saves over whatever is stored.
async fn put(store: &FileStore, user: u64, refresh: &str) -> Result<Version, StoreError> {
    let expected = current(store, UserId::new(user)).await;
    store
        .save(UserId::new(user), &credentials(user, refresh), expected)
        .await
}

async fn mark(store: &FileStore, user: UserId) -> Result<Version, StoreError> {
    let expected = current(store, user).await;
    store.mark_login_required(user, expected).await
}

fn store_in(dir: &tempfile::TempDir) -> FileStore {
    FileStore::open(dir.path().join("app/tokens.json")).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_keeps_the_store_contract() {
    let mut dirs = Vec::new();
    conformance::run(
        || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app/tokens.json");
            dirs.push(dir);
            async move { move || Arc::new(FileStore::open(&path).unwrap()) as Arc<dyn TokenStore> }
        },
        conformance::Options::default().lease_held_until_process_exit(),
    )
    .await;
}

#[tokio::test]
async fn a_missing_file_is_an_empty_store_and_is_not_created_by_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    assert!(store.load(USER).await.unwrap().is_none());
    assert!(store.users().await.unwrap().is_empty());
    store.delete(USER, Expected::Absent).await.unwrap();
    assert!(!store.path().exists());
}

#[tokio::test]
async fn credentials_round_trip_through_the_file_for_many_users() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r1").await.unwrap();
    put(&store, 7, "r7").await.unwrap();
    put(&store, 1001, "r1-new").await.unwrap();
    let marked = mark(&store, UserId::new(42)).await.unwrap();

    // Another instance (another process, say) reads the same.
    let other = FileStore::open(store.path()).unwrap();
    assert_eq!(refresh_token_of(other.load(USER).await.unwrap()), "r1-new");
    assert_eq!(
        refresh_token_of(other.load(UserId::new(7)).await.unwrap()),
        "r7"
    );
    assert!(matches!(
        other.load(UserId::new(42)).await.unwrap().map(|e| e.entry),
        Some(StoredEntry::LoginRequired)
    ));
    assert_eq!(
        other.users().await.unwrap(),
        [UserId::new(7), UserId::new(42), USER]
    );
    let restored = other.load(USER).await.unwrap().unwrap();
    assert_eq!(
        restored.credentials().unwrap().scopes().to_string(),
        "user.metrics"
    );

    other.force_delete(UserId::new(7)).await.unwrap();
    assert!(store.load(UserId::new(7)).await.unwrap().is_none());

    let text = fs::read_to_string(store.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], 2);
    assert_eq!(
        json["users"]["42"],
        serde_json::json!({"version": marked.get(), "login_required": true})
    );
    assert_eq!(json["users"]["1001"]["credentials"]["user_id"], 1001);
    assert_eq!(json["last_version"], 5, "four writes and a delete");
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_created_private_in_private_directories() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("a/b/tokens.json")).unwrap();
    put(&store, 1001, "r").await.unwrap();
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    let _lease = store.lease(USER, DEFAULT_LEASE_TTL).await.unwrap();
    assert_eq!(
        mode(&dir.path().join("a/b/tokens.json.user-1001.lock")),
        0o600
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_file_others_can_read_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::read(store.path()).unwrap();

    let err = store.load(USER).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InsecurePermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", store.path().display())),
        "{err}"
    );
    let err = store
        .save(
            USER,
            &credentials(1001, "r2"),
            Expected::Version(Version::FIRST),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InsecurePermissions { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(store.path()).unwrap(), before);
    assert_eq!(
        mode(store.path()),
        0o644,
        "the store does not chmod behind the user's back"
    );
}

#[tokio::test]
async fn a_corrupt_file_is_reported_without_its_content_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    let cut = text.find("refresh_token").unwrap() + 30;
    let damaged = &text[..cut];
    fs::write(store.path(), damaged).unwrap();

    for err in [
        store.load(USER).await.unwrap_err(),
        store.users().await.unwrap_err(),
        store
            .save(
                USER,
                &credentials(1001, "new"),
                Expected::Version(Version::FIRST),
            )
            .await
            .unwrap_err(),
        store
            .mark_login_required(USER, Expected::Version(Version::FIRST))
            .await
            .unwrap_err(),
    ] {
        let StoreError::Corrupt { location, reason } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(location, &StoreLocation::path(store.path()));
        assert!(reason.contains("ends early"), "{reason}");
        let message = err.to_string();
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("repair it or delete it"), "{message}");
        assert!(!message.contains("access-r"), "{message}");
    }
    assert_eq!(fs::read_to_string(store.path()).unwrap(), damaged);
}

#[tokio::test]
async fn a_wrong_value_is_named_by_user_and_field_but_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    fs::write(
        store.path(),
        text.replace("\"token_type\"", "\"token_kind\""),
    )
    .unwrap();
    let err = store.load(UserId::new(5)).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("user 1001: unknown field `token_kind`"),
        "{message}"
    );

    fs::write(
        store.path(),
        text.replace("\"expires_at\": \"", "\"expires_at\": \"secret-looking "),
    )
    .unwrap();
    let message = store.load(USER).await.unwrap_err().to_string();
    assert!(message.contains("user 1001"), "{message}");
    assert!(!message.contains("secret-looking"), "{message}");

    fs::write(store.path(), r#"{"format":3,"users":{}}"#).unwrap();
    let message = store.load(USER).await.unwrap_err().to_string();
    assert!(message.contains("format 3"), "{message}");
}

#[tokio::test]
async fn saves_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    for i in 0..5 {
        put(&store, 1001, &format!("r{i}")).await.unwrap();
    }
    mark(&store, UserId::new(2)).await.unwrap();
    store.force_delete(UserId::new(2)).await.unwrap();
    let mut names: Vec<String> = fs::read_dir(dir.path().join("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["tokens.json", "tokens.json.lock"]);
    assert_eq!(refresh_token_of(store.load(USER).await.unwrap()), "r4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_of_different_users_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app/tokens.json");
    let tasks: Vec<_> = (1..=20u64)
        .map(|user| {
            // A store instance per task: as separate processes would have.
            let store = FileStore::open(&path).unwrap();
            tokio::spawn(async move {
                store
                    .save(
                        UserId::new(user),
                        &credentials(user, &format!("r{user}")),
                        Expected::Absent,
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let users = FileStore::open(&path).unwrap().users().await.unwrap();
    assert_eq!(users, (1..=20).map(UserId::new).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_lease_excludes_a_second_taker_of_the_same_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app/tokens.json");
    let first = FileStore::open(&path).unwrap();
    let second = FileStore::open(&path)
        .unwrap()
        .with_lock_timeout(Duration::from_millis(200));
    let held = first.lease(USER, DEFAULT_LEASE_TTL).await.unwrap();

    let err = second.lease(USER, DEFAULT_LEASE_TTL).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("tokens.json.user-1001.lock"),
        "{err}"
    );
    // Other users and plain saves are not blocked by a refresh lease.
    let _other = second
        .lease(UserId::new(2), DEFAULT_LEASE_TTL)
        .await
        .unwrap();
    put(&second, 1001, "r").await.unwrap();

    // A waiting locker gets the lock as soon as it is released.
    let waiter = {
        let second = Arc::new(second.with_lock_timeout(Duration::from_secs(10)));
        tokio::spawn(async move { second.lease(USER, DEFAULT_LEASE_TTL).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    drop(held);
    waiter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_lock_timeout_waits_for_the_lock_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app/tokens.json");
    let held = FileStore::open(&path)
        .unwrap()
        .lease(USER, DEFAULT_LEASE_TTL)
        .await
        .unwrap();
    let patient = Arc::new(
        FileStore::open(&path)
            .unwrap()
            .with_lock_timeout(Duration::MAX),
    );
    let waiter =
        tokio::spawn(async move { patient.lease(USER, DEFAULT_LEASE_TTL).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "still waiting while the lock is held"
    );
    drop(held);
    waiter.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_format_1_file_is_read_at_version_1_and_rewritten_as_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    fs::create_dir_all(store.path().parent().unwrap()).unwrap();
    let stored = credentials(1001, "r-old").reveal_for_storage();
    let old = serde_json::json!({
        "format": 1,
        "users": { "1001": stored, "42": { "login_required": true } },
    });
    fs::write(store.path(), old.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(
            store.path().parent().unwrap(),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }

    let entry = store.load(USER).await.unwrap().unwrap();
    assert_eq!(entry.version, Version::FIRST);
    assert_eq!(refresh_token_of(Some(entry)), "r-old");
    let v2 = store
        .save(
            USER,
            &credentials(1001, "r-new"),
            Expected::Version(Version::FIRST),
        )
        .await
        .unwrap();
    assert_eq!(v2, Version::new(2));
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(store.path()).unwrap()).unwrap();
    assert_eq!(json["format"], 2);
    assert_eq!(json["users"]["42"]["version"], 1);
    assert_eq!(json["users"]["1001"]["version"], 2);
}

#[cfg(unix)]
#[tokio::test]
async fn a_store_directory_others_can_write_to_or_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    let app = dir.path().join("app");
    fs::set_permissions(&app, fs::Permissions::from_mode(0o777)).unwrap();
    let before = fs::read(store.path()).unwrap();

    let err = put(&store, 1001, "r2").await.unwrap_err();
    assert!(
        matches!(err, StoreError::InsecurePermissions { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("chmod 700 {}", app.display())),
        "{err}"
    );
    let err = store.lease(USER, DEFAULT_LEASE_TTL).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InsecurePermissions { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(store.path()).unwrap(), before, "nothing written");

    fs::set_permissions(&app, fs::Permissions::from_mode(0o700)).unwrap();
    if rustix::process::geteuid().is_root() {
        // Root can hand the directory to someone else, as a shared machine might have it.
        std::os::unix::fs::chown(&app, Some(4242), None).unwrap();
        let err = put(&store, 1001, "r3").await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("chown 0 {}", app.display())),
            "{err}"
        );
        std::os::unix::fs::chown(&app, Some(0), None).unwrap();
    }
    put(&store, 1001, "r4").await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    let target = dir.path().join("someone-elses-file");
    fs::write(&target, "precious").unwrap();
    let lock = dir.path().join("app/tokens.json.user-1001.lock");
    std::os::unix::fs::symlink(&target, &lock).unwrap();

    let err = store.lease(USER, DEFAULT_LEASE_TTL).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    fs::remove_file(&lock).unwrap();
    store.lease(USER, DEFAULT_LEASE_TTL).await.unwrap();
}

#[tokio::test]
async fn temporary_files_a_crash_left_are_removed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    put(&store, 1001, "r").await.unwrap();
    let leftover = dir
        .path()
        .join("app/.tokens.json.4242.00000000deadbeef.tmp");
    fs::write(&leftover, "half a file").unwrap();
    let unrelated = dir.path().join("app/notes.tmp");
    fs::write(&unrelated, "mine").unwrap();

    store.force_delete(UserId::new(5)).await.unwrap();
    assert!(
        leftover.exists(),
        "nothing was written: nothing cleaned yet"
    );
    put(&store, 1001, "r2").await.unwrap();
    assert!(!leftover.exists());
    assert!(
        unrelated.exists(),
        "only the store's own temporary files go"
    );
}

#[test]
fn open_refuses_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is not a file path"), "{err}");
}

#[test]
fn the_default_path_is_a_tokens_file_named_after_the_app() {
    if let Some(path) = FileStore::default_path("withings-oauth-test") {
        assert!(path.ends_with("tokens.json"), "{}", path.display());
        assert!(path.to_string_lossy().contains("withings-oauth-test"));
    }
}
