//! What both benchmarks need: a store of many fresh logins, a store that copies what it
//! loads (as a database or a file does), a fleet that never calls Withings.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use withings_oauth::{
    Client, ClientBuilder, Credentials, Expected, Lease, MemoryStore, StoreFuture, TokenStore,
    UserId, Version, VersionedEntry, testing,
};
use withings_oauth::{StoredCredentials, StoredEntry};

pub(crate) const USERS: u64 = 100_000;

/// A client for an address nothing listens on: the fresh path never calls.
pub(crate) fn client() -> ClientBuilder {
    Client::builder()
        .client_id("bench-client")
        .client_secret("bench-secret")
        .redirect_uri("https://app.example.com/cb")
        .base_url("http://127.0.0.1:9/".parse().expect("a URL"))
}

pub(crate) fn user(i: u64) -> UserId {
    UserId::new(1_000_000 + i)
}

/// `USERS` logins that stay fresh for three hours, with tokens as long as Withings' (40 hex
/// digits).
pub(crate) async fn store() -> Arc<CopyingStore> {
    let store = MemoryStore::new();
    let expires_at = Utc::now() + TimeDelta::hours(3);
    for i in 0..USERS {
        let login = testing::credentials(
            user(i),
            &format!("{:040x}", i * 2 + 1),
            &format!("{:040x}", i * 2 + 2),
            expires_at,
        );
        store
            .save(user(i), &login, Expected::Absent)
            .await
            .expect("saved");
    }
    Arc::new(CopyingStore(store))
}

/// A `MemoryStore` whose loads return copies (new strings), as a database or a file does:
/// the tokens a cached session holds are then its own, and measured as such.
pub(crate) struct CopyingStore(MemoryStore);

impl TokenStore for CopyingStore {
    fn load<'a>(&'a self, user: UserId) -> StoreFuture<'a, Option<VersionedEntry>> {
        Box::pin(async move {
            let entry = self.0.load(user).await?;
            Ok(entry.map(|e| {
                let entry = match e.entry {
                    StoredEntry::Credentials(c) => {
                        let stored: StoredCredentials = c.reveal_for_storage();
                        StoredEntry::Credentials(
                            Credentials::from_stored(stored).expect("a valid entry"),
                        )
                    }
                    other => other,
                };
                VersionedEntry {
                    version: e.version,
                    entry,
                }
            }))
        })
    }
    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.0.save(user, credentials, expected)
    }
    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> StoreFuture<'a, Version> {
        self.0.mark_login_required(user, expected)
    }
    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> StoreFuture<'a, ()> {
        self.0.delete(user, expected)
    }
    fn users<'a>(&'a self) -> StoreFuture<'a, Vec<UserId>> {
        self.0.users()
    }
    fn lease<'a>(&'a self, user: UserId, ttl: std::time::Duration) -> StoreFuture<'a, Lease> {
        self.0.lease(user, ttl)
    }
}

/// With `WITHINGS_BENCH_RECORDER` set, Prometheus' recorder takes the metrics, as in a program
/// that exports them: the fresh path records nothing, so it must cost the same.
pub(crate) fn recorder_if_asked() {
    if std::env::var_os("WITHINGS_BENCH_RECORDER").is_some() {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder");
    }
}
