//! What a SQL store records through the `metrics` facade: the duration of each call by
//! operation and backend, conflicts, lease waits and a takeover, gathered batch sizes, and after
//! a rotation the logins each key id seals; never a user id as a label.

mod support;

use std::time::Duration;

use withings_oauth::{Expected, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

const USER: u64 = 4_242_017;

#[test]
fn store_calls_conflicts_leases_batches_and_a_rotation_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let user = UserId::new(USER);
    let recorded = testing::record_metrics(|| async {
        let old = SqlOptions::default().keys(Keyring::parse(support::OLD_KEY).unwrap());
        let store = SqlStore::connect(&url, old).await.unwrap();
        let login = testing::credentials(user, "access-x1", "refresh-y2", chrono::Utc::now());
        let version = store.save(user, &login, Expected::Absent).await.unwrap();
        let again = store.save(user, &login, Expected::Absent).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let (lease, loaded) = store
            .lease_and_load(user, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(loaded.unwrap().version, version);
        store
            .save_and_release(user, &login, Expected::Version(version), lease)
            .await
            .unwrap();
        // A holder that stops without releasing its lease (its process was killed): another
        // store takes the lease over once it expires.
        let killed = SqlStore::connect(
            &url,
            SqlOptions::default().keys(Keyring::parse(support::OLD_KEY).unwrap()),
        )
        .await
        .unwrap();
        std::mem::forget(
            killed
                .lease(user, Duration::from_millis(300))
                .await
                .unwrap(),
        );
        let taken = store.lease(user, Duration::from_secs(5)).await.unwrap();
        drop(taken);
        store.close().await;

        let rotating = SqlStore::connect(&url, SqlOptions::default().keys(support::keys()))
            .await
            .unwrap();
        let rotation = rotating.rotate_keys().await.unwrap();
        assert!(rotation.complete(), "{rotation:?}");
        rotating.close().await;
    });
    let calls = "withings_oauth_store_call_duration_seconds";
    let sqlite = ("backend", "sqlite");
    assert_eq!(recorded.value(calls, &[("operation", "save"), sqlite]), 2.0);
    assert_eq!(
        recorded.value(calls, &[("operation", "lease_and_load"), sqlite]),
        1.0
    );
    assert_eq!(
        recorded.value(calls, &[("operation", "save_and_release"), sqlite]),
        1.0
    );
    let conflicts = "withings_oauth_store_conflicts_total";
    assert_eq!(
        recorded.value(conflicts, &[("operation", "save"), sqlite]),
        1.0
    );
    assert_eq!(recorded.value(conflicts, &[]), 1.0);
    assert_eq!(
        recorded.value("withings_oauth_lease_wait_seconds", &[sqlite]),
        3.0
    );
    assert_eq!(
        recorded.value("withings_oauth_lease_takeovers_total", &[sqlite]),
        1.0
    );
    let batches = recorded.value("withings_oauth_store_group_commit_batch_size", &[]);
    assert!(batches >= 1.0, "{batches}");
    let rows = "withings_oauth_store_rows_by_key";
    assert_eq!(
        recorded.value(rows, &[("key_id", "k2"), ("active", "true")]),
        1.0
    );
    assert_eq!(
        recorded.value(rows, &[("key_id", "k1"), ("active", "false")]),
        0.0
    );
    assert!(
        recorded.contains(rows, &[("key_id", "k1")]),
        "the retired key shows, at zero"
    );
    assert_eq!(recorded.value("withings_oauth_store_clear_rows", &[]), 0.0);
    recorded.assert_no_label_holds(&[&USER.to_string(), "access-x1", "refresh-y2", "tokens.db"]);
}
