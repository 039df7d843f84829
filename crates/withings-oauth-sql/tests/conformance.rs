//! The store contract's conformance kit, on SQLite and on PostgreSQL, with and without keys.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use withings_oauth::TokenStore;
use withings_oauth::testing::conformance::{self, Options};
use withings_oauth_sql::{SqlOptions, SqlStore};

/// Handles to one database: three stores, each with its own pool (as three processes would
/// have), handed out in turn so that two handles asked for in a row never share a pool.
fn handles(stores: Vec<SqlStore>) -> impl Fn() -> Arc<dyn TokenStore> + Send + Sync + 'static {
    let next = AtomicUsize::new(0);
    move || {
        let i = next.fetch_add(1, Ordering::Relaxed) % stores.len();
        Arc::new(stores[i].clone()) as Arc<dyn TokenStore>
    }
}

async fn sqlite_kit(options: SqlOptions) {
    let mut dirs = Vec::new();
    conformance::run(
        || {
            let dir = tempfile::tempdir().unwrap();
            let url = support::sqlite_url(&dir);
            dirs.push(dir);
            let options = options.clone();
            async move {
                let mut stores = Vec::new();
                for _ in 0..3 {
                    stores.push(SqlStore::connect(&url, options.clone()).await.unwrap());
                }
                handles(stores)
            }
        },
        Options::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_store_contract() {
    sqlite_kit(SqlOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encrypted_sqlite_store_keeps_the_store_contract() {
    sqlite_kit(SqlOptions::default().keys(support::keys())).await;
}

async fn postgres_kit(options: SqlOptions) {
    let schemas = Arc::new(support::Schemas::new());
    let kit_schemas = schemas.clone();
    conformance::run(
        move || {
            let schemas = kit_schemas.clone();
            let options = options.clone();
            async move {
                let schema = schemas.fresh();
                let mut stores = Vec::new();
                for _ in 0..3 {
                    let options = options.clone().max_connections(4);
                    stores.push(support::postgres_store(schemas.url(), &schema, options).await);
                }
                handles(stores)
            }
        },
        Options::default(),
    )
    .await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_store_contract() {
    postgres_kit(SqlOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encrypted_postgres_store_keeps_the_store_contract() {
    postgres_kit(SqlOptions::default().keys(support::keys())).await;
}
