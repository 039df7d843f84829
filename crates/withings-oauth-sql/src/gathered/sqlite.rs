//! The gathered calls on SQLite, whose writes go one at a time through the file's write lock
//! anyway: every lease claim (and its read), save, release and heartbeat's renewals in flight
//! in one `BEGIN IMMEDIATE` transaction, so one commit; the loads in one statement (the ids in a JSON array,
//! `json_each`).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::batch::{Answers, Batcher, Call, Flush, ask, reply_each};
use super::{
    Claim, Claimed, Gatherer, Held, Loaded, Release, Renew, Renewed, Save, Saved, Taken, Unsaved,
    each, one_by_one,
};
use crate::db::Pool;
use crate::queries as q;
use crate::row::{RawRow, UserRow, bind_sealed};

/// [`LOAD`](q::LOAD) for the users in $1 (a JSON array of user ids), each row followed by its
/// user id.
const LOAD_MANY: &str = "SELECT version, login_required, access_token, refresh_token, \
    token_type, scopes, expires_at, user_id FROM withings_credentials \
    WHERE user_id IN (SELECT value FROM json_each($1))";

/// $1 user: who holds the user's lease row, if there is one.
const LEASE_OWNER: &str = "SELECT owner FROM withings_leases WHERE user_id = $1";

/// $1 user, $2 owner, $3 now (Unix ms), $4 time to live (ms), $5 the pattern of this handle's
/// owners: inserts the lease, or takes it over if it expired (or is already this owner's, or
/// a lease this handle failed to release: [`Gatherer::handle`]).
const CLAIM_LEASE: &str = "INSERT INTO withings_leases AS l \
    (user_id, owner, until_ms) VALUES ($1, $2, $3 + $4) \
    ON CONFLICT (user_id) DO UPDATE SET owner = $2, until_ms = $3 + $4 \
    WHERE l.until_ms <= $3 OR l.owner = $2 OR l.owner LIKE $5";

/// $1 user, $2 owner, $3 now (Unix ms), $4 time to live (ms): renews the lease if this owner
/// still holds it and it has not expired.
const RENEW_LEASE: &str = "UPDATE withings_leases SET until_ms = $3 + $4 \
    WHERE user_id = $1 AND owner = $2 AND until_ms > $3";

/// A write gathered with the others in one transaction, each with its own typed reply.
pub(super) enum Write {
    Claim(Call<Claim, Claimed>),
    Save(Call<Save, Saved>),
    Release(Call<Held, ()>),
    Renew(Call<Vec<Renew>, Renewed>),
}

/// The queues of a store on SQLite: the loads, and every write.
#[derive(Default)]
pub(super) struct Queues {
    loads: Batcher<Call<i64, Loaded>>,
    writes: Batcher<Write>,
}

/// Reads a user's row, with the other reads in flight.
pub(super) async fn load(g: &Gatherer, user: i64) -> Loaded {
    ask(g, |g| &g.0.sqlite.loads, flush_loads, |c| c, user).await?
}

/// Takes a lease, in one transaction with the other writes in flight.
pub(super) async fn claim(g: &Gatherer, claim: Claim) -> Claimed {
    ask(g, |g| &g.0.sqlite.writes, write, Write::Claim, claim).await?
}

/// Saves over a version, in one transaction with the other writes in flight.
pub(super) async fn save(g: &Gatherer, save: Save) -> Saved {
    ask(g, |g| &g.0.sqlite.writes, write, Write::Save, save).await?
}

/// Releases a lease, in one transaction with the other writes in flight.
pub(super) async fn release(g: &Gatherer, lease: Held) {
    let _ = ask(g, |g| &g.0.sqlite.writes, write, Write::Release, lease).await;
}

/// Renews the heartbeat's leases, in one transaction with the other writes in flight.
pub(super) async fn renew(g: &Gatherer, leases: Vec<Renew>) -> Renewed {
    ask(g, |g| &g.0.sqlite.writes, write, Write::Renew, leases).await?
}

fn flush_loads(g: Gatherer, calls: Vec<Call<i64, Loaded>>) -> Flush {
    Box::pin(reply_each(calls, move |users| load_many(g, users)))
}

/// The store's SQLite pool: the statements below run only on one.
fn pool(g: &Gatherer) -> Result<&sqlx::SqlitePool, sqlx::Error> {
    #[allow(unreachable_patterns)]
    match &g.db().pool {
        Pool::Sqlite(p) => Ok(p),
        _ => Err(sqlx::Error::Protocol(
            "a SQLite statement was sent to another database".into(),
        )),
    }
}

