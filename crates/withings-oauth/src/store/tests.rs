//! Tests of the in-memory stores: the conformance kit, and the test doubles.

use super::*;
use crate::credentials::{Credentials, UserId};
use chrono::Utc;
use std::sync::Arc;

fn credentials(user: u64, refresh: &str) -> Credentials {
    testing::credentials(UserId::new(user), "access-token", refresh, Utc::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_store_contract() {
    testing::conformance::run(
        || async {
            let store = MemoryStore::new();
            move || Arc::new(store.clone()) as Arc<dyn TokenStore>
        },
        testing::conformance::Options::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_keeps_the_store_contract_when_told_nothing() {
    testing::conformance::run(
        || async {
            let store = Arc::new(testing::FlakyStore::new());
            move || store.clone() as Arc<dyn TokenStore>
        },
        testing::conformance::Options::default(),
    )
    .await;
}

#[tokio::test]
async fn a_flaky_store_fails_exactly_the_saves_it_was_told_to() {
    let store = testing::FlakyStore::default();
    let user = UserId::new(1);
    store.fail_next_saves(2);
    for _ in 0..2 {
        let err = store
            .save(user, &credentials(1, "r"), Expected::Absent)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
    }
    assert!(
        store.load(user).await.unwrap().is_none(),
        "nothing was saved"
    );
    store
        .save(user, &credentials(1, "r"), Expected::Absent)
        .await
        .unwrap();
    assert_eq!(store.inner().users().await.unwrap(), [user]);
}

#[test]
fn messages_say_what_to_do() {
    let e = StoreError::InsecurePermissions {
        path: "/home/a/tokens.json".into(),
        mode: 0o644,
        problem: "mode 644".into(),
        fix: "chmod 600 /home/a/tokens.json".into(),
    };
    assert_eq!(
        e.to_string(),
        "the token store /home/a/tokens.json is accessible by other users (mode 644): run `chmod 600 /home/a/tokens.json`"
    );
    let conflict =
        StoreError::conflict_with(UserId::new(5), Expected::Version(Version::new(3)), None);
    assert_eq!(
        conflict.to_string(),
        "the stored login of user 5 changed while it was being replaced (expected version 3, found no entry): another program logged in, refreshed or logged out; nothing was written"
    );
}

#[test]
fn damage_is_named_by_its_file_or_its_database_with_the_fix_for_each() {
    let file = StoreError::Corrupt {
        location: StoreLocation::path("/home/a/tokens.json"),
        reason: "line 3 ends early".into(),
    };
    assert_eq!(
        file.to_string(),
        "the token store /home/a/tokens.json is damaged (line 3 ends early); it was left untouched: repair it or delete it (its users will have to log in again)"
    );
    let row = StoreError::Corrupt {
        location: StoreLocation::Database("postgres://app@db.internal/withings".into()),
        reason: "user 5's row: its version is not positive".into(),
    };
    assert_eq!(
        row.to_string(),
        "the token store postgres://app@db.internal/withings is damaged (user 5's row: its version is not positive); it was left untouched: repair the row or delete it (its user will have to log in again)"
    );
}

#[test]
fn a_failed_pending_login_store_hands_on_the_store_error() {
    let failed = crate::PendingLoginError::Store(StoreError::Other("the disk is full".into()));
    assert_eq!(
        failed.to_string(),
        "the pending-login store failed: the token store failed: the disk is full"
    );
    let source = std::error::Error::source(&failed).expect("the store's error");
    assert!(matches!(
        source.downcast_ref::<StoreError>(),
        Some(StoreError::Other(reason)) if reason == "the disk is full"
    ));
}
