//! Withings scopes: a typed [`Scope`] and a comma-separated [`Scopes`] set.
//!
//! Withings joins scopes with commas, not spaces as RFC 6749 does, and may grant fewer than
//! were asked for. Unknown scopes are kept verbatim so nothing Withings adds later is lost.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One Withings scope.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `user.info`: the user's profile.
    Info,
    /// `user.metrics`: measures (weight, heart rate...), `getmeas`.
    Metrics,
    /// `user.activity`: activity, workouts and sleep.
    Activity,
    /// `user.sleepevents`: bed in / bed out notifications.
    SleepEvents,
    /// A scope this library does not know, kept as Withings wrote it.
    Other(String),
}

impl Scope {
    /// The scope as Withings spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Info => "user.info",
            Scope::Metrics => "user.metrics",
            Scope::Activity => "user.activity",
            Scope::SleepEvents => "user.sleepevents",
            Scope::Other(s) => s,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope string that is empty or holds a comma or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid scope {0:?}: a scope is a non-empty word such as user.metrics, without commas or spaces"
)]
pub struct InvalidScope(pub String);

impl FromStr for Scope {
    type Err = InvalidScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Printable ASCII only: scopes are shown in terminals and logs.
        if s.is_empty()
            || s.len() > 100
            || s.contains(',')
            || !s.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidScope(s.to_owned()));
        }
        Ok(match s {
            "user.info" => Scope::Info,
            "user.metrics" => Scope::Metrics,
            "user.activity" => Scope::Activity,
            "user.sleepevents" => Scope::SleepEvents,
            other => Scope::Other(other.to_owned()),
        })
    }
}

/// A set of scopes, rendered comma-separated as Withings wants. Rendering keeps insertion order;
/// equality ignores order (`user.info,user.metrics` equals `user.metrics,user.info`).
///
/// ```
/// use withings_oauth::{Scope, Scopes};
///
/// let scopes: Scopes = "user.metrics,user.activity".parse().unwrap();
/// assert!(scopes.contains(&Scope::Metrics));
/// assert_eq!(scopes.to_string(), "user.metrics,user.activity");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Scopes(Vec<Scope>);

impl PartialEq for Scopes {
    fn eq(&self, other: &Self) -> bool {
        self.same_set(other)
    }
}

impl Eq for Scopes {}

impl std::hash::Hash for Scopes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().collect::<BTreeSet<_>>().hash(state);
    }
}

impl Scopes {
    /// No scope at all.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The four documented scopes.
    pub fn all() -> Self {
        [
            Scope::Info,
            Scope::Metrics,
            Scope::Activity,
            Scope::SleepEvents,
        ]
        .into_iter()
        .collect()
    }

    /// Adds a scope (ignored if already present); keeps insertion order.
    pub fn insert(&mut self, scope: Scope) {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Parses Withings' answer leniently: comma- or space-separated, empty items skipped.
    pub fn parse_granted(s: &str) -> Self {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter_map(|part| part.parse::<Scope>().ok())
            .collect()
    }

    /// The scopes of `self` missing from `granted`.
    pub fn missing_from(&self, granted: &Scopes) -> Scopes {
        self.0
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect()
    }

    /// Same scopes regardless of order.
    pub fn same_set(&self, other: &Scopes) -> bool {
        self.0.iter().collect::<BTreeSet<_>>() == other.0.iter().collect::<BTreeSet<_>>()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::empty();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

impl From<Scope> for Scopes {
    fn from(scope: Scope) -> Self {
        Scopes(vec![scope])
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for Scopes {
    type Err = InvalidScope;

    /// Strict parse of a comma-separated list (spaces around items allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(Scopes::empty());
        }
        s.split(',').map(str::parse::<Scope>).collect()
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Scopes::parse_granted(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_scopes_are_kept_verbatim() {
        let s = Scopes::parse_granted("user.metrics,user.future-thing");
        assert!(s.contains(&Scope::Other("user.future-thing".into())));
        assert_eq!(s.to_string(), "user.metrics,user.future-thing");
    }

    #[test]
    fn strict_parse_rejects_empty_items() {
        assert!("user.info,,user.metrics".parse::<Scopes>().is_err());
        assert!("user.info, user.metrics".parse::<Scopes>().is_ok());
    }

    #[test]
    fn granted_may_be_fewer() {
        let asked = Scopes::all();
        let granted = Scopes::parse_granted("user.activity,user.metrics");
        let missing = asked.missing_from(&granted);
        assert_eq!(missing.to_string(), "user.info,user.sleepevents");
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(items in proptest::collection::vec("[a-z._-]{1,20}", 0..6)) {
            let scopes: Scopes = items.iter().map(|s| s.parse::<Scope>().unwrap()).collect();
            let back: Scopes = scopes.to_string().parse().unwrap();
            prop_assert_eq!(back, scopes);
        }

        #[test]
        fn lenient_parse_never_panics(s in ".*") {
            let _ = Scopes::parse_granted(&s);
        }
    }
}
