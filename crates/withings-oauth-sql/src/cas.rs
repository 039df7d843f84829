//! Compare-and-swap writes of `withings_credentials`: every write is one statement
//! `... WHERE version = $expected` (over a tombstone for a first save), and a refused one reads
//! what is stored, to report the [`Conflict`](withings_oauth::Conflict) with it.

use std::sync::Arc;

use withings_oauth::{Credentials, Expected, StoreError, UserId, Version, VersionedEntry};

use crate::db::{self, Pool};
use crate::gathered::{Gatherer, Release, Save};
use crate::keys::Keyring;
use crate::queries as q;
use crate::row::{self, RawRow, SealedCredentials, bind_sealed};

/// A write of a user's entry.
#[derive(Clone, Copy)]
pub(crate) enum Change<'a> {
    /// Credentials sealed for the version the write gives the row.
    Save(&'a SealedCredentials),
    LoginRequired,
    Delete,
}

/// What a compare-and-swap write found.
enum Outcome {
    Written(i64),
    Refused(Option<RawRow>),
}

/// The version of a write: the expected one, or none for a first write.
type VersionQuery<'q, DB> =
    sqlx::query::QueryScalar<'q, DB, i64, <DB as sqlx::Database>::Arguments<'q>>;

/// The statement for `change` expecting `expected` (a first write: the `first` version), bound:
/// it returns the row's version, or no row when refused.
fn write_query<'q, DB>(
    user: i64,
    now: i64,
    change: Change<'q>,
    expected: Result<i64, i64>,
) -> VersionQuery<'q, DB>
where
    DB: sqlx::Database,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match (change, expected) {
        (Change::Save(s), Err(_)) => {
            bind_sealed(sqlx::query_scalar(q::SAVE_ABSENT), user, s, now).bind(s.version)
        }
        (Change::Save(s), Ok(v)) => {
            bind_sealed(sqlx::query_scalar(q::SAVE_VERSION), user, s, now).bind(v)
        }
        (Change::LoginRequired, Err(first)) => sqlx::query_scalar(q::MARK_ABSENT)
            .bind(user)
            .bind(now)
            .bind(first),
        (Change::LoginRequired, Ok(v)) => sqlx::query_scalar(q::MARK_VERSION)
            .bind(user)
            .bind(now)
            .bind(v),
        // A delete of an absent user is answered before any statement.
        (Change::Delete, v) => sqlx::query_scalar(q::DELETE_VERSION)
            .bind(user)
            .bind(v.unwrap_or(0)),
    }
}

/// The credentials table, read and written with the store's keys. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Rows {
    pub(crate) gatherer: Gatherer,
    pub(crate) keys: Option<Arc<Keyring>>,
}

impl Rows {
    pub(crate) fn keys(&self) -> Option<&Keyring> {
        self.keys.as_deref()
    }

    /// The entry a row stores; a row that can't be read is `Corrupt`, naming the user.
    pub(crate) fn open(&self, user: UserId, raw: RawRow) -> Result<VersionedEntry, StoreError> {
        row::open(self.keys(), self.gatherer.db().shown(), user, raw)
    }

    /// Reads a user's entry, gathered with the other reads in flight.
    pub(crate) async fn load(&self, user: UserId) -> Result<Option<VersionedEntry>, StoreError> {
        let raw = self.gatherer.load(db::user_id(user)?).await?;
        raw.map(|raw| self.open(user, raw)).transpose()
    }

