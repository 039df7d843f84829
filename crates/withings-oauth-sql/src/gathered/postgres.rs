//! The gathered calls on PostgreSQL: one statement per kind (loads, lease claims, saves over a
//! version with the leases they end, releases of leases dropped without a save) for the calls
//! gathered, the values in arrays (`unnest`, `= ANY`). Rows are locked in the order of their
//! users, so that two batches never wait for each other in a circle.

use std::collections::{HashMap, HashSet};

use super::batch::{Answers, Batcher, Call, Flush, ask, reply_each};
use super::{
    Claim, Claimed, Gatherer, Held, Loaded, Release, Renew, Renewed, Save, Saved, Taken, Unsaved,
    each, one_by_one,
};
use crate::queries as q;
use crate::row::{RawRow, UserRow};

/// [`LOAD`](q::LOAD) for the users in $1, each row followed by its user id.
const LOAD_MANY: &str = "SELECT version, login_required, access_token, \
    refresh_token, token_type, scopes, expires_at, user_id FROM withings_credentials \
    WHERE user_id = ANY($1)";

/// Takes the leases of many users, unless another owner holds one that has not expired: $1
/// users (each once), $2 owners, $3 times to live (ms), on the database's clock so that
/// instances whose clocks disagree still agree on when a lease ends; $4 the pattern of this
/// handle's owners, whose rows it takes back at once ([`Gatherer::handle`]). Rows are taken in
/// the order of their users. Returns the users whose lease was taken, each with the owner of
/// the row it replaced, if any.
const CLAIM_LEASES: &str = "WITH before AS (SELECT user_id, owner FROM withings_leases \
    WHERE user_id = ANY($1)) \
    INSERT INTO withings_leases AS l \
    (user_id, owner, until_ms) \
    SELECT v.user_id, v.owner, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + v.ttl \
    FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS v(user_id, owner, ttl) \
    ORDER BY v.user_id \
    ON CONFLICT (user_id) DO UPDATE SET owner = EXCLUDED.owner, until_ms = EXCLUDED.until_ms \
    WHERE l.until_ms <= CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    OR l.owner = EXCLUDED.owner OR l.owner LIKE $4 \
    RETURNING user_id, (SELECT b.owner FROM before AS b WHERE b.user_id = l.user_id)";

/// [`SAVE_VERSION`](q::SAVE_VERSION) for many users, and the end of leases, in one transaction: $1 users (each
/// once), $2 access tokens, $3 refresh tokens, $4 key ids, $5 token types, $6 scopes, $7
/// expiries, $8 the expected versions, $9 now; $10 and $11 the users and owners of the leases
/// to release (as [`RELEASE_LEASES`]: a lease taken over by another owner stays).
/// Returns the users written and their new versions; the others were not written. The store
/// sends the users in ascending order, which the rows are locked in as long as the plan
/// follows the arrays (a nested loop, as it picks for a batch's size).
const SAVE_MANY: &str = "WITH saved AS (UPDATE withings_credentials AS c SET \
    version = c.version + 1, login_required = FALSE, access_token = v.access_token, \
    refresh_token = v.refresh_token, key_id = v.key_id, token_type = v.token_type, \
    scopes = v.scopes, expires_at = v.expires_at, refreshed_at = $9, failure_count = 0, \
    updated_at = $9 \
    FROM unnest($1::BIGINT[], $2::BYTEA[], $3::BYTEA[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
    $7::BIGINT[], $8::BIGINT[]) \
    AS v(user_id, access_token, refresh_token, key_id, token_type, scopes, expires_at, expected) \
    WHERE c.user_id = v.user_id AND c.version = v.expected \
    RETURNING c.user_id, c.version), \
    doomed AS (SELECT l.user_id FROM withings_leases AS l \
    JOIN unnest($10::BIGINT[], $11::TEXT[]) AS r(user_id, owner) \
    ON l.user_id = r.user_id AND l.owner = r.owner \
    ORDER BY l.user_id FOR UPDATE OF l), \
    released AS (DELETE FROM withings_leases AS l USING doomed WHERE l.user_id = doomed.user_id) \
    SELECT user_id, version FROM saved";

