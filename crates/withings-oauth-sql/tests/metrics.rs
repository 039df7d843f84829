//! What a SQL store records through the `metrics` facade: the duration of each call by
//! operation and backend, conflicts, lease waits and a takeover, gathered batch sizes, and after
//! a rotation the logins each key id seals; never a user id as a label.

mod support;

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use withings_oauth::{Expected, StoreError, TokenStore, UserId, testing};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

/// One recorded metric: its name, its labels, its value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

/// Runs `work` on a runtime of this thread with a recorder of its own, and returns what it
/// recorded.
fn recording<F: Future<Output = ()>>(work: impl FnOnce() -> F) -> Vec<Recorded> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(work()));
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

/// The value of the metric `name` with `labels` (a counter's count, a gauge's value, a
/// histogram's number of values).
fn value(recorded: &[Recorded], name: &str, labels: &[(&str, &str)]) -> f64 {
    recorded
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(values) => values.len() as f64,
        })
        .sum()
}

const USER: u64 = 4_242_017;

#[test]
fn store_calls_conflicts_leases_batches_and_a_rotation_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let user = UserId::new(USER);
    let recorded = recording(|| async {
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
    assert_eq!(
        value(&recorded, calls, &[("operation", "save"), sqlite]),
        2.0
    );
    assert_eq!(
        value(&recorded, calls, &[("operation", "lease_and_load"), sqlite]),
        1.0
    );
    assert_eq!(
        value(
            &recorded,
            calls,
            &[("operation", "save_and_release"), sqlite]
        ),
        1.0
    );
    let conflicts = "withings_oauth_store_conflicts_total";
    assert_eq!(
        value(&recorded, conflicts, &[("operation", "save"), sqlite]),
        1.0
    );
    assert_eq!(value(&recorded, conflicts, &[]), 1.0);
    assert_eq!(
        value(&recorded, "withings_oauth_lease_wait_seconds", &[sqlite]),
        3.0
    );
    assert_eq!(
        value(&recorded, "withings_oauth_lease_takeovers_total", &[sqlite]),
        1.0
    );
    let batches = value(
        &recorded,
        "withings_oauth_store_group_commit_batch_size",
        &[],
    );
    assert!(batches >= 1.0, "{batches}");
    let rows = "withings_oauth_store_rows_by_key";
    assert_eq!(
        value(&recorded, rows, &[("key_id", "k2"), ("active", "true")]),
        1.0
    );
    assert_eq!(
        value(&recorded, rows, &[("key_id", "k1"), ("active", "false")]),
        0.0
    );
    assert!(
        recorded
            .iter()
            .any(|(n, l, _)| n == rows && l.iter().any(|(_, v)| v == "k1")),
        "the retired key shows, at zero"
    );
    assert_eq!(
        value(&recorded, "withings_oauth_store_clear_rows", &[]),
        0.0
    );
    for (name, labels, _) in &recorded {
        for (key, value) in labels {
            assert!(
                !value.contains(&USER.to_string())
                    && !value.contains("access-x1")
                    && !value.contains("refresh-y2")
                    && !value.contains("tokens.db"),
                "{name} has the label {key}={value}"
            );
        }
    }
}