    /// Writes `change` over `expected`, alone: the new version, or the conflict with what is
    /// stored.
    pub(crate) async fn write(
        &self,
        user: UserId,
        expected: Expected,
        change: Change<'_>,
    ) -> Result<Version, StoreError> {
        let id = db::user_id(user)?;
        let expected_version = match (expected, change) {
            (Expected::Version(v), _) => Ok(i64::try_from(v.get()).unwrap_or(i64::MAX)),
            (Expected::Absent, Change::Save(sealed)) => Err(sealed.version),
            (Expected::Absent, Change::LoginRequired) => Err(self.first_version().await?),
            (Expected::Absent, Change::Delete) => Err(0),
        };
        let now = db::now_seconds();
        let outcome: Result<Outcome, sqlx::Error> = match &self.gatherer.db().pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                // BEGIN IMMEDIATE takes the write lock first (waiting up to the busy
                // timeout), so the refused write's read of the current row is consistent.
                async {
                    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                    let written = write_query(id, now, change, expected_version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let outcome = match written {
                        Some(version) => Outcome::Written(version),
                        None => Outcome::Refused(
                            sqlx::query_as(q::LOAD)
                                .bind(id)
                                .fetch_optional(&mut *tx)
                                .await?,
                        ),
                    };
                    tx.commit().await?;
                    Ok(outcome)
                }
                .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                // One statement: the row lock makes it atomic; a refusal reads what is there.
                async {
                    let written = write_query(id, now, change, expected_version)
                        .fetch_optional(p)
                        .await?;
                    Ok(match written {
                        Some(version) => Outcome::Written(version),
                        None => Outcome::Refused(
                            sqlx::query_as(q::LOAD).bind(id).fetch_optional(p).await?,
                        ),
                    })
                }
                .await
            }
        };
        match outcome.map_err(|e| self.gatherer.db().fail("write a login", e))? {
            Outcome::Written(version) => Ok(Version::new(version as u64)),
            Outcome::Refused(current) => {
                // The current entry may itself be unreadable: the conflict then carries
                // its version only through the error it makes.
                let current = current.map(|raw| self.open(user, raw)).transpose()?;
                Err(StoreError::conflict_with(user, expected, current))
            }
        }
    }

    /// The version of a user's first write (a login, or a "login required" mark over nothing):
    /// the start of a new epoch, above every version written before, for any user.
    pub(crate) async fn first_version(&self) -> Result<i64, StoreError> {
        let db = self.gatherer.db();
        let epoch: Result<i64, sqlx::Error> = match &db.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                async {
                    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                    let epoch = sqlx::query_scalar(q::SQLITE_NEXT_EPOCH)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(epoch)
                }
                .await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => sqlx::query_scalar(q::NEXT_EPOCH).fetch_one(p).await,
        };
        let epoch = epoch.map_err(|e| db.fail("start a login's versions", e))?;
        epoch.checked_mul(q::EPOCH).ok_or_else(|| {
            StoreError::Other(format!(
                "the token database {} ran out of versions (epoch {epoch}): move its logins to a new database",
                db.shown()
            ))
        })
    }

    /// Seals `credentials` for the version `expected` leads to, and saves them: refreshed
    /// credentials go with the other saves in flight, in one statement or transaction; a save
    /// the batch did not write (a conflict) and every other save go alone, which reads and
    /// reports what is stored.
    ///
    /// `release` is the lease to end once the save is written or refused. The gathered
    /// statement ends it with a save it ran (one it refused is refused alone too: versions only
    /// grow); a save it did not run (another save of the user was picked, a deadlock) and a
    /// first save keep the lease until they have gone alone, even if the caller stops waiting.
    pub(crate) async fn save(
        &self,
        user: UserId,
        credentials: &Credentials,
        expected: Expected,
        release: Option<Release>,
    ) -> Result<Version, StoreError> {
        let (sealed, release) = match expected {
            Expected::Version(version) => {
                let expected = i64::try_from(version.get()).unwrap_or(i64::MAX);
                // The row's next version: what the save's statement gives it.
                let next = expected.checked_add(1).ok_or_else(|| {
                    StoreError::Other(format!(
                        "user {user}'s login has reached the last version: log the user in again"
                    ))
                })?;
                let save = Save {
                    user: db::user_id(user)?,
                    sealed: row::seal(self.keys(), user.get(), next, credentials),
                    expected,
                    release,
                };
                match self.gatherer.save(save).await? {
                    Ok(version) => return Ok(Version::new(version as u64)),
                    Err(unsaved) => (unsaved.sealed, unsaved.release),
                }
            }
            Expected::Absent => {
                let first = self.first_version().await?;
                (
                    row::seal(self.keys(), user.get(), first, credentials),
                    release,
                )
            }
        };
        let Some(release) = release else {
            return self.write(user, expected, Change::Save(&sealed)).await;
        };
        // In a task of its own, so that a caller that stops waiting can't end the lease while
        // its save still runs in the database.
        let rows = self.clone();
        let alone = tokio::spawn(async move {
            let written = rows.write(user, expected, Change::Save(&sealed)).await;
            drop(release);
            written
        });
        alone.await.unwrap_or_else(|e| {
            Err(StoreError::Other(format!(
                "the save of user {user}'s login stopped before it finished ({e}): retry"
            )))
        })
    }
}
