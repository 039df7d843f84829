//! What tests of programs on a PostgreSQL token database need (feature `test-util`): the test
//! database's URL, required loudly, and schemas of their own in it, dropped afterwards, so
//! that tests running at once never see each other's rows.
//!
//! The database comes from [`DATABASE_URL_VAR`] (`WITHINGS_TEST_DATABASE_URL`); its role must
//! be allowed to create schemas. A test that needs it and does not find it fails, saying what
//! to set: it never passes without having run.
//!
//! ```no_run
//! use withings_oauth_sql::SqlOptions;
//! use withings_oauth_sql::testing::{Schemas, postgres_store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let schemas = Schemas::new();
//! let schema = schemas.fresh();
//! let store = postgres_store(schemas.url(), &schema, SqlOptions::default()).await;
//! // ... the test ...
//! store.close().await;
//! schemas.drop_all().await;
//! # }
//! ```

use std::sync::{Mutex, PoisonError};

use sqlx::Connection;

use crate::{SqlOptions, SqlStore};

/// The environment variable naming the test database: `postgres://user:password@host/db`.
pub const DATABASE_URL_VAR: &str = "WITHINGS_TEST_DATABASE_URL";

/// The URL of the test database.
///
/// # Panics
/// When [`DATABASE_URL_VAR`] is not set, saying how to set it: a test that needs PostgreSQL
/// fails without it.
pub fn database_url() -> String {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DATABASE_URL_VAR} is not set: this test needs PostgreSQL. Run `source .ci/postgres.sh` from the repository (it installs and starts a local cluster and sets the variable), or point it at a database where the role may create schemas"
        ),
    }
}

/// Schemas of a test's own in the test database: named by [`fresh`](Self::fresh), created by
/// the store that migrates into them (or by [`create`](Self::create)), and all dropped by
/// [`drop_all`](Self::drop_all), or at the latest when this is dropped (a failed test too).
#[derive(Debug)]
pub struct Schemas {
    url: String,
    names: Mutex<Vec<String>>,
}

impl Schemas {
    /// Schemas in the database of [`database_url`] (which panics without it).
    pub fn new() -> Self {
        Self {
            url: database_url(),
            names: Mutex::default(),
        }
    }

    /// The test database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new schema name, `withings_test_` and 12 random hex digits, dropped with the others.
    /// Nothing is created: a store opened with
    /// [`SqlOptions::postgres_schema`] creates it when it migrates.
    pub fn fresh(&self) -> String {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("the system's random numbers");
        let name = bytes
            .iter()
            .fold(String::from("withings_test_"), |mut name, b| {
                name.push_str(&format!("{b:02x}"));
                name
            });
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.clone());
        name
    }

    /// A [`fresh`](Self::fresh) schema, created now, for programs that are given a URL only.
    ///
    /// # Panics
    /// When the database can't be reached or the schema can't be created.
    pub async fn create(&self) -> String {
        let name = self.fresh();
        let mut connection = self.connect().await;
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("could not create the schema {name}: {e}"));
        name
    }

    /// The test database's URL with `schema` first in the connections' `search_path`
    /// (`options[search_path]=`): what a program given a URL only works in.
    pub fn url_in(&self, schema: &str) -> String {
        let mut url: url::Url = self.url.parse().expect("the test database's URL parses");
        url.query_pairs_mut()
            .append_pair("options[search_path]", schema);
        url.to_string()
    }

    /// Drops every schema named so far.
    ///
    /// # Panics
    /// When the database can't be reached or a schema can't be dropped.
    pub async fn drop_all(&self) {
        let names = self.take_names();
        if names.is_empty() {
            return;
        }
        let mut connection = self.connect().await;
        for name in names {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("could not drop the schema {name}: {e}"));
        }
    }

    fn take_names(&self) -> Vec<String> {
        std::mem::take(&mut *self.names.lock().unwrap_or_else(PoisonError::into_inner))
    }

    async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| {
            panic!("{DATABASE_URL_VAR} is unreachable ({e}): start PostgreSQL with `source .ci/postgres.sh`")
        })
    }
}

impl Default for Schemas {
    fn default() -> Self {
        Self::new()
    }
}

/// Drops what [`drop_all`](Schemas::drop_all) has not, on a thread of its own (a drop can't
/// await), quietly: a test that failed has said why already.
impl Drop for Schemas {
    fn drop(&mut self) {
        let names = self.take_names();
        if names.is_empty() {
            return;
        }
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut connection) = sqlx::PgConnection::connect(&url).await {
                    for name in names {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                            .execute(&mut connection)
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// Opens the store at `url` in `schema` (see [`SqlOptions::postgres_schema`]).
///
/// # Panics
/// When it can't, saying to start the test database.
pub async fn postgres_store(url: &str, schema: &str, options: SqlOptions) -> SqlStore {
    SqlStore::connect(url, options.postgres_schema(schema))
        .await
        .unwrap_or_else(|e| {
            panic!("could not open the test database ({DATABASE_URL_VAR}; start it with `source .ci/postgres.sh`): {e}")
        })
}