/// Reads the users' rows in one statement.
fn load_many(g: Gatherer, users: Vec<i64>) -> Answers<Loaded> {
    Box::pin(async move {
        let rows: Result<HashMap<i64, RawRow>, sqlx::Error> = async {
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
            let rows = sqlx::query_as::<_, UserRow>(LOAD_MANY)
                .bind(ids)
                .fetch_all(pool(&g)?)
                .await?;
            Ok(rows.into_iter().map(|r| (r.user_id, r.row)).collect())
        }
        .await;
        match rows {
            Ok(rows) => users.iter().map(|u| Ok(rows.get(u).cloned())).collect(),
            Err(_) if users.len() > 1 => one_by_one(&g, users, load_many).await,
            Err(e) => each(&g, users.len(), "read a login", &e),
        }
    })
}

/// A write the transaction ran, with what it did, until the commit makes it an answer.
enum Done {
    /// Whether the lease was taken (and then whether from another handle's row), and the row
    /// read after, if asked for.
    Claim(Call<Claim, Claimed>, Option<bool>, Option<RawRow>),
    /// The new version, if the save was written.
    Save(Call<Save, Saved>, Option<i64>),
    Release(Call<Held, ()>),
    /// Which leases were renewed.
    Renew(Call<Vec<Renew>, Renewed>, Vec<bool>),
}

impl Done {
    /// The write again, its outcome dropped: the transaction did not commit.
    fn undo(self) -> Write {
        match self {
            Done::Claim(call, ..) => Write::Claim(call),
            Done::Save(call, _) => Write::Save(call),
            Done::Release(call) => Write::Release(call),
            Done::Renew(call, _) => Write::Renew(call),
        }
    }

    /// Answers the write, once its transaction committed.
    fn answer(self, g: &Gatherer) {
        match self {
            Done::Claim(call, taken, row) => {
                let claim = &call.request;
                let taken = taken.map(|took_over| Taken {
                    release: Release::new(g, claim.user, claim.owner.clone()),
                    row,
                    took_over,
                });
                // A caller that stopped waiting drops the lease here: it releases itself.
                let _ = call.reply.send(Ok(taken));
            }
            Done::Save(
                Call {
                    request: save,
                    reply,
                },
                version,
            ) => {
                if let Some(release) = save.release {
                    release.ended(); // in the transaction
                }
                let saved = version.ok_or(Unsaved {
                    sealed: save.sealed,
                    release: None,
                });
                let _ = reply.send(Ok(saved));
            }
            Done::Release(call) => {
                let _ = call.reply.send(());
            }
            Done::Renew(call, renewed) => {
                let _ = call.reply.send(Ok(renewed));
            }
        }
    }
}

/// Runs the gathered writes in one `BEGIN IMMEDIATE` transaction, in the order they came: one
/// commit for them all. Each write is answered through its own reply; a batch that failed is
/// run again one write at a time.
fn write(g: Gatherer, writes: Vec<Write>) -> Flush {
    Box::pin(async move {
        match run(&g, writes).await {
            Ok(done) => done.into_iter().for_each(|done| done.answer(&g)),
            Err((_, writes)) if writes.len() > 1 => {
                for write in writes {
                    self::write(g.clone(), vec![write]).await;
                }
            }
            Err((e, writes)) => writes.into_iter().for_each(|write| fail(&g, write, &e)),
        }
    })
}

