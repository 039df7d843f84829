//! Encryption that fails closed, on both backends: once a database has been used with keys, a
//! program without them is refused and can't write in clear text; a clear row planted in it, or
//! an older ciphertext written back over a newer row, does not open; a rotation retires the old
//! key for every instance and counts what each key seals; a login whose key is gone does not
//! lock its user out; a logout leaves no row behind, and versions never come back.

mod support;

use std::str::FromStr;
use std::sync::Arc;

use withings_oauth::{
    Authorized, Client, Expected, Session, StoreError, StoredEntry, TokenStore, UserId, testing,
};
use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};

const ALICE: UserId = UserId::new(701);
const BOB: UserId = UserId::new(702);
/// The new key alone.
const NEW_KEY: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn creds(user: UserId, tag: &str) -> withings_oauth::Credentials {
    testing::credentials(
        user,
        &format!("access-{tag}-secret"),
        &format!("refresh-{tag}-secret"),
        chrono::Utc::now() + chrono::TimeDelta::hours(3),
    )
}

/// One database, SQLite or PostgreSQL, opened by as many stores as a test wants, and read or
/// altered behind their backs as someone with write access to the database would.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(support::Schemas, String),
}

impl Db {
    fn sqlite() -> Self {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let schemas = support::Schemas::new();
        let schema = schemas.fresh();
        Db::Postgres(schemas, schema)
    }

    async fn open(&self, keys: Option<&str>) -> Result<SqlStore, StoreError> {
        let mut options = SqlOptions::default();
        if let Some(keys) = keys {
            options = options.keys(Keyring::parse(keys).unwrap());
        }
        match self {
            Db::Sqlite(dir) => SqlStore::connect(&support::sqlite_url(dir), options).await,
            Db::Postgres(schemas, schema) => {
                SqlStore::connect(schemas.url(), options.postgres_schema(schema)).await
            }
        }
    }

    /// Runs `sql` on the database, outside any store.
    async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Db::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir)).await?;
                let rows = sqlx::query(sql).execute(&pool).await?.rows_affected();
                pool.close().await;
                Ok(rows)
            }
            Db::Postgres(schemas, schema) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(schemas.url())?
                    .options([("search_path", schema.as_str())]);
                let pool = sqlx::PgPool::connect_with(options).await?;
                let rows = sqlx::query(sql).execute(&pool).await?.rows_affected();
                pool.close().await;
                Ok(rows)
            }
        }
    }

    /// A number the database computes.
    async fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
            Db::Postgres(schemas, schema) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(schemas.url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                let pool = sqlx::PgPool::connect_with(options).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
        }
    }

    /// The user's sealed tokens, as hex (a value SQL can write back).
    async fn tokens_hex(&self, user: UserId) -> (String, String) {
        let hex = |column: &str| match self {
            Db::Sqlite(_) => format!("hex({column})"),
            Db::Postgres(..) => format!("encode({column}, 'hex')"),
        };
        let read = |column: String| {
            format!(
                "SELECT {column} FROM withings_credentials WHERE user_id = {}",
                user.get()
            )
        };
        let (access, refresh) = (read(hex("access_token")), read(hex("refresh_token")));
        match self {
            Db::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&support::sqlite_url(dir))
                    .await
                    .unwrap();
                (
                    sqlx::query_scalar(&access).fetch_one(&pool).await.unwrap(),
                    sqlx::query_scalar(&refresh).fetch_one(&pool).await.unwrap(),
                )
            }
            Db::Postgres(schemas, schema) => {
                let options = sqlx::postgres::PgConnectOptions::from_str(schemas.url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                let pool = sqlx::PgPool::connect_with(options).await.unwrap();
                (
                    sqlx::query_scalar(&access).fetch_one(&pool).await.unwrap(),
                    sqlx::query_scalar(&refresh).fetch_one(&pool).await.unwrap(),
                )
            }
        }
    }

    /// A bytes literal in this database's SQL.
    fn bytes(&self, hex: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("x'{hex}'"),
            Db::Postgres(..) => format!("decode('{hex}', 'hex')"),
        }
    }

    /// Switches off the database's refusal of clear text: what someone who can alter the
    /// schema does before planting a row.
    async fn drop_clear_text_refusal(&self) {
        let statements: &[&str] = match self {
            Db::Sqlite(_) => &[
                "DROP TRIGGER withings_credentials_clear_insert",
                "DROP TRIGGER withings_credentials_clear_update",
            ],
            Db::Postgres(..) => {
                &["ALTER TABLE withings_credentials DISABLE TRIGGER withings_credentials_keys"]
            }
        };
        for statement in statements {
            self.execute(statement).await.unwrap();
        }
    }

    async fn finish(self) {
        if let Db::Postgres(schemas, _) = self {
            schemas.drop_all().await;
        }
    }
}

/// `0x00 | text`: a token stored in clear text, as a program without keys writes it.
fn clear_hex(text: &str) -> String {
    let mut hex = String::from("00");
    for byte in text.bytes() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

fn shows_no_token(error: &StoreError) {
    let message = format!("{error} {error:?}");
    assert!(!message.contains("-secret"), "{message}");
    assert!(!message.contains("sneaky"), "{message}");
}

macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::Db::sqlite();
                super::$scenario(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = super::Db::postgres();
                super::$scenario(&db).await;
                db.finish().await;
            }
        }
    };
}

