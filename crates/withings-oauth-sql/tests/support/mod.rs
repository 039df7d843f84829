//! What the SQL store's tests share: fresh SQLite files, keys, and (from the crate's
//! `testing`) fresh PostgreSQL schemas, each dropped afterwards, and the database URL,
//! required loudly.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::Arc;

use withings_oauth::TokenStore;
use withings_oauth_sql::{Keyring, SqlStore};

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
