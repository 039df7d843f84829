//! The bounded cache of per-user sessions: shards behind read-write locks; CLOCK eviction (a
//! "recently used" bit per user, cleared by a hand that evicts the first user found unused).
//!
//! The fresh path reads the map's entry alone: one read lock, one lookup, one read of the
//! cheap wall clock ([`SystemClock::now_micros`]), one comparison and a clone of the token. It
//! does not reach the member or its session. Beside its member, each entry keeps a copy of the
//! user's fresh access token and the moment from which the session would refresh before
//! handing it out ([`Session::fresh_token_until`]); a new member has no copy, and the fresh
//! path misses until the slow path sets one.
//!
//! The fleet sets the copy again after every call that may change the session's token: the
//! slow path's `access_token` (a refresh, a first restore, a pair adopted from the store), a
//! data call (the session refreshes when Withings refuses its token), a revoke. It does so
//! under the shard's write lock, reading the session there, and only while the entry still
//! holds the same member: a copy read before a change can't land after it. The copy is cleared
//! when the user must authorize again, and goes with the entry when the user is renewed,
//! forgotten or evicted. A refresh leaves the replaced token in the copy until the fleet sets
//! it again, as a caller of the session may hold it from just before the refresh; the token
//! of a login this fleet revoked, or found dead, is never left there.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use withings_oauth::{AccessToken, Session, SystemClock, UserId};

use crate::health::Health;

/// One cached user: the session, restored once from the store, and its health.
pub(crate) struct Member {
    pub(crate) session: OnceCell<Session>,
    pub(crate) health: Mutex<Health>,
    /// Callers of this user whose token is due queue here, so that only the first of them
    /// takes one of the fleet's refresh permits: a busy user's callers can't hold the permits
    /// other users need while its one refresh runs.
    pub(crate) refresh_gate: tokio::sync::Mutex<()>,
}

