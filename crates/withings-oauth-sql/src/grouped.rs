//! The store's calls that go through [`batch`](crate::batch). On PostgreSQL, loads, lease
//! claims, saves over a version (a refresh's, or any other `Expected::Version` save) and lease
//! releases, each kind as one statement for the calls gathered. On SQLite, whose writes all go one at a time through
//! the file's one write lock, every claim, save and release gathered goes in one transaction,
//! one commit, and the loads gathered in one statement.

use std::collections::HashMap;
#[cfg(feature = "postgres")]
use std::collections::HashSet;
#[cfg(feature = "sqlite")]
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;

use sqlx::Row;
use withings_oauth::StoreError;

use crate::batch::Batcher;
use crate::queries as q;
use crate::row::RawRow;
use crate::row::SealedCredentials;
use crate::store::raw_row;
#[cfg(feature = "sqlite")]
use crate::store::sqlite_immediate_tx;
use crate::store::{Pool, Release, SqlStore};

type Answers<Out> = Pin<Box<dyn Future<Output = Vec<Out>> + Send>>;

/// A lease to claim.
pub(crate) struct Claim {
    pub(crate) user: i64,
    pub(crate) owner: String,
    pub(crate) ttl_ms: i64,
    /// Whether to read the user's row once the lease is taken.
    pub(crate) load: bool,
}

/// A lease taken: its release, and the user's row read after it was taken, if asked for.
pub(crate) struct Taken {
    pub(crate) release: Release,
    pub(crate) row: Option<RawRow>,
}

/// A claim's answer: `None` if another holder has the lease.
pub(crate) type Claimed = Result<Option<Taken>, StoreError>;

/// Refreshed credentials to write over the version they replace, and the lease to end with
/// them, if any.
pub(crate) struct Save {
    pub(crate) user: i64,
    pub(crate) sealed: SealedCredentials,
    pub(crate) expected: i64,
    pub(crate) release: Option<Release>,
}

/// A save the batch did not write: the credentials, and the lease it did not end (`None` if
/// the batch ran the save, refused it and ended the lease, or there was none).
pub(crate) struct Unsaved {
    pub(crate) sealed: SealedCredentials,
    pub(crate) release: Option<Release>,
}

/// A save's answer: the new version, or the save back when nothing was written (the caller
/// then writes it alone, which finds and reports the conflict, and ends a lease it got back
/// after).
pub(crate) type Saved = Result<Result<i64, Unsaved>, StoreError>;

/// A lease to release: the user and the owner that holds it.
pub(crate) type Held = (i64, String);

/// A write to a SQLite file, gathered with the others in one transaction.
#[cfg(feature = "sqlite")]
pub(crate) enum Write {
    Claim(Claim),
    Save(Save),
    Release(Held),
}

/// The answer to a [`Write`], of the same kind.
#[cfg(feature = "sqlite")]
pub(crate) enum Written {
    Claim(Claimed),
    Save(Saved),
    Release,
}

/// The queues of a store: one per kind on PostgreSQL, one for every write on SQLite.
#[derive(Default)]
pub(crate) struct Batches {
    pub(crate) loads: Batcher<i64, Result<Option<RawRow>, StoreError>>,
    #[cfg(feature = "postgres")]
    pub(crate) claims: Batcher<Claim, Claimed>,
    #[cfg(feature = "postgres")]
    pub(crate) saves: Batcher<Save, Saved>,
    #[cfg(feature = "postgres")]
    pub(crate) releases: Batcher<Held, ()>,
    #[cfg(feature = "sqlite")]
    pub(crate) writes: Batcher<Write, Written>,
}

/// The store's PostgreSQL pool: the gathered statements below run only on one.
#[cfg(feature = "postgres")]
fn postgres(store: &SqlStore) -> Option<&sqlx::PgPool> {
    #[allow(unreachable_patterns)]
    match store.pool() {
        Pool::Postgres(p) => Some(p),
        _ => None,
    }
}

