//! The conformance kit: one run of every check of the [`TokenStore`] contract against a store
//! implementation, each on a fresh, empty store.
//!
//! Every store of this workspace passes it (`MemoryStore`, `FileStore`, the SQL stores), and a
//! store of your own should too:
//!
//! ```
//! use std::sync::Arc;
//! use withings_oauth::testing::conformance::{self, Options};
//! use withings_oauth::{MemoryStore, TokenStore};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // Each call makes a fresh store; the handle function opens another handle to the same
//! // storage, as a second process sharing a file or database would.
//! conformance::run(
//!     || async {
//!         let store = MemoryStore::new();
//!         move || Arc::new(store.clone()) as Arc<dyn TokenStore>
//!     },
//!     Options::default(),
//! )
//! .await;
//! # }
//! ```
//!
//! A failed check panics with the check's name and what went wrong.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use super::{StaleReads, credentials};
use crate::credentials::UserId;
use crate::store::contract::{Expected, StoreError, StoredEntry, TokenStore, Version};

/// What the store under test is expected to do beyond the common contract.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Whether a lease that its holder keeps past its time to live (a hung or crashed holder
    /// within the same process) is taken over by the next taker. `true` for stores with
    /// expiring leases (memory, SQL); `false` for stores whose lease is an OS lock released
    /// when the holding process exits (files).
    pub lease_expires_in_process: bool,
    /// How many concurrent writers the concurrency check runs (default 8).
    pub writers: usize,
    /// How many successful writes each of them makes (default 12).
    pub writes_each: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lease_expires_in_process: true,
            writers: 8,
            writes_each: 12,
        }
    }
}

impl Options {
    /// For stores whose lease is an OS lock: no in-process expiry check.
    pub fn lease_held_until_process_exit(mut self) -> Self {
        self.lease_expires_in_process = false;
        self
    }

    /// Sets the concurrency check's size.
    pub fn concurrency(mut self, writers: usize, writes_each: usize) -> Self {
        self.writers = writers.max(1);
        self.writes_each = writes_each.max(1);
        self
    }
}

/// Runs every check. `fresh` makes a fresh, empty store and returns a function that opens
/// handles to it (every handle sees the same storage). Needs a multi-threaded runtime.
pub async fn run<F, Fut, H>(mut fresh: F, options: Options)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = H>,
    H: Fn() -> Arc<dyn TokenStore> + Send + Sync + 'static,
{
    absent_users_and_first_writes(&(fresh().await)()).await;
    versions_grow_and_conflicts_carry_the_current_entry(&(fresh().await)()).await;
    login_required_replaces_only_the_expected_version(&(fresh().await)()).await;
    deletes_are_compare_and_swap_and_versions_never_come_back(&(fresh().await)()).await;
    force_delete_removes_whatever_is_stored(&(fresh().await)()).await;
    users_are_listed_in_ascending_order(&(fresh().await)()).await;
    credentials_round_trip(&(fresh().await)()).await;
    writes_are_seen_by_every_handle(&fresh().await).await;
    concurrent_writers_never_lose_a_write(&fresh().await, options).await;
    a_stale_read_can_not_overwrite_a_newer_entry(&(fresh().await)()).await;
    leases_exclude_one_user_at_a_time(&fresh().await).await;
    a_lease_term_never_outlasts_the_lease(&fresh().await).await;
    a_refresh_reads_under_its_lease_and_ends_it_with_its_save(&fresh().await).await;
    if options.lease_expires_in_process {
        an_abandoned_lease_is_taken_over_after_it_expires(&(fresh().await)()).await;
        a_late_save_does_not_end_the_lease_that_took_over(&fresh().await).await;
    }
}

const A: UserId = UserId::new(7001);
const B: UserId = UserId::new(7002);

fn creds(user: UserId, refresh: &str) -> crate::Credentials {
    credentials(
        user,
        &format!("access-{refresh}"),
        refresh,
        Utc::now() + TimeDelta::hours(3),
    )
}

async fn refresh_token_of(store: &dyn TokenStore, user: UserId) -> Option<String> {
    let entry = store.load(user).await.expect("load");
    entry
        .and_then(|e| e.credentials().cloned())
        .map(|c| c.refresh_token().expose_secret().to_owned())
}

