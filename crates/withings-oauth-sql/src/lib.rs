//! SQL token stores for [withings-oauth](withings_oauth) sessions: SQLite embedded for one
//! machine, PostgreSQL for many instances, tokens encrypted at rest; and the pending logins of
//! web servers on the same database.
//!
//! # Contents
//! - [Opening a store](#opening-a-store): the URL picks the backend
//! - [Keys](#keys): encryption at rest, rotation
//! - [Tables and migrations](#tables-and-migrations)
//! - [The refresh lease](#the-refresh-lease): why a row lease
//! - [Group commit](#group-commit): refreshes in flight share statements and commits
//! - [Pending logins](#pending-logins): web servers' logins between connect and callback
//! - [Shared rate limits](#shared-rate-limits): [`SqlBucket`]
//! - [Errors](#errors)
//! - [What it leaves to you](#what-it-leaves-to-you)
//!
//! # Opening a store
//! [`SqlStore::connect`] takes a URL: `sqlite:///var/lib/app/tokens.db` (feature `sqlite`, on
//! by default) or `postgres://user:password@host:5432/db` (feature `postgres`). The store keeps
//! the whole [`TokenStore`](withings_oauth::TokenStore) contract (versions, compare-and-swap,
//! leases) across every process and machine that opens the same database, and passes the
//! conformance kit.
//!
//! PostgreSQL connections use TLS (rustls) as the URL's `sslmode` says: `prefer` by default
//! (TLS when the server offers it, unverified), `require` (TLS or nothing), `verify-ca` or
//! `verify-full` (the server's certificate checked against `sslrootcert=/path/ca.pem`, or the
//! web's root authorities without it). Across machines, use `verify-full`: tokens travel on
//! that connection.
//!
//! A PostgreSQL connection that sat idle in the pool for a second or more is checked (one round
//! trip) before it is handed out, so a connection the server closed meanwhile (a restart, a
//! proxy's idle timeout) is replaced; one used within the last second is not checked, which
//! under load would cost a round trip per statement. A read, a lease claim (and its read) or a
//! save over a version whose connection turns out closed goes again once on another, and every
//! connection is then checked before use for two seconds, as its neighbours were likely closed
//! with it. Each of those statements may safely run twice: a save that was written before its
//! connection was lost is refused the second time (its version moved), and its caller finds its
//! own login stored; a claim made again by its own holder is taken again. Other writes (a first
//! save, a login marked as required, a delete) fail once with an error that says to retry.
//!
//! ```
//! use std::sync::Arc;
//! use withings_oauth::{Expected, TokenStore, UserId, testing};
//! use withings_oauth_sql::{Keyring, SqlOptions, SqlStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
//! let keys = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let store = SqlStore::connect(&url, SqlOptions::default().keys(keys)).await?;
//!
//! let user = UserId::new(1001);
//! let login = testing::credentials(user, "access", "refresh", chrono::Utc::now());
//! let v1 = store.save(user, &login, Expected::Absent).await?;
//! assert_eq!(store.load(user).await?.unwrap().version, v1);
//!
//! // Sessions share it as an `Arc<dyn TokenStore>`.
//! let shared: Arc<dyn TokenStore> = Arc::new(store);
//! # let _ = shared;
//! # Ok(())
//! # }
//! ```
//!
//! SQLite runs in WAL mode with `synchronous = FULL` (a write that returned survives a power
//! cut) and a busy timeout; every write is a `BEGIN IMMEDIATE` transaction, which takes the
//! write lock first and waits for it, where a plain `BEGIN` that later writes fails with
//! SQLITE_BUSY at once.
//!
//! The SQLite file is its user's alone, by the rules the `FileStore` follows
//! ([`check_private_dir`](withings_oauth::check_private_dir),
//! [`check_private_file`](withings_oauth::check_private_file)): it is created with mode 0600
//! (its `-wal` and `-shm` files take its mode), a missing directory with 0700; a database, `-wal`,
//! `-shm` or `-journal` file that is a symbolic link, another user's, or readable or writable
//! by others is refused, and so is a directory others can write to, a shared one with the
//! sticky bit such as `/tmp` included (others could create the `-wal` file first). The refusal
//! is a [`StoreError::InsecurePermissions`](withings_oauth::StoreError::InsecurePermissions)
//! that names the `chmod`, `chown` or `mkdir` to run.
//!
//! A PostgreSQL URL with a query parameter the driver does not read is refused, naming the
//! parameter but not its value: sqlx would log the value (a misspelled `pasword=`, say).
//!
//! [`SqlOptions::postgres_schema`] keeps PostgreSQL's tables in their own schema.
//!
//! # Keys
//! With a [`Keyring`] (from [`SqlOptions::from_env`]: `WITHINGS_STORE_KEYS="k2:base64,k1:base64"`,
//! first active, or a file named by `WITHINGS_STORE_KEYS_FILE`), both tokens are sealed with
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`, 192-bit random nonces). A sealed value
//! starts with a format byte and the id of its key; the associated data binds that header,
//! the column, the user id and the row's version, so a ciphertext copied onto another row or
//! column, or an older one of the same user written back over a newer row (a rollback to a
//! pair refreshed away), fails authentication: a
//! [`StoreError::Unreadable`](withings_oauth::StoreError::Unreadable) naming the user; the row
//! is left untouched. Plaintext copies are zeroized after use.
//!
//! Encryption fails closed. The database records the ids (never the bytes) of the keys that
//! sealed tokens in it (`withings_keys`, migration 0005). From the first key on:
//! - a store opened without keys is refused
//!   ([`StoreError::Encryption`](withings_oauth::StoreError::Encryption), naming
//!   `WITHINGS_STORE_KEYS`); a program without keys that opened it before is refused by the
//!   database itself, whose triggers reject any token written in clear text;
//! - a store with keys refuses a row in clear text on read (planted, or written by a program
//!   that bypassed the triggers) as `Unreadable`;
//! - the one way in for a database used without keys is explicit:
//!   [`SqlStore::encrypt_clear_rows`] (`withings-oauth store encrypt`) records the key, then
//!   seals every clear row. Opening such a database with keys otherwise is refused, and there
//!   is no way back to clear text.
//!
//! To rotate: put the new key first and keep the old ones after it, on every instance, then run
//! [`SqlStore::rotate_keys`] (`withings-oauth store rotate-key`). It first retires every other
//! key id in the database, so that an instance still sealing with an old key is refused (its
//! save fails, telling it to load the new key; one started with a retired active key is refused
//! at once) instead of writing rows the sweep would miss; then it moves every row to the active
//! key with compare-and-swap updates while sessions keep working; then it counts, in the
//! database, the logins of each key ([`Rotation::rows_by_key`]). Only when every login uses the
//! active key ([`Rotation::complete`]) can the old keys go.
//!
//! A login whose key is gone (not loaded) is `Unreadable`, naming the key id it needs; it does
//! not lock its user out: a new login replaces it (`Session::start` writes over the version
//! the error carries) and a forced logout removes it.
//!
//! Without a key, on a database never encrypted, tokens are stored in clear text: opening such
//! a store logs a warning once per process, and [`SqlStore::clear_text_warning`] gives a program
//! the text to show. What looks like a key meant but lost is refused instead ([`KeyError`]): a
//! variable set but empty, a key file that others can read or change (`chmod 600` it), or,
//! with neither variable set, one whose name is close to theirs (`WITHINGS_STORE_KEY`).

//! # Tables and migrations
//! `withings_credentials` holds one row per user: version, sealed access and refresh tokens,
//! the key id, token type, scopes, expiry, the login-required flag, when tokens were last
//! saved (`refreshed_at`) and last found dead (`failed_at`, `failure_count`), all timestamps
//! in Unix seconds, indexed by user only (migration `0004` dropped two indexes no statement
//! used, so that a refresh updates its row in place: on PostgreSQL a heap-only update, the
//! table keeping a fifth of each page free for it). It is the only place a token is kept.
//! Each write is a single compare-and-swap statement `... WHERE version = $expected`. A logout
//! deletes the row; versions still never come back: a user's first write (a login, or a
//! "login required" mark) starts a new epoch of a store-wide counter, at epoch × 2³² (above
//! every version written before, for any user), and each later write adds one (migration
//! 0005, which also purged the tombstones that earlier versions kept for this).
//! `withings_leases` holds the refresh leases, `withings_pending_logins` the
//! [pending logins](#pending-logins) of web servers, and `withings_rate_limits` the shared
//! token buckets (migration `0003`; it needs nothing but `0001`).
//!
//! The migrations live in `migrations/sqlite` and `migrations/postgres` and are embedded at
//! build time ([`SQLITE_MIGRATIONS`], [`POSTGRES_MIGRATIONS`]). [`SqlStore::connect`] applies
//! them unless [`SqlOptions::run_migrations`] is `false`; integrators who run migrations
//! themselves use `sqlx migrate run --source <path to this crate>/migrations/postgres`, or
//! call `POSTGRES_MIGRATIONS.run(&pool)`, and open the store with migrations off, which then
//! checks that none is missing.
//!
//! # The refresh lease
//! A lease is a row of `withings_leases` (user, owner, until), claimed with one conditional
//! statement: insert, or take over the row if its `until` has passed. On PostgreSQL `until`
//! is computed on the database's clock, so instances whose clocks disagree still agree on
//! it. A refresh's [`save_and_release`](withings_oauth::TokenStore::save_and_release)
//! deletes the row in the save's own statement, if its owner is still this holder; a
//! [`Lease`](withings_oauth::Lease) dropped without it deletes the row in a background task
//! (`Drop` can't wait), gathered with the other releases in flight. Waiters poll the row
//! with a backoff of 5 to 100 ms and never past its expiry; within one process they queue on
//! an in-process lease first, so only one of them polls. A caller that has waited a second
//! for another holder says so once ([`SqlOptions::on_lease_wait`], and an INFO log line):
//! which user, which process, how long at most.
//!
//! **Short leases, renewed while their holder lives.** The row lives
//! [`SqlOptions::lease_ttl`] (2 s by default), and each store handle runs a heartbeat that
//! renews every lease it holds, in one statement on PostgreSQL (the users, owners and times
//! to live in arrays) or in the gathered write transaction on SQLite, every
//! [`SqlOptions::lease_renewal`] (a quarter of the time to live): one statement per handle
//! and period, however many refreshes are in flight. A lease is renewed only while its owner
//! still holds it unexpired, and never past the time to live its caller asked for
//! ([`DEFAULT_LEASE_TTL`](withings_oauth::DEFAULT_LEASE_TTL) for a session's refresh), so a
//! holder whose task hangs while its heartbeat runs still loses it then. A holder that is
//! killed stops renewing: the others take its lease over within the time to live, about 2 s
//! instead of the 90 s a refresh's whole lease would last. Each renewal moves the holder's
//! [`LeaseTerm`](withings_oauth::LeaseTerm); a renewal that finds the lease taken over (or
//! expired) marks it lost.
//!
//! **Fencing.** Right before its refresh request leaves (after a nonce call, after a rate
//! limiter's wait), a session reads its lease's term and sends the request with a timeout
//! that ends [`LEASE_SLACK`](withings_oauth::LEASE_SLACK) before the lease does (at most the
//! client's own timeout). With less than half a second to give, it waits for a renewal; a
//! lease lost or ended sends nothing
//! ([`ApiError::LeaseEnded`](withings_oauth::ApiError::LeaseEnded)), and the session takes
//! the lease again, which reads what the holder that took over stored. So a holder paused
//! past its lease (a stopped process, a host frozen for a while) never presents a refresh
//! token that another holder rotated meanwhile. What can't be fenced: a holder paused after
//! its request left. Withings processes that request while someone else may hold the lease;
//! the compare-and-swap on the version still drops the late pair unused, and Withings honours
//! the old refresh token for 8 hours after a rotation, so the other holder's refresh
//! succeeds too; a server that refused any rotated token (the sandbox's strict rotation)
//! would end the grant there. A holder killed while its request is in flight is the same
//! case: its lease expires at the request's deadline at the latest, and the next holder
//! presents the refresh token the dead one sent.
//!
//! **The cost: short refresh requests.** Recovery can't be faster than the longest request
//! allowed under a lease, since a request in flight must end before its lease does (or two
//! requests of one user could be in flight at once). With the default 2 s lease, a refresh
//! request gets about 1.5 s (the lease left after the last renewal, less the slack) instead
//! of the client's 30 s. A slower answer from Withings is cut off and the refresh fails
//! with a timeout; the next call refreshes again with the same refresh token, which Withings
//! still honours (for 8 hours after a rotation nobody used), so nothing is lost, but a server
//! counting reused refresh tokens (the sandbox's strict rotation) counts that one. Where
//! Withings answers slowly, raise [`SqlOptions::lease_ttl`]: recovery after a crash takes as
//! long.
//!
//! Why not an advisory lock (`pg_advisory_xact_lock`) held by a transaction? It would hold a
//! pooled connection, and a transaction, for the whole refresh (a token call of up to 30 s),
//! so 50 concurrent refreshes would need 50 connections; it can't expire while its holder
//! hangs, only when its connection dies; and SQLite has nothing like it. A row lease costs
//! two short statements (and a share of one renewal statement per handle while held), works
//! the same on both backends, expires in-process as the conformance kit expects, and can be
//! inspected with a `SELECT`.
//!
//! Why a heartbeat rather than a long lease cut short some other way? A long lease makes a
//! crash cost its whole length (a `token` command killed mid-refresh made the next one wait
//! 86 s, silently). Releasing leases of dead processes by their process id works on one
//! machine only, and a process id is reused. The renewal keeps the lease as long as its
//! holder lives and no longer, costs one statement per handle and period whatever the number
//! of leases, and gives the holder a term it can check before it sends anything.
//!
//! # Group commit
//! A refresh makes three calls to the store: the session's restore reads the login;
//! [`lease_and_load`](withings_oauth::TokenStore::lease_and_load) claims the lease and reads
//! the login again under it; [`save_and_release`](withings_oauth::TokenStore::save_and_release)
//! saves the new pair over the version read and ends the lease. The store answers the second
//! with two statements sent one after the other (the read after the claim, with a snapshot of
//! its own, so it sees the previous holder's save), and the third with one statement
//! (PostgreSQL) or transaction (SQLite), which ends the lease only if this holder still holds
//! it: a holder whose lease expired and was taken over never ends the new holder's. A store
//! gathers the calls that arrive while one like them is running, and sends them together as
//! the next one:
//!
//! - on PostgreSQL, one statement per kind (loads, claims, saves over a version with the
//!   leases they end, releases of leases dropped without a save), the values in arrays
//!   (`unnest`, `= ANY`);
//! - on SQLite, whose writes go one at a time through the file's write lock anyway, every
//!   claim (and its read), save and release in flight in one transaction, so one commit; the
//!   loads in one statement (the ids in a JSON array, `json_each`).
//!
//! A lone call goes at once, as it would alone. Under load, many refreshes share each round
//! trip and each commit, and a store handle runs at most one statement of each kind at a time,
//! whatever the number of refreshes in flight.
//!
//! Each caller still gets its own answer. A save the batch did not write (its version was not
//! the stored one) is made again on its own, which reads what is stored and reports the
//! [`Conflict`](withings_oauth::Conflict), exactly as an ungathered save would. A batch the
//! database refuses as a whole is run again one call at a time, so that one call's failure
//! stays its own. Lease rows are locked in the order of their users, and saves send theirs in
//! that order, so batches of different processes rarely wait for each other in a circle; if
//! the database breaks such a circle (a deadlock), the calls are answered as if the lease were
//! held or the save refused, and go again. A caller that stops waiting (a timeout, a
//! cancelled task) does not stop its call: a lease claimed for it releases itself.

//! # Pending logins
//! [`SqlStore::pending_logins`] gives a [`SqlPendingLogins`]: the
//! [`PendingLoginStore`](withings_oauth::PendingLoginStore) of a web server (for
//! `withings-oauth-axum`) on the store's database, sharing its pool, migrations and keys, so
//! every instance opening the database finishes the logins any of them started. A row per
//! login (migration 0002): the SHA-256 of its `state` (the key), the hash of the browser
//! binding, the owner, the creation time (Unix ms), redirect URI, scopes, the demo flag, and
//! the `state` itself sealed as tokens are (bound to the column and every other column of the
//! row; in clear without keys). The `state` is kept, not only its hash, because the
//! [`PendingLoginStore`](withings_oauth::PendingLoginStore) contract gives back the whole
//! parked login, which the callback checks against the `state` it received; without keys it
//! is readable for the login's lifetime (10 minutes) by whoever reads the database, who could
//! then also read every token in it: use keys. A take is one `DELETE ... WHERE state_hash = $1 AND browser_hash = $2
//! RETURNING ...`: of instances racing for one callback, one gets the login. A put purges
//! expired rows and drops the owner's oldest beyond the cap (5 by default) in one
//! transaction.
//!
//! # Shared rate limits
//! [`SqlStore::rate_bucket`] gives a [`SqlBucket`]: a token bucket in one row of
//! `withings_rate_limits`, shared by every handle of every process that opens the database,
//! for a rate limit that all instances of an application keep together. Each
//! [`try_take`](SqlBucket::try_take) is one statement that adds the refill since the last
//! take and takes a token only if there is one, on the row it locks; on PostgreSQL the refill
//! is computed on the database's clock, so instances with skewed clocks agree. A stored time
//! ahead of that clock (it stepped back) counts as now: the bucket keeps its level and refills
//! from now on. The policy
//! (how to wait, what to do when the database fails) is left to the caller:
//! `withings-oauth-fleet`'s `SqlRateLimiter` is one.
//!
//! # Errors
//! Every failure is a [`StoreError`](withings_oauth::StoreError): a database that is down, a
//! refused password, a missing migration or a locked SQLite file is `Other` with a message
//! that says what to do; a login that can't be read (a missing key, a failed authentication,
//! clear text in an encrypted store, a damaged column) is `Unreadable`, names the user and its
//! version, and nothing is written over it; keys that don't fit the database are `Encryption`,
//! naming the setting. No message holds a token, a key or the URL's password.
//!
//! # What it leaves to you
//! - Keeping the keys: the store reads them, it does not make, store or back them up.
//! - Choosing `sslmode=verify-full` (and giving `sslrootcert`) when PostgreSQL is on another
//!   machine: the default, `prefer`, does not verify the server.
//! - Refreshing users ahead of time: sessions refresh on demand (the fleet's sweep renews
//!   refresh tokens unused for a long time).
//! - Protecting the database from someone who can alter its schema: the triggers that refuse
//!   clear text can be dropped by the database's owner; a store with keys still refuses what
//!   such a writer plants, but can't stop a whole row (version included) being replaced by an
//!   older copy of itself from a backup.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("withings-oauth-sql needs the feature `sqlite` or `postgres` (or both)");