/// A program started without keys (or with an empty or misspelled key variable, which give
/// none) is refused by a database that has been used with keys, with the setting named.
async fn a_database_used_with_keys_refuses_a_program_without_them(db: &Db) {
    let keyed = db.open(Some(support::KEYS)).await.unwrap();
    keyed
        .save(ALICE, &creds(ALICE, "alice"), Expected::Absent)
        .await
        .unwrap();
    let refused = db.open(None).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Encryption { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(message.contains("WITHINGS_STORE_KEYS"), "{message}");
    assert!(message.contains("k2"), "{message}");
    keyed.close().await;
}
on_both_backends!(a_database_used_with_keys_refuses_a_program_without_them);

/// A program without keys that opened the database before it was encrypted can't write a
/// token in clear text once another has used keys: the database itself refuses.
async fn a_program_without_keys_can_not_write_in_clear_once_keys_are_in_use(db: &Db) {
    let keyless = db.open(None).await.unwrap();
    let keyed = db.open(Some(support::KEYS)).await.unwrap();
    keyed
        .save(ALICE, &creds(ALICE, "alice"), Expected::Absent)
        .await
        .unwrap();
    let refused = keyless
        .save(BOB, &creds(BOB, "bob"), Expected::Absent)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Encryption { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("clear text"), "{refused}");
    shows_no_token(&refused);
    // A refreshed pair of an existing login is refused too.
    let v = keyed.load(ALICE).await.unwrap().unwrap().version;
    let refused = keyless
        .save(ALICE, &creds(ALICE, "alice-2"), Expected::Version(v))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Encryption { .. }),
        "{refused:?}"
    );
    let clear = db
        .count("SELECT COUNT(*) FROM withings_credentials WHERE key_id IS NULL")
        .await;
    assert_eq!(clear, 0, "a row in clear text was written");
    keyed.close().await;
    keyless.close().await;
}
on_both_backends!(a_program_without_keys_can_not_write_in_clear_once_keys_are_in_use);

/// A row in clear text planted in an encrypted database is refused by the database; planted
/// anyway (its refusal switched off), it does not open, and the error names the user, never
/// the value.
async fn a_clear_row_planted_in_an_encrypted_database_is_refused(db: &Db) {
    let store = db.open(Some(support::KEYS)).await.unwrap();
    store
        .save(ALICE, &creds(ALICE, "alice"), Expected::Absent)
        .await
        .unwrap();
    let plant = format!(
        "UPDATE withings_credentials SET access_token = {}, refresh_token = {}, key_id = NULL \
         WHERE user_id = {}",
        db.bytes(&clear_hex("sneaky-access")),
        db.bytes(&clear_hex("sneaky-refresh")),
        ALICE.get()
    );
    let refused = db.execute(&plant).await.unwrap_err().to_string();
    assert!(refused.contains("clear text refused"), "{refused}");

    db.drop_clear_text_refusal().await;
    assert_eq!(db.execute(&plant).await.unwrap(), 1);
    let error = store.load(ALICE).await.unwrap_err();
    let StoreError::Unreadable { user, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*user, ALICE);
    assert!(error.to_string().contains("clear text"), "{error}");
    shows_no_token(&error);
    store.close().await;
}
on_both_backends!(a_clear_row_planted_in_an_encrypted_database_is_refused);

