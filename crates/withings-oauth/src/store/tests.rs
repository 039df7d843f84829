//! Tests of the in-memory stores.

use super::*;
use crate::credentials::{Credentials, UserId};
use chrono::Utc;
use std::time::Duration;

fn credentials(user: u64, refresh: &str) -> Credentials {
    testing::credentials(UserId::new(user), "access-token", refresh, Utc::now())
}

#[tokio::test]
async fn memory_store_keeps_the_newest_pair_per_user_and_shares_it_between_clones() {
    let store = MemoryStore::new();
    let other = store.clone();
    store
        .save(UserId::new(2), &credentials(2, "old"))
        .await
        .unwrap();
    store
        .save(UserId::new(2), &credentials(2, "new"))
        .await
        .unwrap();
    store
        .save(UserId::new(1), &credentials(1, "one"))
        .await
        .unwrap();
    match other.load(UserId::new(2)).await.unwrap() {
        Some(StoredEntry::Credentials(c)) => {
            assert_eq!(c.refresh_token.expose_secret(), "new")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        other.users().await.unwrap(),
        [UserId::new(1), UserId::new(2)]
    );
    other.delete(UserId::new(2)).await.unwrap();
    assert!(store.load(UserId::new(2)).await.unwrap().is_none());
}

#[tokio::test]
async fn memory_store_lock_excludes_a_second_locker_of_the_same_user_only() {
    let store = MemoryStore::new();
    let held = store.lock(UserId::new(1)).await.unwrap();
    let same = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(1)));
    assert!(same.await.is_err(), "a second lock of user 1 must wait");
    let other = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(2)));
    assert!(other.await.is_ok(), "user 2 is not blocked by user 1");
    drop(held);
    let again = tokio::time::timeout(Duration::from_millis(50), store.lock(UserId::new(1)));
    assert!(again.await.is_ok(), "released on drop");
}

#[tokio::test]
async fn a_flaky_store_fails_exactly_the_saves_it_was_told_to() {
    let store = testing::FlakyStore::default();
    let user = UserId::new(1);
    store.fail_next_saves(2);
    for _ in 0..2 {
        let err = store.save(user, &credentials(1, "r")).await.unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
    }
    assert!(
        store.load(user).await.unwrap().is_none(),
        "nothing was saved"
    );
    store.save(user, &credentials(1, "r")).await.unwrap();
    assert_eq!(store.inner().users().await.unwrap(), [user]);
}

#[test]
fn messages_say_what_to_do() {
    let e = StoreError::InsecurePermissions {
        path: "/home/a/tokens.json".into(),
        mode: 0o644,
    };
    assert_eq!(
        e.to_string(),
        "the token store /home/a/tokens.json is accessible by other users (mode 644): run `chmod 600 /home/a/tokens.json`"
    );
}