/// The transaction: every write in order, one commit; on failure, every write back.
async fn run(g: &Gatherer, writes: Vec<Write>) -> Result<Vec<Done>, (sqlx::Error, Vec<Write>)> {
    let pool = match pool(g) {
        Ok(pool) => pool,
        Err(e) => return Err((e, writes)),
    };
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return Err((e, writes)),
    };
    let (now, now_ms) = (crate::db::now_seconds(), crate::db::now_millis());
    let own_owners = g.own_owners();
    let mut done = Vec::with_capacity(writes.len());
    let mut rest = writes.into_iter();
    while let Some(write) = rest.next() {
        match step(&mut tx, write, now, now_ms, &own_owners).await {
            Ok(step) => done.push(step),
            Err((e, write)) => {
                let mut back: Vec<Write> = done.into_iter().map(Done::undo).collect();
                back.push(write);
                back.extend(rest);
                return Err((e, back));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(done),
        Err(e) => Err((e, done.into_iter().map(Done::undo).collect())),
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Runs one write in the transaction: what it did, or the error and the write back.
async fn step(
    tx: &mut Tx,
    write: Write,
    now: i64,
    now_ms: i64,
    own_owners: &str,
) -> Result<Done, (sqlx::Error, Write)> {
    match write {
        Write::Claim(call) => match take_lease(tx, &call.request, now_ms, own_owners).await {
            Ok((taken, row)) => Ok(Done::Claim(call, taken, row)),
            Err(e) => Err((e, Write::Claim(call))),
        },
        Write::Save(call) => match save_and_end_lease(tx, &call.request, now).await {
            Ok(version) => Ok(Done::Save(call, version)),
            Err(e) => Err((e, Write::Save(call))),
        },
        Write::Release(call) => match end_lease(tx, &call.request).await {
            Ok(()) => Ok(Done::Release(call)),
            Err(e) => Err((e, Write::Release(call))),
        },
        Write::Renew(call) => match renew_leases(tx, &call.request, now_ms).await {
            Ok(renewed) => Ok(Done::Renew(call, renewed)),
            Err(e) => Err((e, Write::Renew(call))),
        },
    }
}

/// Which of the leases were renewed: those their owners still hold, unexpired.
async fn renew_leases(
    tx: &mut Tx,
    leases: &[Renew],
    now_ms: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut renewed = Vec::with_capacity(leases.len());
    for lease in leases {
        let rows = sqlx::query(RENEW_LEASE)
            .bind(lease.user)
            .bind(lease.owner.as_str())
            .bind(now_ms)
            .bind(lease.ttl_ms)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        renewed.push(rows == 1);
    }
    Ok(renewed)
}

/// Whether the lease was taken (and then whether from another handle's row), and the user's
/// row read after, if asked for.
async fn take_lease(
    tx: &mut Tx,
    claim: &Claim,
    now_ms: i64,
    own_owners: &str,
) -> Result<(Option<bool>, Option<RawRow>), sqlx::Error> {
    let before: Option<String> = sqlx::query_scalar(LEASE_OWNER)
        .bind(claim.user)
        .fetch_optional(&mut **tx)
        .await?;
    let own = own_owners.trim_end_matches('%');
    let took_over = before.is_some_and(|owner| !owner.starts_with(own));
    let rows = sqlx::query(CLAIM_LEASE)
        .bind(claim.user)
        .bind(claim.owner.as_str())
        .bind(now_ms)
        .bind(claim.ttl_ms)
        .bind(own_owners)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let row = match (rows == 1, claim.load) {
        (true, true) => {
            sqlx::query_as::<_, RawRow>(q::LOAD)
                .bind(claim.user)
                .fetch_optional(&mut **tx)
                .await?
        }
        _ => None,
    };
    Ok(((rows == 1).then_some(took_over), row))
}

/// The new version if the save was written; its lease ends either way (the refresh is over).
async fn save_and_end_lease(
    tx: &mut Tx,
    save: &Save,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let version: Option<i64> = bind_sealed(
        sqlx::query_scalar(q::SAVE_VERSION),
        save.user,
        &save.sealed,
        now,
    )
    .bind(save.expected)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(release) = &save.release {
        sqlx::query(q::RELEASE_LEASE)
            .bind(release.user)
            .bind(release.owner.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(version)
}

/// Deletes the lease if this owner still holds it.
async fn end_lease(tx: &mut Tx, (user, owner): &Held) -> Result<(), sqlx::Error> {
    sqlx::query(q::RELEASE_LEASE)
        .bind(user)
        .bind(owner.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Answers a write of a transaction that failed alone.
fn fail(g: &Gatherer, write: Write, error: &sqlx::Error) {
    match write {
        Write::Claim(call) => {
            let _ = call
                .reply
                .send(Err(g.db().failure("take a refresh lease", error)));
        }
        Write::Save(call) => {
            let _ = call.reply.send(Err(g.db().failure("write a login", error)));
        }
        Write::Release(call) => {
            tracing::debug!(error = %g.db().failure("release a refresh lease", error), "a refresh lease was not released; it will expire");
            let _ = call.reply.send(());
        }
        Write::Renew(call) => {
            let _ = call
                .reply
                .send(Err(g.db().failure("renew refresh leases", error)));
        }
    }
}