/// What a gathered PostgreSQL statement found on another backend: never, as the store only
/// gathers them on PostgreSQL.
#[cfg(feature = "postgres")]
fn not_postgres() -> sqlx::Error {
    sqlx::Error::Protocol("a PostgreSQL statement was sent to another database".into())
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
#[cfg(feature = "postgres")]
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// Whether the statement failed because its connection was lost (closed by the server, a
/// broken socket): it may be sent again on another one.
#[cfg(feature = "postgres")]
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now.
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// Runs `$attempt` (an `async` block), and once more if its connection was lost, after
/// telling the pool to check every connection it hands out for a while (those closed with it
/// are then replaced). Every statement sent this way may run twice: reads, saves over a version
/// (a save that was written before its connection was lost is refused the second time, and the
/// caller finds its own login stored), claims (a claim made again by its own owner is taken
/// again), releases. A macro, as an async closure's future can't be proven `Send` here.
#[cfg(feature = "postgres")]
macro_rules! again_if_lost {
    ($store:expr, $attempt:expr) => {{
        let first: Result<_, sqlx::Error> = $attempt.await;
        match first {
            Err(e) if connection_lost(&e) => {
                tracing::debug!(error = %$store.failure("run a statement", &e), "a database connection was lost; the statement goes again on another");
                $store.suspicion().raise();
                $attempt.await
            }
            other => other,
        }
    }};
}

/// Runs each request of a batch that failed as a whole on its own (nothing of it was written),
/// so that one request's failure (a value the database refuses) stays its own.
async fn one_by_one<Req, Out>(
    store: &SqlStore,
    requests: Vec<Req>,
    run: crate::batch::Run<Req, Out>,
) -> Vec<Out> {
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.extend(run(store.clone(), vec![request]).await);
    }
    answers
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

/// The rows of a `*_LOAD_MANY` statement by their users (the last column).
macro_rules! by_user {
    ($rows:expr) => {
        $rows
            .into_iter()
            .map(|row| Ok((row.try_get::<i64, _>(7)?, raw_row!(row))))
            .collect()
    };
}

/// Reads the users' rows in one statement.
pub(crate) fn load(
    store: SqlStore,
    users: Vec<i64>,
) -> Answers<Result<Option<RawRow>, StoreError>> {
    Box::pin(async move {
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                again_if_lost!(store, async {
                    let rows = sqlx::query(q::POSTGRES_LOAD_MANY)
                        .bind(&users)
                        .fetch_all(p)
                        .await?;
                    by_user!(rows)
                })
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => {
                async {
                    // The ids as a JSON array: one prepared statement whatever their number.
                    let mut ids = String::with_capacity(users.len() * 12 + 2);
                    ids.push('[');
                    for (i, user) in users.iter().enumerate() {
                        if i > 0 {
                            ids.push(',');
                        }
                        let _ = write!(ids, "{user}");
                    }
                    ids.push(']');
                    let rows = sqlx::query(q::SQLITE_LOAD_MANY)
                        .bind(ids)
                        .fetch_all(p)
                        .await?;
                    by_user!(rows)
                }
                .await
            }
        };
        match rows {
            Ok(rows) => users.iter().map(|u| Ok(rows.get(u).cloned())).collect(),
            Err(_) if users.len() > 1 => one_by_one(&store, users, load).await,
            Err(e) => each(&store, users.len(), "read a login", &e),
        }
    })
}

