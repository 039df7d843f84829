//! What the SQL store's tests share: fresh SQLite files, fresh PostgreSQL schemas (each
//! dropped afterwards), and the database URL, required loudly.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use sqlx::Connection;
use withings_oauth::TokenStore;
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

/// The PostgreSQL the tests use. Fails the test, loudly, when it is not configured.
pub fn database_url() -> String {
    match std::env::var("WITHINGS_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "WITHINGS_TEST_DATABASE_URL is not set: these tests need PostgreSQL. Run `source .ci/postgres.sh` from the repository (it installs and starts a local cluster and sets the variable), or point it at a database where the role may create schemas"
        ),
    }
}

/// Two keys, `k2` active.
pub const KEYS: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The older key alone.
pub const OLD_KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn keys() -> Keyring {
    Keyring::parse(KEYS).unwrap()
}

pub fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A schema of its own in the test database; dropped by [`Schemas::drop_all`].
pub struct Schemas {
    url: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl Schemas {
    pub fn new() -> Self {
        Self {
            url: database_url(),
            names: Default::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new schema name (created by the store when it migrates).
    pub fn fresh(&self) -> String {
        let name = format!("withings_test_{}", random_suffix());
        self.names.lock().unwrap().push(name.clone());
        name
    }

    pub async fn drop_all(&self) {
        let mut connection = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| {
            panic!("WITHINGS_TEST_DATABASE_URL is unreachable ({e}): start PostgreSQL with `source .ci/postgres.sh`")
        });
        let names: Vec<String> = self.names.lock().unwrap().drain(..).collect();
        for name in names {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    }
}

/// Opens a PostgreSQL store in `schema`, failing loudly when the database is unreachable.
pub async fn postgres_store(url: &str, schema: &str, options: SqlOptions) -> SqlStore {
    SqlStore::connect(url, options.postgres_schema(schema))
        .await
        .unwrap_or_else(|e| {
            panic!("could not open the test database (WITHINGS_TEST_DATABASE_URL; start it with `source .ci/postgres.sh`): {e}")
        })
}

pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tokens.db").display())
}

pub fn shared(store: SqlStore) -> Arc<dyn TokenStore> {
    Arc::new(store)
}
