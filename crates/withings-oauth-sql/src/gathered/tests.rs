//! The gathered statements on PostgreSQL, with the store's private parts.

use std::time::Duration;

use withings_oauth::{Expected, Lease, TokenStore, UserId, testing};

use super::{Release, Save, Saved, Unsaved};
use crate::SqlOptions;
use crate::testing::{Schemas, postgres_store};

fn kept_its_lease(answer: &Saved) -> bool {
    matches!(
        answer,
        Ok(Err(Unsaved {
            release: Some(_),
            ..
        }))
    )
}

/// Two saves of one user in one batch: the statement writes the first (here a stale one,
/// refused), and the second goes alone. Its lease must outlive that lone save, or another
/// process could take the lease and read the entry before the save is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_the_statement_did_not_pick_keeps_its_lease() {
    let schemas = Schemas::new();
    let schema = schemas.fresh();
    let store = postgres_store(schemas.url(), &schema, SqlOptions::default()).await;
    let user = UserId::new(77);
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let login = testing::credentials(user, "a0", "r0", expires);
    let v1 = store.save(user, &login, Expected::Absent).await.unwrap();

    let lease = store.lease(user, Duration::from_secs(60)).await.unwrap();
    let Ok(((local, release), _)) = lease.into_guard::<(Lease, Release)>() else {
        panic!("not the store's own lease");
    };
    let sealed = |refresh: &str, expected: i64| {
        let credentials = testing::credentials(user, "a", refresh, expires);
        crate::row::seal(None, user.get(), expected + 1, &credentials)
    };
    let saves = vec![
        Save {
            user: 77,
            sealed: sealed("stale", 9),
            expected: 9,
            release: None,
        },
        Save {
            user: 77,
            sealed: sealed("r1", v1.get() as i64),
            expected: v1.get() as i64,
            release: Some(release),
        },
    ];
    let answers = super::postgres::save_many(store.gatherer().clone(), saves).await;
    assert!(
        matches!(answers[0], Ok(Err(_))),
        "the stale save was written"
    );
    assert!(
        kept_its_lease(&answers[1]),
        "the save not picked lost its lease before going alone"
    );
    let left = crate::lease::lease_holder(store.gatherer().db(), 77)
        .await
        .unwrap();
    assert!(left.is_some(), "the lease row was deleted");
    drop(answers);
    drop(local);

    store.close().await;
    schemas.drop_all().await;
}