fn expect_conflict<T: std::fmt::Debug>(
    check: &str,
    result: Result<T, StoreError>,
    current: Option<Version>,
) {
    match result {
        Err(StoreError::Conflict(conflict)) => assert_eq!(
            conflict.current_version(),
            current,
            "{check}: the conflict must carry the entry stored now"
        ),
        other => panic!("{check}: expected a conflict, got {other:?}"),
    }
}

/// Unknown users load as nothing; a first write expects an absent entry.
pub async fn absent_users_and_first_writes(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "absent_users_and_first_writes";
    assert!(
        store.load(A).await.expect("load").is_none(),
        "{CHECK}: empty store"
    );
    store
        .delete(A, Expected::Absent)
        .await
        .unwrap_or_else(|e| panic!("{CHECK}: deleting an absent user is not an error: {e}"));
    expect_conflict(
        CHECK,
        store
            .save(A, &creds(A, "r1"), Expected::Version(Version::FIRST))
            .await,
        None,
    );
    let v1 = store
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .unwrap_or_else(|e| panic!("{CHECK}: first save: {e}"));
    let loaded = store.load(A).await.expect("load").expect("saved");
    assert_eq!(
        loaded.version, v1,
        "{CHECK}: load returns the saved version"
    );
    assert_eq!(
        refresh_token_of(store.as_ref(), A).await.as_deref(),
        Some("r1"),
        "{CHECK}"
    );
    expect_conflict(
        CHECK,
        store.save(A, &creds(A, "r2"), Expected::Absent).await,
        Some(v1),
    );
    let mismatched = store.save(B, &creds(A, "r1"), Expected::Absent).await;
    assert!(
        mismatched.is_err(),
        "{CHECK}: a user's tokens can't be saved under another user"
    );
}

/// Each write gives a higher version; a write with an old expectation is refused with what is
/// stored now, and writes nothing.
pub async fn versions_grow_and_conflicts_carry_the_current_entry(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "versions_grow_and_conflicts_carry_the_current_entry";
    let v1 = store
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let v2 = store
        .save(A, &creds(A, "r2"), Expected::Version(v1))
        .await
        .expect("save");
    assert!(v2 > v1, "{CHECK}: {v2} after {v1}");
    let stale = store
        .save(A, &creds(A, "r-stale"), Expected::Version(v1))
        .await;
    match &stale {
        Err(StoreError::Conflict(c)) => {
            let current = c.current.as_ref().expect("the current entry");
            assert_eq!(current.version, v2, "{CHECK}");
            let token = current
                .credentials()
                .map(|c| c.refresh_token().expose_secret().to_owned());
            assert_eq!(
                token.as_deref(),
                Some("r2"),
                "{CHECK}: the conflict carries r2"
            );
            assert!(
                !c.to_string().contains("r2") && !format!("{c:?}").contains("access-r2"),
                "{CHECK}: a conflict's message holds no token"
            );
        }
        other => panic!("{CHECK}: expected a conflict, got {other:?}"),
    }
    assert_eq!(
        refresh_token_of(store.as_ref(), A).await.as_deref(),
        Some("r2"),
        "{CHECK}: the refused write wrote nothing"
    );
}

/// Marking a login dead needs the version whose refresh token died.
pub async fn login_required_replaces_only_the_expected_version(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "login_required_replaces_only_the_expected_version";
    let v1 = store
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let v2 = store
        .save(A, &creds(A, "r2"), Expected::Version(v1))
        .await
        .expect("save");
    expect_conflict(
        CHECK,
        store.mark_login_required(A, Expected::Version(v1)).await,
        Some(v2),
    );
    assert_eq!(
        refresh_token_of(store.as_ref(), A).await.as_deref(),
        Some("r2"),
        "{CHECK}: the newer pair survives"
    );
    let v3 = store
        .mark_login_required(A, Expected::Version(v2))
        .await
        .expect("mark");
    assert!(v3 > v2, "{CHECK}");
    let entry = store.load(A).await.expect("load").expect("entry");
    assert!(
        matches!(entry.entry, StoredEntry::LoginRequired) && entry.version == v3,
        "{CHECK}: {entry:?}"
    );
}

