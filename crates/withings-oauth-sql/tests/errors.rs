//! Failures a user meets: a database that is down, a wrong password, a missing migration, a
//! damaged row. Each is a typed error that says what to do, shows no password and no token,
//! and leaves the stored row as it was.

mod support;

use std::time::Duration;

use withings_oauth::{Expected, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};

const USER: UserId = UserId::new(42);

fn quick() -> SqlOptions {
    SqlOptions::default().acquire_timeout(Duration::from_secs(3))
}

fn other_message(error: StoreError) -> String {
    match error {
        StoreError::Other(message) => message,
        other => panic!("expected StoreError::Other, got {other:?}"),
    }
}

#[tokio::test]
async fn a_database_that_is_down_says_so_without_the_password() {
    let error = SqlStore::connect("postgres://fleet:hunter2-pass@127.0.0.1:1/tokens", quick())
        .await
        .unwrap_err();
    let message = other_message(error);
    assert!(message.contains("could not reach"), "{message}");
    assert!(
        message.contains("postgres://fleet@127.0.0.1:1/tokens"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let mut url = url::Url::parse(&support::database_url()).unwrap();
    url.set_password(Some("not-the-password-77")).unwrap();
    let error = SqlStore::connect(url.as_str(), quick()).await.unwrap_err();
    let message = other_message(error);
    assert!(message.contains("refused the login"), "{message}");
    assert!(
        message.contains("check the user name and password"),
        "{message}"
    );
    assert!(!message.contains("not-the-password-77"), "{message}");
}

#[tokio::test]
async fn a_database_without_the_migrations_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = SqlStore::connect(&support::sqlite_url(&dir), quick().run_migrations(false))
        .await
        .unwrap_err();
    let message = other_message(error);
    assert!(message.contains("lacks migration 1"), "{message}");
    assert!(message.contains("run the migrations"), "{message}");

    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let error = SqlStore::connect(
        schemas.url(),
        quick().run_migrations(false).postgres_schema(&schema),
    )
    .await
    .unwrap_err();
    assert!(other_message(error).contains("lacks migration 1"));
    schemas.drop_all().await;
}

#[tokio::test]
async fn migrations_applied_by_the_integrator_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    withings_oauth_sql::SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .unwrap();
    pool.close().await;
    // sqlx made the file with the umask's mode: the store takes only a file private to its user.
    #[cfg(unix)]
    std::fs::set_permissions(
        dir.path().join("tokens.db"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let store = SqlStore::connect(&url, quick().run_migrations(false))
        .await
        .unwrap();
    store
        .mark_login_required(USER, Expected::Absent)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_damaged_row_is_reported_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(&dir);
    let store = SqlStore::connect(&url, quick().keys(support::keys()))
        .await
        .unwrap();
    let login = testing::credentials(USER, "a-secret", "r-secret", chrono::Utc::now());
    store.save(USER, &login, Expected::Absent).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE withings_credentials SET access_token = x'01ff00' WHERE user_id = 42")
        .execute(&raw)
        .await
        .unwrap();

    let error = store.load(USER).await.unwrap_err();
    assert!(matches!(error, StoreError::Unreadable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("user 42"), "{message}");
    assert!(message.contains("left untouched"), "{message}");
    let kept: Vec<u8> =
        sqlx::query_scalar("SELECT access_token FROM withings_credentials WHERE user_id = 42")
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(kept, [1, 0xff, 0]);
    // Listing users still works: the fleet is not held up by one bad row.
    assert_eq!(store.users().await.unwrap(), [USER]);
}

#[tokio::test]
async fn a_dropped_table_says_to_run_the_migrations() {
    let schemas = support::Schemas::new();
    let schema = schemas.fresh();
    let store = support::postgres_store(schemas.url(), &schema, quick()).await;
    let raw = sqlx::PgPool::connect(schemas.url()).await.unwrap();
    sqlx::query(&format!("DROP TABLE \"{schema}\".withings_credentials"))
        .execute(&raw)
        .await
        .unwrap();
    let message = other_message(store.load(USER).await.unwrap_err());
    assert!(
        message.contains("has no withings-oauth tables"),
        "{message}"
    );
    raw.close().await;
    store.close().await;
    schemas.drop_all().await;
}

#[tokio::test]
async fn urls_of_other_databases_are_refused_with_the_accepted_forms() {
    for url in ["mysql://x/y", "/home/a/tokens.json"] {
        let message = other_message(SqlStore::connect(url, quick()).await.unwrap_err());
        assert!(message.contains("sqlite://"), "{message}");
    }
}
