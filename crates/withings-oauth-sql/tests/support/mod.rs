//! What the SQL store's tests share: fresh SQLite files, keys, and (from the crate's
//! `testing`) fresh PostgreSQL schemas, each dropped afterwards, and the database URL,
//! required loudly.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::Arc;

use withings_oauth::TokenStore;
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

pub use withings_oauth_sql::testing::{Schemas, database_url, postgres_store};

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

pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tokens.db").display())
}

pub fn shared(store: SqlStore) -> Arc<dyn TokenStore> {
    Arc::new(store)
}

/// Where the tests of several processes keep their tokens: a SQLite file, or a PostgreSQL
/// schema of their own (dropped by [`Database::drop`]).
pub enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(Schemas, String),
}

impl Database {
    pub fn sqlite() -> Self {
        Database::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres() -> Self {
        let schemas = Schemas::new();
        let schema = schemas.fresh();
        Database::Postgres(schemas, schema)
    }

    /// The store URL, for this process and its children.
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => sqlite_url(dir),
            Database::Postgres(schemas, _) => schemas.url().to_owned(),
        }
    }

    /// The PostgreSQL schema; empty for SQLite.
    pub fn schema(&self) -> &str {
        match self {
            Database::Sqlite(_) => "",
            Database::Postgres(_, schema) => schema,
        }
    }

    pub async fn drop(self) {
        if let Database::Postgres(schemas, _) = self {
            schemas.drop_all().await;
        }
    }
}

/// Opens the store at `url`, in `schema` unless it is empty (SQLite), failing loudly.
pub async fn open_in(url: &str, schema: &str, mut options: SqlOptions) -> SqlStore {
    if !schema.is_empty() {
        options = options.postgres_schema(schema);
    }
    SqlStore::connect(url, options).await.unwrap_or_else(|e| {
        panic!("could not open the database (for PostgreSQL: WITHINGS_TEST_DATABASE_URL, `source .ci/postgres.sh`): {e}")
    })
}