/// [`RELEASE_LEASE`](q::RELEASE_LEASE) for many leases: $1 users, $2 owners. The rows are locked in the order
/// of their users first, as [`CLAIM_LEASES`] takes them, so that a release and a
/// claim running at once never wait for each other in a circle.
const RELEASE_LEASES: &str = "WITH doomed AS (SELECT l.user_id \
    FROM withings_leases AS l \
    JOIN unnest($1::BIGINT[], $2::TEXT[]) AS v(user_id, owner) \
    ON l.user_id = v.user_id AND l.owner = v.owner \
    ORDER BY l.user_id FOR UPDATE OF l) \
    DELETE FROM withings_leases AS l USING doomed WHERE l.user_id = doomed.user_id";

/// Renews the leases still held by their owners and not expired, by their times to live from
/// now (on the database's clock, as [`CLAIM_LEASES`] sets them): $1 users (each once), $2
/// owners, $3 times to live (ms). Rows are locked in the order of their users, as the claims
/// and releases lock them. Returns the users whose lease was renewed.
const RENEW_LEASES: &str = "WITH mine AS (SELECT l.user_id, v.ttl \
    FROM withings_leases AS l \
    JOIN unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS v(user_id, owner, ttl) \
    ON l.user_id = v.user_id AND l.owner = v.owner \
    WHERE l.until_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
    ORDER BY l.user_id FOR UPDATE OF l) \
    UPDATE withings_leases AS l \
    SET until_ms = CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + mine.ttl \
    FROM mine WHERE l.user_id = mine.user_id RETURNING l.user_id";

/// The queues of a store on PostgreSQL: one per kind of call.
#[derive(Default)]
pub(super) struct Queues {
    loads: Batcher<Call<i64, Loaded>>,
    claims: Batcher<Call<Claim, Claimed>>,
    saves: Batcher<Call<Save, Saved>>,
    releases: Batcher<Call<Held, ()>>,
}

/// Reads a user's row, with the other reads in flight.
pub(super) async fn load(g: &Gatherer, user: i64) -> Loaded {
    ask(g, |g| &g.0.postgres.loads, flush_loads, |c| c, user).await?
}

/// Takes a lease, with the other claims in flight.
pub(super) async fn claim(g: &Gatherer, claim: Claim) -> Claimed {
    ask(g, |g| &g.0.postgres.claims, flush_claims, |c| c, claim).await?
}

/// Saves over a version, with the other saves in flight.
pub(super) async fn save(g: &Gatherer, save: Save) -> Saved {
    ask(g, |g| &g.0.postgres.saves, flush_saves, |c| c, save).await?
}

/// Releases a lease, with the other releases in flight.
pub(super) async fn release(g: &Gatherer, lease: Held) {
    let _ = ask(g, |g| &g.0.postgres.releases, flush_releases, |c| c, lease).await;
}

fn flush_loads(g: Gatherer, calls: Vec<Call<i64, Loaded>>) -> Flush {
    Box::pin(reply_each(calls, move |users| load_many(g, users)))
}

fn flush_claims(g: Gatherer, calls: Vec<Call<Claim, Claimed>>) -> Flush {
    Box::pin(reply_each(calls, move |claims| claim_many(g, claims)))
}

fn flush_saves(g: Gatherer, calls: Vec<Call<Save, Saved>>) -> Flush {
    Box::pin(reply_each(calls, move |saves| save_many(g, saves)))
}

fn flush_releases(g: Gatherer, calls: Vec<Call<Held, ()>>) -> Flush {
    Box::pin(reply_each(calls, move |leases| release_many(g, leases)))
}

/// The store's PostgreSQL pool: the statements below run only on one.
fn pool(g: &Gatherer) -> Option<&sqlx::PgPool> {
    #[allow(unreachable_patterns)]
    match &g.db().pool {
        crate::db::Pool::Postgres(p) => Some(p),
        _ => None,
    }
}

/// What a PostgreSQL statement found on another backend: never, as the store only gathers
/// them on PostgreSQL.
fn not_postgres() -> sqlx::Error {
    sqlx::Error::Protocol("a PostgreSQL statement was sent to another database".into())
}

/// The rows of a gathered load by their users.
fn by_user(rows: Vec<UserRow>) -> HashMap<i64, RawRow> {
    rows.into_iter().map(|r| (r.user_id, r.row)).collect()
}