/// Claims the leases in one statement, then reads the rows asked for of the users whose lease
/// was taken, in a second statement (its own snapshot, so it sees every save committed before
/// the leases were taken): each a [`Taken`] if it was taken, `None` if another holder has it.
#[cfg(feature = "postgres")]
pub(crate) fn claim(store: SqlStore, claims: Vec<Claim>) -> Answers<Claimed> {
    Box::pin(async move {
        // One connection for the claim and the read after it: one round trip fewer to take
        // it and give it back.
        let mut connection = None;
        let taken: Result<HashSet<usize>, sqlx::Error> = again_if_lost!(store, async {
            let p = postgres(&store).ok_or_else(not_postgres)?;
            // A connection lost by a first attempt goes back before another is asked for.
            drop(connection.take());
            let connection = connection.insert(p.acquire().await?);
            // One claim per user in the statement (a user twice would be an error): a second
            // claim of the same user is answered "held", and its caller waits.
            let mut first = HashMap::new();
            for (i, claim) in claims.iter().enumerate() {
                first.entry(claim.user).or_insert(i);
            }
            let picked = in_user_order(&first);
            let users: Vec<i64> = picked.iter().map(|&i| claims[i].user).collect();
            let owners: Vec<&str> = picked.iter().map(|&i| claims[i].owner.as_str()).collect();
            let ttls: Vec<i64> = picked.iter().map(|&i| claims[i].ttl_ms).collect();
            let won: HashSet<i64> = sqlx::query_scalar::<_, i64>(q::POSTGRES_CLAIM_LEASES)
                .bind(&users)
                .bind(&owners)
                .bind(&ttls)
                .fetch_all(&mut **connection)
                .await?
                .into_iter()
                .collect();
            Ok(picked
                .into_iter()
                .filter(|&i| won.contains(&claims[i].user))
                .collect())
        });
        if taken.is_err() {
            // Given back before the calls go again one by one (a pool of one would wait for
            // it forever).
            connection = None;
        }
        let taken = match taken {
            // Rolled back by the database to break a circle of waits: nothing was taken, and
            // each caller tries again as if the lease were held.
            Err(e) if is_deadlock(&e) => return claims.iter().map(|_| Ok(None)).collect(),
            Err(_) if claims.len() > 1 => return one_by_one(&store, claims, claim).await,
            Err(e) => return each(&store, claims.len(), "take a refresh lease", &e),
            Ok(taken) => taken,
        };
        // Each lease taken is released if its caller is gone or its read fails.
        let mut answers: Vec<Claimed> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(taken.contains(&i).then(|| Taken {
                    release: Release::new(&store, c.user, c.owner.clone()),
                    row: None,
                }))
            })
            .collect();
        let readers: Vec<i64> = claims
            .iter()
            .enumerate()
            .filter(|(i, c)| c.load && taken.contains(i))
            .map(|(_, c)| c.user)
            .collect();
        if readers.is_empty() {
            return answers;
        }
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = again_if_lost!(store, async {
            // The claim's connection first; another if it was lost.
            let query = sqlx::query(q::POSTGRES_LOAD_MANY).bind(&readers);
            let rows = match connection.take() {
                Some(mut connection) => query.fetch_all(&mut *connection).await?,
                None => {
                    let p = postgres(&store).ok_or_else(not_postgres)?;
                    query.fetch_all(p).await?
                }
            };
            by_user!(rows)
        });
        for (answer, c) in answers.iter_mut().zip(&claims) {
            let (Ok(Some(taken)), true) = (&mut *answer, c.load) else {
                continue;
            };
            match &rows {
                Ok(rows) => taken.row = rows.get(&c.user).cloned(),
                Err(e) => *answer = Err(store.failure("read a login", e)),
            }
        }
        answers
    })
}

/// Writes the refreshed credentials in one statement, each over the version it expects.
#[cfg(feature = "postgres")]
pub(crate) fn save(store: SqlStore, saves: Vec<Save>) -> Answers<Saved> {
    Box::pin(async move {
        let now = chrono::Utc::now().timestamp();
        // One save per user in the statement: a row joined twice would take either. A save
        // not picked is answered "not written" and goes alone.
        let mut first = HashMap::new();
        for (i, save) in saves.iter().enumerate() {
            first.entry(save.user).or_insert(i);
        }
        let picked = in_user_order(&first);
        let written: Result<HashMap<usize, i64>, sqlx::Error> = again_if_lost!(store, async {
            let p = postgres(&store).ok_or_else(not_postgres)?;
            let sealed = |i: &usize| &saves[*i].sealed;
            let users: Vec<i64> = picked.iter().map(|&i| saves[i].user).collect();
            let expected: Vec<i64> = picked.iter().map(|&i| saves[i].expected).collect();
            let expiries: Vec<i64> = picked.iter().map(|i| sealed(i).expires_at).collect();
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
            // The leases of the saves picked, each ended with its save's outcome: one refused
            // here is refused alone too (versions only grow), so its caller's refresh is over.
            // A save not picked keeps its lease until it has gone alone.
            let (lease_users, owners): (Vec<i64>, Vec<&str>) = picked
                .iter()
                .filter_map(|&i| saves[i].release.as_ref())
                .map(|r| (r.user, r.owner.as_str()))
                .unzip();
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
                .bind(&lease_users)
                .bind(&owners)
                .fetch_all(p)
                .await?;
            let mut written = HashMap::new();
            for row in rows {
                let user: i64 = row.try_get(0)?;
                if let Some(&i) = first.get(&user) {
                    written.insert(i, row.try_get::<i64, _>(1)?);
                }
            }
            Ok(written)
        });
        match written {
            // Rolled back to break a circle of waits: nothing was written or released, and
            // each save goes alone, keeping its lease until it is done.
            Err(e) if is_deadlock(&e) => saves
                .into_iter()
                .map(|s| {
                    Ok(Err(Unsaved {
                        sealed: s.sealed,
                        release: s.release,
                    }))
                })
                .collect(),
            Ok(written) => saves
                .into_iter()
                .enumerate()
                .map(|(i, save)| {
                    let mut release = save.release;
                    if first.get(&save.user) == Some(&i)
                        && let Some(release) = release.take()
                    {
                        release.ended(); // by the statement
                    }
                    Ok(written.get(&i).copied().ok_or(Unsaved {
                        sealed: save.sealed,
                        release,
                    }))
                })
                .collect(),
            Err(_) if saves.len() > 1 => one_by_one(&store, saves, save).await,
            Err(e) => each(&store, saves.len(), "write a login", &e),
        }
    })
}