/// A delete needs the right version, and versions keep growing after it.
pub async fn deletes_are_compare_and_swap_and_versions_never_come_back(
    store: &Arc<dyn TokenStore>,
) {
    const CHECK: &str = "deletes_are_compare_and_swap_and_versions_never_come_back";
    let v1 = store
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let v2 = store
        .save(A, &creds(A, "r2"), Expected::Version(v1))
        .await
        .expect("save");
    expect_conflict(
        CHECK,
        store.delete(A, Expected::Version(v1)).await,
        Some(v2),
    );
    expect_conflict(CHECK, store.delete(A, Expected::Absent).await, Some(v2));
    store
        .delete(A, Expected::Version(v2))
        .await
        .expect("delete");
    assert!(
        store.load(A).await.expect("load").is_none(),
        "{CHECK}: deleted"
    );
    let again = store
        .save(A, &creds(A, "r3"), Expected::Absent)
        .await
        .expect("save");
    assert!(
        again > v2,
        "{CHECK}: a login after a logout gets a newer version ({again} after {v2})"
    );
}

/// The unconditional delete removes whatever is there.
pub async fn force_delete_removes_whatever_is_stored(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "force_delete_removes_whatever_is_stored";
    let v1 = store
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    store
        .mark_login_required(A, Expected::Version(v1))
        .await
        .expect("mark");
    store.force_delete(A).await.expect("force delete");
    assert!(store.load(A).await.expect("load").is_none(), "{CHECK}");
    store.force_delete(A).await.expect("force delete of nobody");
}

/// `users` lists every user with an entry, ascending.
pub async fn users_are_listed_in_ascending_order(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "users_are_listed_in_ascending_order";
    for id in [9003, 9001, 9002] {
        let user = UserId::new(id);
        store
            .save(user, &creds(user, "r"), Expected::Absent)
            .await
            .expect("save");
    }
    store
        .mark_login_required(UserId::new(9000), Expected::Absent)
        .await
        .expect("mark");
    let users: Vec<u64> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(UserId::get)
        .collect();
    assert_eq!(users, [9000, 9001, 9002, 9003], "{CHECK}");
}

/// Every field of the credentials comes back as saved (the expiry to the second).
pub async fn credentials_round_trip(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "credentials_round_trip";
    let saved = creds(A, "r-round-trip");
    store.save(A, &saved, Expected::Absent).await.expect("save");
    let entry = store.load(A).await.expect("load").expect("entry");
    let back = entry.credentials().expect("credentials");
    assert_eq!(back.user_id(), saved.user_id(), "{CHECK}");
    assert_eq!(
        back.access_token().expose_secret(),
        saved.access_token().expose_secret(),
        "{CHECK}"
    );
    assert_eq!(
        back.refresh_token().expose_secret(),
        saved.refresh_token().expose_secret(),
        "{CHECK}"
    );
    assert_eq!(
        back.expires_at().timestamp(),
        saved.expires_at().timestamp(),
        "{CHECK}"
    );
    assert_eq!(back.scopes(), saved.scopes(), "{CHECK}");
    assert_eq!(back.token_type(), saved.token_type(), "{CHECK}");
}

/// A write that returned is seen at once through another handle (another process).
pub async fn writes_are_seen_by_every_handle<H>(handles: &H)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "writes_are_seen_by_every_handle";
    let (one, two) = (handles(), handles());
    let v1 = one
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let seen = two.load(A).await.expect("load").map(|e| e.version);
    assert_eq!(seen, Some(v1), "{CHECK}: read your writes across handles");
    let v2 = two
        .save(A, &creds(A, "r2"), Expected::Version(v1))
        .await
        .expect("save");
    expect_conflict(
        CHECK,
        one.save(A, &creds(A, "r-late"), Expected::Version(v1))
            .await,
        Some(v2),
    );
}

/// Many writers on several handles, each reading and writing back with compare-and-swap:
/// every successful write gets its own version, and the entry ends as the newest of them.
pub async fn concurrent_writers_never_lose_a_write<H>(handles: &H, options: Options)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "concurrent_writers_never_lose_a_write";
    let mut tasks = Vec::new();
    for writer in 0..options.writers {
        let store = handles();
        let writes = options.writes_each;
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while done.len() < writes {
                let expected = match store.load(A).await.expect("load") {
                    None => Expected::Absent,
                    Some(entry) => Expected::Version(entry.version),
                };
                let token = format!("w{writer}-{}", done.len());
                match store.save(A, &creds(A, &token), expected).await {
                    Ok(version) => done.push((version, token)),
                    Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("{CHECK}: save: {e}"),
                }
            }
            done
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer"));
    }
    let versions: BTreeSet<Version> = all.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions.len(),
        options.writers * options.writes_each,
        "{CHECK}: two successful writes got the same version (one overwrote the other)"
    );
    let newest = all.iter().max_by_key(|(v, _)| *v).expect("writes");
    let stored = handles().load(A).await.expect("load").expect("entry");
    assert_eq!(stored.version, newest.0, "{CHECK}");
    assert_eq!(
        refresh_token_of(handles().as_ref(), A).await.as_deref(),
        Some(newest.1.as_str()),
        "{CHECK}: the stored entry is the newest write"
    );
}