/// An older ciphertext of the same user, written back over a newer row (a rollback to a pair
/// that was refreshed away), does not open.
async fn an_older_ciphertext_written_back_over_a_newer_row_does_not_open(db: &Db) {
    let store = db.open(Some(support::KEYS)).await.unwrap();
    let v1 = store
        .save(ALICE, &creds(ALICE, "old"), Expected::Absent)
        .await
        .unwrap();
    let (old_access, old_refresh) = db.tokens_hex(ALICE).await;
    store
        .save(ALICE, &creds(ALICE, "new"), Expected::Version(v1))
        .await
        .unwrap();
    let rollback = format!(
        "UPDATE withings_credentials SET access_token = {}, refresh_token = {} WHERE user_id = {}",
        db.bytes(&old_access),
        db.bytes(&old_refresh),
        ALICE.get()
    );
    assert_eq!(db.execute(&rollback).await.unwrap(), 1);
    let error = store.load(ALICE).await.unwrap_err();
    assert!(matches!(error, StoreError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("authentication"), "{error}");
    shows_no_token(&error);
    store.close().await;
}
on_both_backends!(an_older_ciphertext_written_back_over_a_newer_row_does_not_open);

/// A login sealed with a key that is no longer loaded is named with that key id, and does not
/// lock its user out: a new login replaces it, and a forced logout removes it.
async fn a_login_whose_key_is_gone_does_not_lock_its_user_out(db: &Db) {
    let old = db.open(Some(support::OLD_KEY)).await.unwrap();
    for (user, tag) in [(ALICE, "alice"), (BOB, "bob")] {
        old.save(user, &creds(user, tag), Expected::Absent)
            .await
            .unwrap();
    }
    old.close().await;

    let store = db.open(Some(NEW_KEY)).await.unwrap();
    let error = store.load(ALICE).await.unwrap_err();
    assert!(matches!(error, StoreError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("`k1`"), "{error}");

    let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
    let client = Client::builder()
        .client_id("app")
        .client_secret("secret")
        .redirect_uri("http://127.0.0.1:9/callback")
        .build()
        .unwrap();
    let login = Authorized::from_credentials(&client, creds(ALICE, "alice-again"));
    Session::start(login, shared.clone()).await.unwrap();
    let entry = store.load(ALICE).await.unwrap().unwrap();
    let StoredEntry::Credentials(credentials) = entry.entry else {
        panic!("not a login");
    };
    assert_eq!(
        credentials.access_token().expose_secret(),
        "access-alice-again-secret"
    );

    shared.force_delete(BOB).await.unwrap();
    assert!(store.load(BOB).await.unwrap().is_none());
    store.close().await;
}
on_both_backends!(a_login_whose_key_is_gone_does_not_lock_its_user_out);

/// A rotation retires the old key in the database before it moves the rows: an instance still
/// sealing with the old key is refused (it must load the new one) instead of writing rows the
/// rotation would miss, and the rotation's count of each key, made after the sweep, is exact.
async fn a_rotation_retires_the_old_key_for_every_instance_and_counts_each_key(db: &Db) {
    let lagging = db.open(Some(support::OLD_KEY)).await.unwrap();
    let mut versions = Vec::new();
    for i in 0..3 {
        let user = UserId::new(800 + i);
        versions.push(
            lagging
                .save(user, &creds(user, &format!("u{i}")), Expected::Absent)
                .await
                .unwrap(),
        );
    }
    let rotating = db.open(Some(support::KEYS)).await.unwrap();
    let rotation = rotating.rotate_keys().await.unwrap();
    assert_eq!(rotation.rewritten, 3, "{rotation:?}");
    assert_eq!(rotation.rows_by_key.get("k2"), Some(&3), "{rotation:?}");
    assert_eq!(rotation.rows_by_key.len(), 1, "{rotation:?}");
    assert!(rotation.complete(), "{rotation:?}");

    // The instance that still seals with k1 refreshes a login: refused, nothing written.
    let user = UserId::new(800);
    let refused = lagging
        .save(user, &creds(user, "late"), Expected::Version(versions[0]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Encryption { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("newer key"), "{refused}");
    let old_rows = db
        .count("SELECT COUNT(*) FROM withings_credentials WHERE key_id = 'k1'")
        .await;
    assert_eq!(old_rows, 0);
    // And an instance started with the old key alone is refused.
    let restarted = db.open(Some(support::OLD_KEY)).await.unwrap_err();
    assert!(restarted.to_string().contains("retired"), "{restarted}");

    // A login sealed meanwhile with a key the rotating instance lacks is counted under its
    // key, and the rotation is not complete.
    let other = db
        .open(Some("k0:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="))
        .await
        .unwrap();
    let carol = UserId::new(810);
    other
        .save(carol, &creds(carol, "carol"), Expected::Absent)
        .await
        .unwrap();
    let again = rotating.rotate_keys().await.unwrap();
    assert_eq!(again.unreadable, [carol], "{again:?}");
    assert_eq!(again.rows_by_key.get("k0"), Some(&1), "{again:?}");
    assert_eq!(again.rows_by_key.get("k2"), Some(&3), "{again:?}");
    assert!(!again.complete(), "{again:?}");
    other.close().await;
    lagging.close().await;
    rotating.close().await;
}
on_both_backends!(a_rotation_retires_the_old_key_for_every_instance_and_counts_each_key);

/// A logout deletes the user's row (no tombstone is left), and the next login still gets a
/// version above every version the user had.
async fn a_logout_leaves_no_row_and_versions_never_come_back(db: &Db) {
    let store = db.open(Some(support::KEYS)).await.unwrap();
    let v1 = store
        .save(ALICE, &creds(ALICE, "a"), Expected::Absent)
        .await
        .unwrap();
    let v2 = store
        .save(ALICE, &creds(ALICE, "b"), Expected::Version(v1))
        .await
        .unwrap();
    store.delete(ALICE, Expected::Version(v2)).await.unwrap();
    let rows = db
        .count("SELECT COUNT(*) FROM withings_credentials WHERE user_id = 701")
        .await;
    assert_eq!(rows, 0, "the logout left a row behind");
    let again = store
        .save(ALICE, &creds(ALICE, "c"), Expected::Absent)
        .await
        .unwrap();
    assert!(again > v2, "{again} after {v2}");
    // Another user's first login too is above every version written before.
    let bob = store
        .mark_login_required(BOB, Expected::Absent)
        .await
        .unwrap();
    assert!(bob > again, "{bob} after {again}");
    store.close().await;
}
on_both_backends!(a_logout_leaves_no_row_and_versions_never_come_back);