/// Releases the leases in one statement (a failure only makes them expire: it is logged, not
/// returned).
#[cfg(feature = "postgres")]
pub(crate) fn release(store: SqlStore, leases: Vec<Held>) -> Answers<()> {
    Box::pin(async move {
        let Some(p) = postgres(&store) else {
            return vec![(); leases.len()];
        };
        let users: Vec<i64> = leases.iter().map(|(u, _)| *u).collect();
        let owners: Vec<&str> = leases.iter().map(|(_, o)| o.as_str()).collect();
        let result = sqlx::query(q::POSTGRES_RELEASE_LEASES)
            .bind(&users)
            .bind(&owners)
            .execute(p)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %store.failure("release refresh leases", &e), "refresh leases were not released together; releasing them one by one");
            // Each on its own, so that one lease's trouble leaves the others released.
            for (user, owner) in &leases {
                let result = sqlx::query(q::RELEASE_LEASE)
                    .bind(user)
                    .bind(owner.as_str())
                    .execute(p)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %store.failure("release a refresh lease", &e), "a refresh lease was not released; it will expire");
                }
            }
        }
        vec![(); leases.len()]
    })
}

/// What one write of a SQLite batch did.
#[cfg(feature = "sqlite")]
enum Step {
    /// Whether the lease was taken, and the row read after, if asked for.
    Claimed(bool, Option<RawRow>),
    Saved(Option<i64>),
    Released,
}