/// The calls picked (each user's first), in the order of their users: every statement of a
/// batch locks its rows in that order, so that two batches never wait for each other in a
/// circle.
fn in_user_order(first: &HashMap<i64, usize>) -> Vec<usize> {
    let mut picked: Vec<(i64, usize)> = first.iter().map(|(u, i)| (*u, *i)).collect();
    picked.sort_unstable();
    picked.into_iter().map(|(_, i)| i).collect()
}

/// Whether the database rolled the statement back to break a deadlock.
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// Whether the statement failed because its connection was lost (closed by the server, a
/// broken socket): it may be sent again on another one.
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
macro_rules! again_if_lost {
    ($g:expr, $attempt:expr) => {{
        let first: Result<_, sqlx::Error> = $attempt.await;
        match first {
            Err(e) if connection_lost(&e) => {
                tracing::debug!(error = %$g.db().failure("run a statement", &e), "a database connection was lost; the statement goes again on another");
                $g.db().suspicion.raise();
                $attempt.await
            }
            other => other,
        }
    }};
}

/// Reads the users' rows in one statement.
fn load_many(g: Gatherer, users: Vec<i64>) -> Answers<Loaded> {
    Box::pin(async move {
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = again_if_lost!(g, async {
            let p = pool(&g).ok_or_else(not_postgres)?;
            let rows = sqlx::query_as::<_, UserRow>(LOAD_MANY)
                .bind(&users)
                .fetch_all(p)
                .await?;
            Ok(by_user(rows))
        });
        match rows {
            Ok(rows) => users.iter().map(|u| Ok(rows.get(u).cloned())).collect(),
            Err(_) if users.len() > 1 => one_by_one(&g, users, load_many).await,
            Err(e) => each(&g, users.len(), "read a login", &e),
        }
    })
}

/// Claims the leases in one statement, then reads the rows asked for of the users whose lease
/// was taken, in a second statement (its own snapshot, so it sees every save committed before
/// the leases were taken): each a [`Taken`] if it was taken, `None` if another holder has it.
fn claim_many(g: Gatherer, claims: Vec<Claim>) -> Answers<Claimed> {
    Box::pin(async move {
        // One connection for the claim and the read after it: one round trip fewer to take
        // it and give it back.
        let mut connection = None;
        let taken: Result<HashMap<usize, bool>, sqlx::Error> = again_if_lost!(g, async {
            let p = pool(&g).ok_or_else(not_postgres)?;
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
            let own = g.handle().to_owned();
            let won: HashMap<i64, bool> = sqlx::query_as::<_, (i64, Option<String>)>(CLAIM_LEASES)
                .bind(&users)
                .bind(&owners)
                .bind(&ttls)
                .bind(g.own_owners())
                .fetch_all(&mut **connection)
                .await?
                .into_iter()
                .map(|(user, before)| (user, before.is_some_and(|owner| !owner.starts_with(&own))))
                .collect();
            Ok(picked
                .into_iter()
                .filter_map(|i| won.get(&claims[i].user).map(|&over| (i, over)))
                .collect::<HashMap<usize, bool>>())
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
            Err(_) if claims.len() > 1 => return one_by_one(&g, claims, claim_many).await,
            Err(e) => return each(&g, claims.len(), "take a refresh lease", &e),
            Ok(taken) => taken,
        };
        // Each lease taken is released if its caller is gone or its read fails.
        let mut answers: Vec<Claimed> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(taken.get(&i).map(|&took_over| Taken {
                    release: Release::new(&g, c.user, c.owner.clone()),
                    row: None,
                    took_over,
                }))
            })
            .collect();
        let readers: Vec<i64> = claims
            .iter()
            .enumerate()
            .filter(|(i, c)| c.load && taken.contains_key(i))
            .map(|(_, c)| c.user)
            .collect();
        if readers.is_empty() {
            return answers;
        }
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = again_if_lost!(g, async {
            // The claim's connection first; another if it was lost.
            let query = sqlx::query_as::<_, UserRow>(LOAD_MANY).bind(&readers);
            let rows = match connection.take() {
                Some(mut connection) => query.fetch_all(&mut *connection).await?,
                None => {
                    let p = pool(&g).ok_or_else(not_postgres)?;
                    query.fetch_all(p).await?
                }
            };
            Ok(by_user(rows))
        });
        for (answer, c) in answers.iter_mut().zip(&claims) {
            let (Ok(Some(taken)), true) = (&mut *answer, c.load) else {
                continue;
            };
            match &rows {
                Ok(rows) => taken.row = rows.get(&c.user).cloned(),
                Err(e) => *answer = Err(g.db().failure("read a login", e)),
            }
        }
        answers
    })
}

