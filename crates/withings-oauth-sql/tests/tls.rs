//! PostgreSQL over TLS: a store URL with `sslmode=require` talks TLS to the server, and a
//! server certificate the store can't verify (`sslmode=verify-full` against the test cluster's
//! self-signed certificate) is refused with a message that says what to check.
//!
//! The test cluster of `.ci/postgres.sh` (Debian's) serves TLS with its self-signed
//! certificate.

mod support;

use std::time::Duration;

use sqlx::Connection;
use withings_oauth::{Expected, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{SqlOptions, SqlStore};

const USER: UserId = UserId::new(7);

/// `url` with the query parameters `extra` added.
fn with_params(url: &str, extra: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{extra}")
}

fn random_name() -> String {
    format!("withings_tls_{}", support::random_suffix())
}

#[tokio::test]
async fn a_store_url_with_sslmode_require_talks_tls_to_postgres() {
    let schemas = support::Schemas::new();
    let application = random_name();
    let url = with_params(
        schemas.url(),
        &format!("sslmode=require&application_name={application}"),
    );
    let store = SqlStore::connect(&url, SqlOptions::default().postgres_schema(schemas.fresh()))
        .await
        .unwrap_or_else(|e| {
            panic!("the test database refused TLS ({e}): its cluster must serve TLS (Debian's does, with the ssl-cert package's certificate; `ssl = on` in postgresql.conf)")
        });
    let credentials = testing::credentials(
        USER,
        "access-over-tls",
        "refresh-over-tls",
        chrono::Utc::now() + chrono::TimeDelta::hours(3),
    );
    store
        .save(USER, &credentials, Expected::Absent)
        .await
        .unwrap();
    let loaded = store.load(USER).await.unwrap().expect("the saved login");
    assert_eq!(
        loaded
            .credentials()
            .expect("credentials")
            .access_token()
            .expose_secret(),
        "access-over-tls"
    );

    // The server's view of the store's connections.
    let mut watcher = sqlx::PgConnection::connect(schemas.url()).await.unwrap();
    let (connections, all_tls): (i64, Option<bool>) = sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
    )
    .bind(&application)
    .fetch_one(&mut watcher)
    .await
    .unwrap();
    assert!(connections >= 1, "the store's connections are listed");
    assert_eq!(all_tls, Some(true), "every connection of the store is TLS");
    store.close().await;
    schemas.drop_all().await;
}

#[tokio::test]
async fn a_server_certificate_that_cannot_be_verified_is_refused_with_what_to_check() {
    let url = with_params(&support::database_url(), "sslmode=verify-full");
    let error = SqlStore::connect(
        &url,
        SqlOptions::default().acquire_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    let StoreError::Other(message) = error else {
        panic!("expected StoreError::Other, got {error:?}");
    };
    assert!(message.contains("TLS"), "{message}");
    assert!(message.contains("sslrootcert"), "{message}");
    assert!(!message.contains(":withings@"), "no password: {message}");
}