/// Runs the gathered writes to a SQLite file in one `BEGIN IMMEDIATE` transaction, in the
/// order they came: one commit for them all.
#[cfg(feature = "sqlite")]
pub(crate) fn write(store: SqlStore, writes: Vec<Write>) -> Answers<Written> {
    Box::pin(async move {
        let steps: Result<Vec<Step>, sqlx::Error> = match store.pool() {
            Pool::Sqlite(p) => {
                sqlite_immediate_tx!(p, tx => {
                    let (now, now_ms) = (chrono::Utc::now().timestamp(), crate::store::now_millis());
                    let mut steps = Vec::with_capacity(writes.len());
                    for write in &writes {
                        steps.push(match write {
                            Write::Claim(claim) => {
                                let rows = sqlx::query(q::SQLITE_CLAIM_LEASE)
                                    .bind(claim.user)
                                    .bind(claim.owner.as_str())
                                    .bind(now_ms)
                                    .bind(claim.ttl_ms)
                                    .execute(&mut *tx)
                                    .await?
                                    .rows_affected();
                                let row = match (rows == 1, claim.load) {
                                    (true, true) => sqlx::query(q::LOAD)
                                        .bind(claim.user)
                                        .fetch_optional(&mut *tx)
                                        .await?
                                        .map(|row| -> Result<RawRow, sqlx::Error> { Ok(raw_row!(row)) })
                                        .transpose()?,
                                    _ => None,
                                };
                                Step::Claimed(rows == 1, row)
                            }
                            Write::Save(save) => {
                                let row = crate::store::bind_sealed(
                                    sqlx::query(q::SAVE_VERSION),
                                    save.user,
                                    &save.sealed,
                                    now,
                                )
                                .bind(save.expected)
                                .fetch_optional(&mut *tx)
                                .await?;
                                let version = row.map(|row| row.try_get::<i64, _>(0)).transpose()?;
                                // A save refused still ends its lease: the refresh is over.
                                if let Some(release) = &save.release {
                                    sqlx::query(q::RELEASE_LEASE)
                                        .bind(release.user)
                                        .bind(release.owner.as_str())
                                        .execute(&mut *tx)
                                        .await?;
                                }
                                Step::Saved(version)
                            }
                            Write::Release((user, owner)) => {
                                sqlx::query(q::RELEASE_LEASE)
                                    .bind(user)
                                    .bind(owner.as_str())
                                    .execute(&mut *tx)
                                    .await?;
                                Step::Released
                            }
                        });
                    }
                    Ok(steps)
                })
            }
            #[allow(unreachable_patterns)]
            _ => Err(sqlx::Error::Protocol(
                "a SQLite transaction was sent to another database".into(),
            )),
        };
        match steps {
            Ok(steps) => writes
                .into_iter()
                .zip(steps)
                .map(|(write, step)| match (write, step) {
                    (Write::Claim(claim), Step::Claimed(taken, row)) => {
                        Written::Claim(Ok(taken.then(|| Taken {
                            release: Release::new(&store, claim.user, claim.owner),
                            row,
                        })))
                    }
                    (Write::Save(save), Step::Saved(version)) => {
                        if let Some(release) = save.release {
                            release.ended(); // in the transaction
                        }
                        Written::Save(Ok(version.ok_or(Unsaved {
                            sealed: save.sealed,
                            release: None,
                        })))
                    }
                    (Write::Save(save), _) => Written::Save(Ok(Err(Unsaved {
                        sealed: save.sealed,
                        release: save.release,
                    }))),
                    (Write::Claim(_), _) => Written::Claim(Ok(None)),
                    (Write::Release(_), _) => Written::Release,
                })
                .collect(),
            Err(_) if writes.len() > 1 => one_by_one(&store, writes, write).await,
            Err(e) => writes
                .into_iter()
                .map(|write| match write {
                    Write::Claim(_) => {
                        Written::Claim(Err(store.failure("take a refresh lease", &e)))
                    }
                    Write::Save(_) => Written::Save(Err(store.failure("write a login", &e))),
                    Write::Release(_) => {
                        tracing::debug!(error = %store.failure("release a refresh lease", &e), "a refresh lease was not released; it will expire");
                        Written::Release
                    }
                })
                .collect(),
        }
    })
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use std::time::Duration;

    use withings_oauth::{Expected, Lease, TokenStore, UserId, testing};

    use super::{Save, Saved, Unsaved};
    use crate::store::Release;
    use crate::{SqlOptions, SqlStore};

    /// The test database, required loudly (as the crate's integration tests do).
    fn database_url() -> String {
        match std::env::var("WITHINGS_TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!(
                "WITHINGS_TEST_DATABASE_URL is not set: this test needs PostgreSQL. Run `source .ci/postgres.sh` from the repository"
            ),
        }
    }

    fn kept_its_lease(answer: &Saved) -> bool {
        matches!(
            answer,
            Ok(Err(Unsaved {
                release: Some(_),
                ..
            }))
        )
    }

    /// Two saves of one user in one batch: the statement writes the first (here a stale one,
    /// refused), and the second goes alone. Its lease must outlive that lone save, or another
    /// process could take the lease and read the entry before the save is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_save_the_statement_did_not_pick_keeps_its_lease() {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let schema: String = suffix.iter().fold("withings_unpicked_".into(), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        });
        let options = SqlOptions::default().postgres_schema(&schema);
        let store = SqlStore::connect(&database_url(), options).await.unwrap();
        let user = UserId::new(77);
        let expires = chrono::Utc::now() + chrono::TimeDelta::hours(3);
        let login = testing::credentials(user, "a0", "r0", expires);
        let v1 = store.save(user, &login, Expected::Absent).await.unwrap();

        let lease = store.lease(user, Duration::from_secs(60)).await.unwrap();
        let Ok(((local, release), _)) = lease.into_guard::<(Lease, Release)>() else {
            panic!("not the store's own lease");
        };
        let sealed = |refresh: &str| {
            let credentials = testing::credentials(user, "a", refresh, expires);
            crate::row::seal(None, user.get(), &credentials)
        };
        let saves = vec![
            Save {
                user: 77,
                sealed: sealed("stale"),
                expected: 9,
                release: None,
            },
            Save {
                user: 77,
                sealed: sealed("r1"),
                expected: v1.get() as i64,
                release: Some(release),
            },
        ];
        let answers = super::save(store.clone(), saves).await;
        assert!(
            matches!(answers[0], Ok(Err(_))),
            "the stale save was written"
        );
        assert!(
            kept_its_lease(&answers[1]),
            "the save not picked lost its lease before going alone"
        );
        let left = store.lease_left(77).await.unwrap();
        assert!(left.is_some(), "the lease row was deleted");
        drop(answers);
        drop(local);

        store.close().await;
        let admin = sqlx::PgPool::connect(&database_url()).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    }
}