/// `sqlx::migrate!` without sqlx's `macros` feature: that feature would build the
/// compile-time query checker (and both database drivers) into a proc-macro crate that this
/// crate never uses. `sqlx::migrate!` expands to exactly this call.
macro_rules! embed_migrations {
    ($dir:literal) => {
        sqlx::sqlx_macros::migrate!($dir)
    };
}

// Each module uses only those below it in the crate's drawing (docs/architecture.md).
mod cas;
mod db;
mod encryption;
mod gathered;
mod keys;
mod lease;
mod options;
mod pending;
mod queries;
mod rate_limit;
mod rotation;
mod row;
mod schema;
mod sealed;
mod store;
mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

pub use keys::{KEY_LEN, KEYS_ENV, KEYS_FILE_ENV, KeyError, Keyring};
pub use options::{Backend, DEFAULT_DATABASE_LEASE, LeaseWait, OnLeaseWait, SqlOptions};
pub use pending::SqlPendingLogins;
pub use rate_limit::{BucketState, RateParams, SqlBucket};
pub use rotation::Rotation;
pub use store::{CLEAR_TEXT_WARNING, SqlStore};

/// The SQLite migrations (`migrations/sqlite`), embedded at build time: for integrators who
/// apply them themselves (`SQLITE_MIGRATIONS.run(&pool)`).
#[cfg(feature = "sqlite")]
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = embed_migrations!("migrations/sqlite");

/// The PostgreSQL migrations (`migrations/postgres`), embedded at build time: for integrators
/// who apply them themselves (`POSTGRES_MIGRATIONS.run(&pool)`).
#[cfg(feature = "postgres")]
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = embed_migrations!("migrations/postgres");

/// The `sqlx` this crate is built on, for integrators who run the migrations on their own pool.
pub use sqlx;