impl Member {
    fn new(health: Health) -> Self {
        Self {
            session: OnceCell::new(),
            health: Mutex::new(health),
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cached user as the shard's map holds it: what the fresh path reads, without following
/// the pointer to the member.
struct Entry {
    member: Arc<Member>,
    /// The session's access token while it is fresh; `None` before the session is restored,
    /// and once the login is dead.
    token: Option<AccessToken>,
    /// Microseconds since the Unix epoch, on the cheap wall clock
    /// ([`SystemClock::now_micros`]), from which the session would refresh before handing
    /// `token` out.
    until: i64,
    /// The CLOCK bit: set by each use, cleared by the passing hand.
    used: AtomicBool,
}

impl Entry {
    fn new(member: Arc<Member>) -> Self {
        Self {
            member,
            token: None,
            until: i64::MIN,
            // Set by the first use: a user that arrives and is never asked for again is the
            // first to go.
            used: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        // Read first: on the fresh path the bit is nearly always set already, and a plain load
        // keeps the cache line shared between cores.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Cache {
    shards: Box<[RwLock<Shard>]>,
    shard_bits: u32,
    per_shard: usize,
    /// Users cached, kept beside the shards for the metrics (each shard knows its own).
    users: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    /// The fresh path reads only this.
    members: HashMap<UserId, Entry, UserHash>,
    /// The same users in the order the clock hand visits them.
    ring: Vec<UserId>,
    hand: usize,
}

impl Cache {
    /// Room for `capacity` users, spread over the shards: each holds its share plus an eighth
    /// (and 16), since users don't spread evenly, so the cache holds at most about 1.13 times
    /// `capacity`.
    pub(crate) fn new(capacity: usize) -> Self {
        let shard_bits = 6;
        let shards = 1usize << shard_bits;
        let share = capacity.div_ceil(shards);
        Self {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            shard_bits,
            per_shard: share + share / 8 + 16,
            users: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: UserId) -> &RwLock<Shard> {
        // A different mix than the maps' own hash: the users of one shard must still spread
        // over their map.
        let mixed = splitmix(user.get());
        &self.shards[(mixed >> (64 - self.shard_bits)) as usize]
    }

    /// The fresh path: the copy of the user's token, if the session would hand it out now.
    pub(crate) fn fresh_token(&self, user: UserId) -> Option<AccessToken> {
        let shard = self
            .shard(user)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.members.get(&user)?;
        entry.touch();
        if SystemClock::now_micros() < entry.until {
            entry.token.clone()
        } else {
            None
        }
    }

    /// Sets the copy of `member`'s token to `fresh()` (a session's
    /// [`fresh_token_until`](Session::fresh_token_until)), read under the shard's write lock: a
    /// copy set from an older reading can't land after a newer one. Nothing if `member` is no
    /// longer the user's (renewed, forgotten, evicted).
    pub(crate) fn set_fresh(
        &self,
        user: UserId,
        member: &Member,
        fresh: impl FnOnce() -> Option<(AccessToken, DateTime<Utc>)>,
    ) {
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = shard.members.get_mut(&user) else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&entry.member), member) {
            return;
        }
        match fresh() {
            Some((token, until)) => {
                entry.token = Some(token);
                entry.until = until.timestamp_micros();
            }
            None => {
                entry.token = None;
                entry.until = i64::MIN;
            }
        }
    }

    /// Sets the copy of `member`'s token from `session`, as it is now.
    pub(crate) fn set_fresh_from(&self, user: UserId, member: &Member, session: &Session) {
        self.set_fresh(user, member, || session.fresh_token_until());
    }

    /// Drops the copy of `member`'s token: the fresh path hands out nothing until it is set
    /// again.
    pub(crate) fn clear_fresh(&self, user: UserId, member: &Member) {
        self.set_fresh(user, member, || None);
    }

    /// The cached member, if any.
    pub(crate) fn get(&self, user: UserId) -> Option<Arc<Member>> {
        let shard = self
            .shard(user)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.members.get(&user)?;
        entry.touch();
        Some(entry.member.clone())
    }

    /// The cached member, or a new one (evicting a user not used lately if the shard is full).
    pub(crate) fn member(&self, user: UserId) -> Arc<Member> {
        if let Some(member) = self.get(user) {
            return member;
        }
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = shard.members.get(&user) {
            return entry.member.clone();
        }
        let member = Arc::new(Member::new(Health::default()));
        let evicted = shard.insert(user, member.clone(), self.per_shard);
        drop(shard);
        self.changed(true, evicted);
        member
    }

    /// Replaces `old` (if it is still cached for `user`) by a member without a session that
    /// keeps `old`'s health, and without a copy of a token: the next call restores the session
    /// from the store.
    pub(crate) fn renew(&self, user: UserId, old: &Arc<Member>) -> Arc<Member> {
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let member = Arc::new(Member::new(old.health().clone()));
        match shard.members.get_mut(&user) {
            Some(current) if Arc::ptr_eq(&current.member, old) => {
                *current = Entry::new(member.clone());
                member
            }
            Some(current) => current.member.clone(),
            None => {
                let evicted = shard.insert(user, member.clone(), self.per_shard);
                drop(shard);
                self.changed(true, evicted);
                member
            }
        }
    }

    /// Forgets the user.
    pub(crate) fn remove(&self, user: UserId) {
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.members.remove(&user).is_none() {
            return;
        }
        // Rare (a forgotten user): a scan of the shard's ring.
        if let Some(i) = shard.ring.iter().position(|u| *u == user) {
            shard.ring.swap_remove(i);
        }
        if shard.hand >= shard.ring.len() {
            shard.hand = 0;
        }
        drop(shard);
        self.changed(false, false);
    }

    /// Counts a user added (`evicted`: in place of another one) or removed, for the metrics.
    fn changed(&self, added: bool, evicted: bool) {
        let users = match (added, evicted) {
            (true, false) => self.users.fetch_add(1, Ordering::Relaxed) + 1,
            (false, false) => self.users.fetch_sub(1, Ordering::Relaxed) - 1,
            (_, true) => self.users.load(Ordering::Relaxed),
        };
        crate::telemetry::cache_changed(users, evicted);
    }

    /// How many users are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).ring.len())
            .sum()
    }
}

impl Shard {
    /// Adds `user`; `true` if another user was evicted to make room.
    fn insert(&mut self, user: UserId, member: Arc<Member>, capacity: usize) -> bool {
        if self.ring.len() < capacity {
            self.ring.push(user);
            self.members.insert(user, Entry::new(member));
            return false;
        }
        // CLOCK: give each used member a second chance; within two turns of the hand one is
        // found unused.
        loop {
            let candidate = self.ring[self.hand];
            let used = self
                .members
                .get(&candidate)
                .is_some_and(|e| e.used.swap(false, Ordering::Relaxed));
            if !used {
                self.members.remove(&candidate);
                self.ring[self.hand] = user;
                self.members.insert(user, Entry::new(member));
                self.hand = (self.hand + 1) % self.ring.len();
                return true;
            }
            self.hand = (self.hand + 1) % self.ring.len();
        }
    }
}

/// The hash of the shards' maps: user ids are trusted numbers, so a multiply-and-fold is
/// enough and costs a few cycles on the fresh path (SipHash costs tens).
#[derive(Clone, Copy, Default)]
struct UserHash;

impl BuildHasher for UserHash {
    type Hasher = UserHasher;
    fn build_hasher(&self) -> UserHasher {
        UserHasher(0)
    }
}

struct UserHasher(u64);

impl Hasher for UserHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let product = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = product ^ (product >> 32);
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_bound_and_keeps_users_in_use() {
        let cache = Cache::new(64);
        let hot = UserId::new(7);
        cache.member(hot);
        for i in 1_000..3_000 {
            cache.member(UserId::new(i));
            // The hot user is used between arrivals: its bit is set again each time.
            assert!(cache.get(hot).is_some(), "evicted after {i}");
        }
        assert!(cache.len() <= 64 * 17);
    }

    #[test]
    fn removed_users_are_gone_and_the_others_stay() {
        let cache = Cache::new(1_000);
        for i in 0..100 {
            cache.member(UserId::new(i));
        }
        for i in (0..100).step_by(2) {
            cache.remove(UserId::new(i));
        }
        assert_eq!(cache.len(), 50);
        for i in 0..100 {
            assert_eq!(cache.get(UserId::new(i)).is_some(), i % 2 == 1, "user {i}");
        }
    }

    #[test]
    fn the_same_user_gets_the_same_member_until_renewed() {
        let cache = Cache::new(1);
        let user = UserId::new(1);
        let first = cache.member(user);
        assert!(Arc::ptr_eq(&first, &cache.member(user)));
        first.health().public.failures = 3;
        let renewed = cache.renew(user, &first);
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert_eq!(renewed.health().public.failures, 3);
        assert!(Arc::ptr_eq(&renewed, &cache.member(user)));
    }

    fn in_micros(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(SystemClock::now_micros() + micros).unwrap()
    }

    fn fresh(cache: &Cache, user: UserId) -> Option<String> {
        cache
            .fresh_token(user)
            .map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn the_copy_is_handed_out_until_its_moment_and_never_after() {
        let cache = Cache::new(100);
        let user = UserId::new(1);
        let member = cache.member(user);
        // A new member has no copy: the slow path restores the session.
        assert_eq!(fresh(&cache, user), None);

        cache.set_fresh(user, &member, || {
            Some((AccessToken::new("a1"), in_micros(60_000_000)))
        });
        assert_eq!(fresh(&cache, user).as_deref(), Some("a1"));
        // Another user of the same cache gets nothing of it.
        assert_eq!(fresh(&cache, UserId::new(2)), None);

        // A moment already reached: the session would refresh first, so the fresh path misses.
        cache.set_fresh(user, &member, || {
            Some((AccessToken::new("a1"), in_micros(0)))
        });
        assert_eq!(fresh(&cache, user), None);
        cache.set_fresh(user, &member, || {
            Some((AccessToken::new("a1"), in_micros(-1_000_000)))
        });
        assert_eq!(fresh(&cache, user), None);

        // A newer token replaces the copy; a dead login (none) clears it.
        cache.set_fresh(user, &member, || {
            Some((AccessToken::new("a2"), in_micros(60_000_000)))
        });
        assert_eq!(fresh(&cache, user).as_deref(), Some("a2"));
        cache.set_fresh(user, &member, || None);
        assert_eq!(fresh(&cache, user), None);
        cache.set_fresh(user, &member, || {
            Some((AccessToken::new("a3"), in_micros(60_000_000)))
        });
        cache.clear_fresh(user, &member);
        assert_eq!(fresh(&cache, user), None);
        // The member itself stays.
        assert!(Arc::ptr_eq(&member, &cache.member(user)));
    }

    #[test]
    fn only_the_users_current_member_sets_the_copy() {
        let cache = Cache::new(100);
        let user = UserId::new(1);
        let old = cache.member(user);
        let later = || Some((AccessToken::new("old"), in_micros(60_000_000)));
        cache.set_fresh(user, &old, later);
        assert_eq!(fresh(&cache, user).as_deref(), Some("old"));

        // Renewed: the new member starts without a copy, and the old one can't set one.
        let renewed = cache.renew(user, &old);
        assert_eq!(fresh(&cache, user), None);
        cache.set_fresh(user, &old, later);
        assert_eq!(fresh(&cache, user), None);
        cache.set_fresh(user, &renewed, || {
            Some((AccessToken::new("new"), in_micros(60_000_000)))
        });
        assert_eq!(fresh(&cache, user).as_deref(), Some("new"));
        // Nor can it clear the new member's copy.
        cache.clear_fresh(user, &old);
        assert_eq!(fresh(&cache, user).as_deref(), Some("new"));

        // Forgotten: the copy goes with the entry, and setting it does not bring the user back.
        cache.remove(user);
        assert_eq!(fresh(&cache, user), None);
        cache.set_fresh(user, &renewed, later);
        assert_eq!(fresh(&cache, user), None);
        assert_eq!(cache.len(), 0);
        let again = cache.member(user);
        assert!(!Arc::ptr_eq(&again, &renewed));
        assert_eq!(fresh(&cache, user), None);
    }

    #[test]
    fn an_evicted_user_takes_its_copy_along_and_the_fresh_path_keeps_users_in_use() {
        let cache = Cache::new(64);
        let hot = UserId::new(7);
        let member = cache.member(hot);
        cache.set_fresh(hot, &member, || {
            Some((AccessToken::new("hot"), in_micros(600_000_000)))
        });
        let cold = UserId::new(8);
        let cold_member = cache.member(cold);
        cache.set_fresh(cold, &cold_member, || {
            Some((AccessToken::new("cold"), in_micros(600_000_000)))
        });
        for i in 1_000..3_000 {
            cache.member(UserId::new(i));
            // Only the fresh path uses the hot user: it sets the bit too.
            assert_eq!(fresh(&cache, hot).as_deref(), Some("hot"), "after {i}");
        }
        assert_eq!(fresh(&cache, cold), None, "the cold user was never evicted");
        assert!(!Arc::ptr_eq(&cold_member, &cache.member(cold)));
        assert_eq!(fresh(&cache, cold), None);
    }
}
