//! The store's calls that go through [`batch`](crate::batch): loads (PostgreSQL), lease claims,
//! compare-and-swap saves of refreshed credentials and lease releases, each kind as one
//! statement (PostgreSQL) or one transaction (SQLite) for the calls gathered.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use sqlx::Row;
use withings_oauth::StoreError;

use crate::batch::Batcher;
use crate::queries as q;
#[cfg(feature = "postgres")]
use crate::row::RawRow;
use crate::row::SealedCredentials;
#[cfg(feature = "postgres")]
use crate::store::raw_row;
use crate::store::{Pool, Release, SqlStore, execute_write};
#[cfg(feature = "sqlite")]
use crate::store::{sqlite_immediate, sqlite_immediate_tx};

type Answers<Out> = Pin<Box<dyn Future<Output = Vec<Out>> + Send>>;

/// A lease to claim.
pub(crate) struct Claim {
    pub(crate) user: i64,
    pub(crate) owner: String,
    pub(crate) ttl_ms: i64,
}

/// Refreshed credentials to write over the version they replace.
pub(crate) struct Save {
    pub(crate) user: i64,
    pub(crate) sealed: SealedCredentials,
    pub(crate) expected: i64,
}

/// A save's answer: the new version, or the credentials back when nothing was written (the
/// caller then writes them alone, which finds and reports the conflict).
pub(crate) type Saved = Result<Result<i64, SealedCredentials>, StoreError>;

/// The queues of a store, one per kind.
#[derive(Default)]
pub(crate) struct Batches {
    #[cfg(feature = "postgres")]
    pub(crate) loads: Batcher<i64, Result<Option<RawRow>, StoreError>>,
    pub(crate) claims: Batcher<Claim, Result<Option<Release>, StoreError>>,
    pub(crate) saves: Batcher<Save, Saved>,
    pub(crate) releases: Batcher<(i64, String), ()>,
}

/// The calls picked (each user's first), in the order of their users: every statement of a
/// batch locks its rows in that order, so that two batches never wait for each other in a
/// circle.
#[cfg(feature = "postgres")]
fn in_user_order(first: &HashMap<i64, usize>) -> Vec<usize> {
    let mut picked: Vec<(i64, usize)> = first.iter().map(|(u, i)| (*u, *i)).collect();
    picked.sort_unstable();
    picked.into_iter().map(|(_, i)| i).collect()
}

/// Whether the database rolled the statement back to break a deadlock.
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// The same error for each of `n` callers.
fn each<T>(
    store: &SqlStore,
    n: usize,
    action: &str,
    error: &sqlx::Error,
) -> Vec<Result<T, StoreError>> {
    (0..n).map(|_| Err(store.failure(action, error))).collect()
}

/// Reads the users' rows in one statement (PostgreSQL; the store reads a SQLite file's rows
/// each on its own, side by side, and never gathers them).
#[cfg(feature = "postgres")]
pub(crate) fn load(
    store: SqlStore,
    users: Vec<i64>,
) -> Answers<Result<Option<RawRow>, StoreError>> {
    Box::pin(async move {
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                async {
                    let rows = sqlx::query(q::POSTGRES_LOAD_MANY)
                        .bind(&users)
                        .fetch_all(p)
                        .await?;
                    rows.into_iter()
                        .map(|row| Ok((row.try_get::<i64, _>(7)?, raw_row!(row))))
                        .collect()
                }
                .await
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                async {
                    let mut found = HashMap::new();
                    for user in &users {
                        if let Some(row) = sqlx::query(q::LOAD).bind(user).fetch_optional(p).await?
                        {
                            found.insert(*user, raw_row!(row));
                        }
                    }
                    Ok(found)
                }
                .await
            }
        };
        match rows {
            Ok(rows) => users.iter().map(|u| Ok(rows.get(u).cloned())).collect(),
            Err(e) => each(&store, users.len(), "read a login", &e),
        }
    })
}

/// Claims the leases: each a [`Release`] if it was taken, `None` if another holder has it.
pub(crate) fn claim(
    store: SqlStore,
    claims: Vec<Claim>,
) -> Answers<Result<Option<Release>, StoreError>> {
    Box::pin(async move {
        let taken: Result<HashSet<usize>, sqlx::Error> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                // One claim per user in the statement (a user twice would be an error): a
                // second claim of the same user is answered "held", and its caller waits.
                let mut first = HashMap::new();
                for (i, claim) in claims.iter().enumerate() {
                    first.entry(claim.user).or_insert(i);
                }
                let picked = in_user_order(&first);
                let users: Vec<i64> = picked.iter().map(|&i| claims[i].user).collect();
                let owners: Vec<&str> = picked.iter().map(|&i| claims[i].owner.as_str()).collect();
                let ttls: Vec<i64> = picked.iter().map(|&i| claims[i].ttl_ms).collect();
                sqlx::query_scalar::<_, i64>(q::POSTGRES_CLAIM_LEASES)
                    .bind(&users)
                    .bind(&owners)
                    .bind(&ttls)
                    .fetch_all(p)
                    .await
                    .map(|won| {
                        let won: HashSet<i64> = won.into_iter().collect();
                        picked
                            .into_iter()
                            .filter(|&i| won.contains(&claims[i].user))
                            .collect()
                    })
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                sqlite_immediate_tx!(p, tx => {
                    let now = crate::store::now_millis();
                    let mut taken = HashSet::new();
                    for (i, claim) in claims.iter().enumerate() {
                        let rows = sqlx::query(q::SQLITE_CLAIM_LEASE)
                            .bind(claim.user)
                            .bind(claim.owner.as_str())
                            .bind(now)
                            .bind(claim.ttl_ms)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if rows == 1 {
                            taken.insert(i);
                        }
                    }
                    Ok(taken)
                })
            }
        };
        match taken {
            // Rolled back by the database to break a circle of waits: nothing was taken, and
            // each caller tries again as if the lease were held.
            Err(e) if is_deadlock(&e) => claims.iter().map(|_| Ok(None)).collect(),
            Ok(taken) => claims
                .into_iter()
                .enumerate()
                .map(|(i, claim)| {
                    Ok(taken
                        .contains(&i)
                        .then(|| Release::new(&store, claim.user, claim.owner)))
                })
                .collect(),
            Err(e) => each(&store, claims.len(), "take a refresh lease", &e),
        }
    })
}

