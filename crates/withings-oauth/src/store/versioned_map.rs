//! [`VersionedMap`]: the versions and compare-and-swap writes of a store that holds all its
//! entries at once (in memory, or read from one file and written back).

use std::collections::BTreeMap;

use super::contract::{Expected, StoreError, Version, VersionedEntry};
use crate::credentials::UserId;

/// Every user's entry with its version, and the last version given out, so that versions keep
/// growing across deletes.
///
/// ```
/// use withings_oauth::{Expected, StoreError, UserId, Version, VersionedMap};
///
/// let mut map: VersionedMap<&str> = VersionedMap::new();
/// let user = UserId::new(7);
/// let v1 = map.write(user, Expected::Absent, Some("first"), |_, _| None)?;
/// let refused = map.write(user, Expected::Absent, Some("again"), |_, _| None);
/// assert!(matches!(refused, Err(StoreError::Conflict(_))));
/// map.write(user, Expected::Version(v1), None, |_, _| None)?;
/// let v3 = map.write(user, Expected::Absent, Some("later"), |_, _| None)?;
/// assert_eq!(v3, Version::new(3), "a delete uses up a version too");
/// # Ok::<(), StoreError>(())
/// ```
#[derive(Clone, Debug)]
pub struct VersionedMap<T> {
    entries: BTreeMap<UserId, (Version, T)>,
    last_version: u64,
}

impl<T> Default for VersionedMap<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            last_version: 0,
        }
    }
}

impl<T> VersionedMap<T> {
    /// No entry, no version given out yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user's entry and its version.
    pub fn get(&self, user: UserId) -> Option<(Version, &T)> {
        self.entries.get(&user).map(|(v, t)| (*v, t))
    }

    /// Every entry, by ascending user id.
    pub fn iter(&self) -> impl Iterator<Item = (UserId, Version, &T)> {
        self.entries.iter().map(|(u, (v, t))| (*u, *v, t))
    }

    /// Every user with an entry, ascending.
    pub fn users(&self) -> Vec<UserId> {
        self.entries.keys().copied().collect()
    }

    /// How many users have an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no user has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last version given out (0 before the first write).
    pub fn last_version(&self) -> u64 {
        self.last_version
    }

    /// Puts back an entry as read from storage, with its version.
    pub fn restore(&mut self, user: UserId, version: Version, value: T) {
        self.last_version = self.last_version.max(version.get());
        self.entries.insert(user, (version, value));
    }

    /// Sets the last version given out, as read from storage; `false` (and nothing changes) if
    /// an entry has a higher version, which a consistent store never writes.
    pub fn restore_last_version(&mut self, last: u64) -> bool {
        let highest = self.entries.values().map(|(v, _)| v.get()).max();
        if highest.is_some_and(|h| h > last) {
            return false;
        }
        self.last_version = last;
        true
    }

    /// Replaces the user's entry with `new` (`None` deletes) if it is what `expected` says, and
    /// returns the new version. Otherwise nothing changes, and the conflict carries what
    /// `current` makes of the entry stored now.
    pub fn write(
        &mut self,
        user: UserId,
        expected: Expected,
        new: Option<T>,
        current: impl FnOnce(Version, &T) -> Option<VersionedEntry>,
    ) -> Result<Version, StoreError> {
        let stored = self.entries.get(&user);
        if !expected.matches(stored.map(|(v, _)| *v)) {
            let current = stored.and_then(|(v, t)| current(*v, t));
            return Err(StoreError::conflict_with(user, expected, current));
        }
        self.last_version += 1;
        let version = Version::new(self.last_version);
        match new {
            Some(value) => {
                self.entries.insert(user, (version, value));
            }
            None => {
                self.entries.remove(&user);
            }
        }
        Ok(version)
    }
}
