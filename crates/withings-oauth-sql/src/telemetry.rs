//! What a SQL store records through the [`metrics`] facade: the duration of each store call by
//! operation and backend, the compare-and-swap conflicts, the waits for a user's lease and the
//! leases taken over from an expired holder, the sizes of the gathered batches, and after a key
//! rotation the logins each key id seals. Nothing is recorded unless the application installs a
//! recorder. Label values are operation and backend names and key ids (few, chosen by the
//! operator, not secret): never a user id. docs/operations.md lists every metric.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;
use withings_oauth::StoreError;

use crate::options::Backend;
use crate::rotation::Rotation;

/// Histogram: how long a store call took, by `operation` and `backend`.
pub(crate) const CALL_DURATION: &str = "withings_oauth_store_call_duration_seconds";
/// Counter: writes refused because another writer changed the row first, by `operation` and
/// `backend`.
pub(crate) const CONFLICTS: &str = "withings_oauth_store_conflicts_total";
/// Histogram: how long taking a user's lease waited, by `backend`.
pub(crate) const LEASE_WAIT: &str = "withings_oauth_lease_wait_seconds";
/// Counter: leases taken after their previous holder's lease expired unreleased, by `backend`.
pub(crate) const LEASE_TAKEOVERS: &str = "withings_oauth_lease_takeovers_total";
/// Histogram: how many calls one gathered statement or transaction carried.
pub(crate) const BATCH_SIZE: &str = "withings_oauth_store_group_commit_batch_size";
/// Gauge: logins sealed with each key id (`key_id`, `active`), counted after a rotation.
pub(crate) const ROWS_BY_KEY: &str = "withings_oauth_store_rows_by_key";
/// Gauge: logins in clear text, counted after a rotation.
pub(crate) const CLEAR_ROWS: &str = "withings_oauth_store_clear_rows";

/// The label value of a backend.
pub(crate) fn backend(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Runs the store call `operation`, in a span that names it, and records its duration and
/// whether it met a conflict.
pub(crate) async fn timed<T>(
    operation: &'static str,
    backend: Backend,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let backend = self::backend(backend);
    let span = tracing::debug_span!("withings_oauth.store", operation, backend);
    let started = Instant::now();
    let result = call.instrument(span).await;
    metrics::histogram!(CALL_DURATION, "operation" => operation, "backend" => backend)
        .record(started.elapsed().as_secs_f64());
    if let Err(StoreError::Conflict(_)) = &result {
        metrics::counter!(CONFLICTS, "operation" => operation, "backend" => backend).increment(1);
    }
    result
}

/// Records a lease taken after `waited`; `took_over` if its last holder let it expire.
pub(crate) fn lease_taken(backend: Backend, waited: Duration, took_over: bool) {
    let backend = self::backend(backend);
    metrics::histogram!(LEASE_WAIT, "backend" => backend).record(waited.as_secs_f64());
    if took_over {
        metrics::counter!(LEASE_TAKEOVERS, "backend" => backend).increment(1);
    }
}

/// Records the size of a gathered batch.
pub(crate) fn batch(calls: usize) {
    metrics::histogram!(BATCH_SIZE).record(calls as f64);
}

/// Records what each key seals after a rotation; keys of the keyring that seal nothing (any
/// more) are set to zero, so that a finished rotation shows as such.
pub(crate) fn rotated<'a>(rotation: &Rotation, keyring: impl Iterator<Item = &'a str>) {
    for id in keyring {
        if !rotation.rows_by_key.contains_key(id) {
            set_rows(id, id == rotation.active, 0);
        }
    }
    for (id, rows) in &rotation.rows_by_key {
        set_rows(id, *id == rotation.active, *rows);
    }
    metrics::gauge!(CLEAR_ROWS).set(rotation.clear_rows as f64);
}

fn set_rows(id: &str, active: bool, rows: u64) {
    let active = if active { "true" } else { "false" };
    metrics::gauge!(ROWS_BY_KEY, "key_id" => id.to_owned(), "active" => active).set(rows as f64);
}