/// Writes the refreshed credentials in one statement, each over the version it expects.
pub(super) fn save_many(g: Gatherer, saves: Vec<Save>) -> Answers<Saved> {
    Box::pin(async move {
        let now = chrono::Utc::now().timestamp();
        // One save per user in the statement: a row joined twice would take either. A save
        // not picked is answered "not written" and goes alone.
        let mut first = HashMap::new();
        for (i, save) in saves.iter().enumerate() {
            first.entry(save.user).or_insert(i);
        }
        let picked = in_user_order(&first);
        let written: Result<HashMap<usize, i64>, sqlx::Error> = again_if_lost!(g, async {
            let p = pool(&g).ok_or_else(not_postgres)?;
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
            let rows: Vec<(i64, i64)> = sqlx::query_as(SAVE_MANY)
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
            for (user, version) in rows {
                if let Some(&i) = first.get(&user) {
                    written.insert(i, version);
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
            Err(_) if saves.len() > 1 => one_by_one(&g, saves, save_many).await,
            Err(e) => each(&g, saves.len(), "write a login", &e),
        }
    })
}

/// Releases the leases in one statement (a failure only makes them expire: it is logged, not
/// returned).
fn release_many(g: Gatherer, leases: Vec<Held>) -> Answers<()> {
    Box::pin(async move {
        let Some(p) = pool(&g) else {
            return vec![(); leases.len()];
        };
        let users: Vec<i64> = leases.iter().map(|(u, _)| *u).collect();
        let owners: Vec<&str> = leases.iter().map(|(_, o)| o.as_str()).collect();
        let result = sqlx::query(RELEASE_LEASES)
            .bind(&users)
            .bind(&owners)
            .execute(p)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %g.db().failure("release refresh leases", &e), "refresh leases were not released together; releasing them one by one");
            // Each on its own, so that one lease's trouble leaves the others released.
            for (user, owner) in &leases {
                let result = sqlx::query(q::RELEASE_LEASE)
                    .bind(user)
                    .bind(owner.as_str())
                    .execute(p)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %g.db().failure("release a refresh lease", &e), "a refresh lease was not released; it will expire");
                }
            }
        }
        vec![(); leases.len()]
    })
}

/// Renews leases in one statement: the heartbeat's, one at a time per handle, so not queued.
pub(super) async fn renew(g: &Gatherer, leases: Vec<Renew>) -> Renewed {
    // Each user once (a handle holds one lease per user; a second is answered "not renewed").
    let mut first = HashMap::new();
    for (i, lease) in leases.iter().enumerate() {
        first.entry(lease.user).or_insert(i);
    }
    let picked = in_user_order(&first);
    let renewed: Result<HashSet<i64>, sqlx::Error> = again_if_lost!(g, async {
        let p = pool(g).ok_or_else(not_postgres)?;
        let users: Vec<i64> = picked.iter().map(|&i| leases[i].user).collect();
        let owners: Vec<&str> = picked.iter().map(|&i| leases[i].owner.as_str()).collect();
        let ttls: Vec<i64> = picked.iter().map(|&i| leases[i].ttl_ms).collect();
        Ok(sqlx::query_scalar::<_, i64>(RENEW_LEASES)
            .bind(&users)
            .bind(&owners)
            .bind(&ttls)
            .fetch_all(p)
            .await?
            .into_iter()
            .collect())
    });
    let renewed = renewed.map_err(|e| g.db().fail("renew refresh leases", e))?;
    Ok(leases
        .iter()
        .enumerate()
        .map(|(i, lease)| first.get(&lease.user) == Some(&i) && renewed.contains(&lease.user))
        .collect())
}