/// A writer misled by a stale read (a cache, a replica) is refused instead of overwriting.
pub async fn a_stale_read_can_not_overwrite_a_newer_entry(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "a_stale_read_can_not_overwrite_a_newer_entry";
    let stale = StaleReads::new(store.clone());
    let v1 = stale
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let v2 = stale
        .save(A, &creds(A, "r2"), Expected::Version(v1))
        .await
        .expect("save");
    stale.serve_stale_once(A);
    let read = stale.load(A).await.expect("load").expect("entry");
    assert_eq!(
        read.version, v1,
        "{CHECK}: the wrapper served the stale entry"
    );
    expect_conflict(
        CHECK,
        stale
            .mark_login_required(A, Expected::Version(read.version))
            .await,
        Some(v2),
    );
    assert_eq!(
        refresh_token_of(store.as_ref(), A).await.as_deref(),
        Some("r2"),
        "{CHECK}"
    );
}

/// One holder per user at a time, across handles; other users are not held up; dropping a
/// lease releases it at once.
pub async fn leases_exclude_one_user_at_a_time<H>(handles: &H)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "leases_exclude_one_user_at_a_time";
    let (one, two) = (handles(), handles());
    let ttl = Duration::from_secs(30);
    let held = one.lease(A, ttl).await.expect("lease");
    let same = tokio::time::timeout(Duration::from_millis(300), two.lease(A, ttl)).await;
    assert!(
        same.is_err(),
        "{CHECK}: a second lease of the same user must wait"
    );
    let other = tokio::time::timeout(Duration::from_secs(5), two.lease(B, ttl)).await;
    assert!(
        matches!(other, Ok(Ok(_))),
        "{CHECK}: another user's lease is not held up"
    );
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(5), two.lease(A, ttl)).await;
    assert!(
        matches!(again, Ok(Ok(_))),
        "{CHECK}: a dropped lease is released"
    );
}

/// A lease's [`LeaseTerm`](crate::LeaseTerm) never says it is held longer than the store
/// holds it: while the term has time left, no other handle gets the lease (a session sends
/// its refresh request only within that time).
pub async fn a_lease_term_never_outlasts_the_lease<H>(handles: &H)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "a_lease_term_never_outlasts_the_lease";
    let (one, two) = (handles(), handles());
    let ttl = Duration::from_millis(1500);
    let lease = one.lease(A, ttl).await.expect("lease");
    assert!(
        lease.term().left().is_none_or(|left| left <= ttl),
        "{CHECK}: the term says more than the time to live asked for"
    );
    assert!(
        !lease.is_expired(),
        "{CHECK}: a lease just taken has expired"
    );
    for _ in 0..4 {
        let probe = match lease.term().left() {
            None => Duration::from_millis(300),
            Some(left) if left > Duration::from_millis(200) => {
                (left - Duration::from_millis(100)).min(Duration::from_millis(300))
            }
            Some(_) => break,
        };
        assert!(
            !lease_free(two.as_ref(), A, probe).await,
            "{CHECK}: another handle took the lease while its term had {:?} left",
            lease.term().left()
        );
    }
    drop(lease);
    assert!(
        lease_free(two.as_ref(), A, Duration::from_secs(5)).await,
        "{CHECK}: a dropped lease is released"
    );
}

/// A lease kept past its time to live (its holder hung or died) is taken over.
pub async fn an_abandoned_lease_is_taken_over_after_it_expires(store: &Arc<dyn TokenStore>) {
    const CHECK: &str = "an_abandoned_lease_is_taken_over_after_it_expires";
    let ttl = Duration::from_millis(400);
    let abandoned = store.lease(A, ttl).await.expect("lease");
    let asked = Instant::now();
    let taken = tokio::time::timeout(Duration::from_secs(10), store.lease(A, ttl)).await;
    assert!(
        matches!(taken, Ok(Ok(_))),
        "{CHECK}: the expired lease was not taken over"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{CHECK}: taken over before it expired ({:?})",
        asked.elapsed()
    );
    assert!(abandoned.is_expired(), "{CHECK}: the old holder can tell");
}

