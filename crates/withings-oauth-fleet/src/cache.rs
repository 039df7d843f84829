//! The bounded cache of per-user sessions: shards behind read-write locks, so that the fresh
//! path is one read lock, one lookup and the session's own fast path; CLOCK eviction (a
//! "recently used" bit per user, cleared by a hand that evicts the first user found unused).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::OnceCell;
use withings_oauth::{AccessToken, Session, UserId};

use crate::health::Health;

/// One cached user: the session, restored once from the store, and its health.
pub(crate) struct Member {
    pub(crate) session: OnceCell<Session>,
    pub(crate) health: Mutex<Health>,
    /// Callers of this user whose token is due queue here, so that only the first of them
    /// takes one of the fleet's refresh permits: a busy user's callers can't hold the permits
    /// other users need while its one refresh runs.
    pub(crate) refresh_gate: tokio::sync::Mutex<()>,
    used: AtomicBool,
}

impl Member {
    fn new(health: Health) -> Self {
        Self {
            session: OnceCell::new(),
            health: Mutex::new(health),
            refresh_gate: tokio::sync::Mutex::new(()),
            // Set by the first use: a user that arrives and is never asked for again is the
            // first to go.
            used: AtomicBool::new(false),
        }
    }

    pub(crate) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
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
}

#[derive(Default)]
struct Shard {
    /// The fresh path reads only this.
    members: HashMap<UserId, Arc<Member>, UserHash>,
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
        }
    }

    fn shard(&self, user: UserId) -> &RwLock<Shard> {
        // A different mix than the maps' own hash: the users of one shard must still spread
        // over their map.
        let mixed = splitmix(user.get());
        &self.shards[(mixed >> (64 - self.shard_bits)) as usize]
    }

    /// The fresh path: the cached session's token if it is fresh.
    pub(crate) fn fresh_token(&self, user: UserId) -> Option<AccessToken> {
        let shard = self
            .shard(user)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let member = shard.members.get(&user)?;
        member.touch();
        member.session.get()?.fresh_token()
    }

    /// The cached member, if any.
    pub(crate) fn get(&self, user: UserId) -> Option<Arc<Member>> {
        let shard = self
            .shard(user)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let member = shard.members.get(&user)?;
        member.touch();
        Some(member.clone())
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
        if let Some(member) = shard.members.get(&user) {
            return member.clone();
        }
        let member = Arc::new(Member::new(Health::default()));
        shard.insert(user, member.clone(), self.per_shard);
        member
    }

    /// Replaces `old` (if it is still cached for `user`) by a member without a session that
    /// keeps `old`'s health: the next call restores the session from the store.
    pub(crate) fn renew(&self, user: UserId, old: &Arc<Member>) -> Arc<Member> {
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let member = Arc::new(Member::new(old.health().clone()));
        match shard.members.get_mut(&user) {
            Some(current) if Arc::ptr_eq(current, old) => {
                *current = member.clone();
                member
            }
            Some(current) => current.clone(),
            None => {
                shard.insert(user, member.clone(), self.per_shard);
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
    fn insert(&mut self, user: UserId, member: Arc<Member>, capacity: usize) {
        if self.ring.len() < capacity {
            self.ring.push(user);
            self.members.insert(user, member);
            return;
        }
        // CLOCK: give each used member a second chance; within two turns of the hand one is
        // found unused.
        loop {
            let candidate = self.ring[self.hand];
            let used = self
                .members
                .get(&candidate)
                .is_some_and(|m| m.used.swap(false, Ordering::Relaxed));
            if !used {
                self.members.remove(&candidate);
                self.ring[self.hand] = user;
                self.members.insert(user, member);
                self.hand = (self.hand + 1) % self.ring.len();
                return;
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
}