/// Writes the refreshed credentials, each over the version it expects.
pub(crate) fn save(store: SqlStore, saves: Vec<Save>) -> Answers<Saved> {
    Box::pin(async move {
        let now = chrono::Utc::now().timestamp();
        let written: Result<HashMap<usize, i64>, sqlx::Error> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                // One save per user in the statement: a row joined twice would take either.
                let mut first = HashMap::new();
                for (i, save) in saves.iter().enumerate() {
                    first.entry(save.user).or_insert(i);
                }
                let picked = in_user_order(&first);
                let column = |f: fn(&Save) -> i64| -> Vec<i64> {
                    picked.iter().map(|&i| f(&saves[i])).collect()
                };
                let users = column(|s| s.user);
                let expiries = column(|s| s.sealed.expires_at);
                let expected = column(|s| s.expected);
                let sealed = |i: &usize| &saves[*i].sealed;
                let access: Vec<&[u8]> = picked
                    .iter()
                    .map(|i| sealed(i).access_token.as_slice())
                    .collect();
                let refresh: Vec<&[u8]> = picked
                    .iter()
                    .map(|i| sealed(i).refresh_token.as_slice())
                    .collect();
                let key_ids: Vec<Option<&str>> =
                    picked.iter().map(|i| sealed(i).key_id.as_deref()).collect();
                let types: Vec<&str> = picked
                    .iter()
                    .map(|i| sealed(i).token_type.as_str())
                    .collect();
                let scopes: Vec<&str> = picked.iter().map(|i| sealed(i).scopes.as_str()).collect();
                async {
                    let rows = sqlx::query(q::POSTGRES_SAVE_MANY)
                        .bind(&users)
                        .bind(&access)
                        .bind(&refresh)
                        .bind(&key_ids)
                        .bind(&types)
                        .bind(&scopes)
                        .bind(&expiries)
                        .bind(&expected)
                        .bind(now)
                        .fetch_all(p)
                        .await?;
                    let mut written = HashMap::new();
                    for row in rows {
                        let user: i64 = row.try_get(0)?;
                        written.insert(first[&user], row.try_get::<i64, _>(1)?);
                    }
                    Ok(written)
                }
                .await
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                sqlite_immediate_tx!(p, tx => {
                    let mut written = HashMap::new();
                    for (i, save) in saves.iter().enumerate() {
                        let version = crate::store::bind_sealed(
                            sqlx::query(q::SAVE_VERSION),
                            save.user,
                            &save.sealed,
                            now,
                        )
                        .bind(save.expected)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(row) = version {
                            written.insert(i, row.try_get::<i64, _>(0)?);
                        }
                    }
                    Ok(written)
                })
            }
        };
        match written {
            // Rolled back to break a circle of waits: nothing was written, and each save
            // goes alone.
            Err(e) if is_deadlock(&e) => saves.into_iter().map(|s| Ok(Err(s.sealed))).collect(),
            Ok(written) => saves
                .into_iter()
                .enumerate()
                .map(|(i, save)| Ok(written.get(&i).copied().ok_or(save.sealed)))
                .collect(),
            Err(e) => each(&store, saves.len(), "write a login", &e),
        }
    })
}

/// Releases the leases (a failure only makes them expire: it is logged, not returned).
pub(crate) fn release(store: SqlStore, leases: Vec<(i64, String)>) -> Answers<()> {
    Box::pin(async move {
        let result: Result<(), sqlx::Error> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let users: Vec<i64> = leases.iter().map(|(u, _)| *u).collect();
                let owners: Vec<&str> = leases.iter().map(|(_, o)| o.as_str()).collect();
                sqlx::query(q::POSTGRES_RELEASE_LEASES)
                    .bind(&users)
                    .bind(&owners)
                    .execute(p)
                    .await
                    .map(drop)
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                sqlite_immediate_tx!(p, tx => {
                    for (user, owner) in &leases {
                        sqlx::query(q::RELEASE_LEASE)
                            .bind(user)
                            .bind(owner.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(())
                })
            }
        };
        if let Err(e) = result {
            // Each on its own, so that one lease's trouble leaves the others released.
            for (user, owner) in &leases {
                let result = execute_write!(
                    store.pool(),
                    sqlx::query(q::RELEASE_LEASE)
                        .bind(user)
                        .bind(owner.as_str())
                );
                if let Err(e) = result {
                    tracing::debug!(error = %store.failure("release a refresh lease", &e), "a refresh lease was not released; it will expire");
                }
            }
            tracing::debug!(error = %store.failure("release refresh leases", &e), "refresh leases were released one by one");
        }
        vec![(); leases.len()]
    })
}