/// Whether `store` hands out `user`'s lease within `within`.
async fn lease_free(store: &dyn TokenStore, user: UserId, within: Duration) -> bool {
    let taken = tokio::time::timeout(within, store.lease(user, Duration::from_secs(30))).await;
    matches!(taken, Ok(Ok(_)))
}

/// [`lease_and_load`](TokenStore::lease_and_load) holds the lease and reads the newest entry
/// under it, across handles; [`save_and_release`](TokenStore::save_and_release) writes and
/// ends the lease at once, and a refused save (a conflict) ends it too.
pub async fn a_refresh_reads_under_its_lease_and_ends_it_with_its_save<H>(handles: &H)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "a_refresh_reads_under_its_lease_and_ends_it_with_its_save";
    let (one, two) = (handles(), handles());
    let ttl = Duration::from_secs(30);
    let v1 = one
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");

    let (lease, read) = two.lease_and_load(A, ttl).await.expect("lease_and_load");
    assert_eq!(
        read.map(|e| e.version),
        Some(v1),
        "{CHECK}: the read under the lease sees the newest entry"
    );
    assert!(
        !lease_free(one.as_ref(), A, Duration::from_millis(300)).await,
        "{CHECK}: lease_and_load holds the lease"
    );
    let v2 = two
        .save_and_release(A, &creds(A, "r2"), Expected::Version(v1), lease)
        .await
        .expect("save_and_release");
    assert!(v2 > v1, "{CHECK}: versions grow");

    let taken = tokio::time::timeout(Duration::from_secs(5), one.lease_and_load(A, ttl)).await;
    let Ok(Ok((lease, read))) = taken else {
        panic!("{CHECK}: save_and_release did not end the lease: {taken:?}");
    };
    let read = read.expect("an entry");
    assert_eq!(read.version, v2, "{CHECK}: the next holder reads the save");
    assert_eq!(
        read.credentials()
            .map(|c| c.refresh_token().expose_secret().to_owned())
            .as_deref(),
        Some("r2"),
        "{CHECK}"
    );

    // A login stored by another program while this holder refreshed: the holder's save is
    // refused, and its lease ends all the same.
    let v3 = two
        .save(A, &creds(A, "login"), Expected::Version(v2))
        .await
        .expect("save");
    expect_conflict(
        CHECK,
        one.save_and_release(A, &creds(A, "r3"), Expected::Version(v2), lease)
            .await,
        Some(v3),
    );
    assert!(
        lease_free(two.as_ref(), A, Duration::from_secs(5)).await,
        "{CHECK}: a refused save_and_release did not end the lease"
    );
    assert_eq!(
        refresh_token_of(two.as_ref(), A).await.as_deref(),
        Some("login"),
        "{CHECK}: the refused save wrote nothing"
    );
}

/// A holder that outlived its lease (another holder took it over) and saves late ends only
/// its own lease, never the new holder's.
pub async fn a_late_save_does_not_end_the_lease_that_took_over<H>(handles: &H)
where
    H: Fn() -> Arc<dyn TokenStore>,
{
    const CHECK: &str = "a_late_save_does_not_end_the_lease_that_took_over";
    let (one, two, three) = (handles(), handles(), handles());
    let v1 = one
        .save(A, &creds(A, "r1"), Expected::Absent)
        .await
        .expect("save");
    let (late, _) = one
        .lease_and_load(A, Duration::from_millis(300))
        .await
        .expect("lease_and_load");
    let taken = tokio::time::timeout(
        Duration::from_secs(10),
        two.lease_and_load(A, Duration::from_secs(30)),
    )
    .await;
    let Ok(Ok((current, _))) = taken else {
        panic!("{CHECK}: the expired lease was not taken over: {taken:?}");
    };
    assert!(late.is_expired(), "{CHECK}: the late holder can tell");
    // Whether this save is written is up to compare-and-swap; the lease is not its to end.
    let _ = one
        .save_and_release(A, &creds(A, "late"), Expected::Version(v1), late)
        .await;
    assert!(
        !lease_free(three.as_ref(), A, Duration::from_millis(300)).await,
        "{CHECK}: the late save ended the lease of the holder that took over"
    );
    drop(current);
    assert!(
        lease_free(three.as_ref(), A, Duration::from_secs(5)).await,
        "{CHECK}: the lease is free once its holder drops it"
    );
}
