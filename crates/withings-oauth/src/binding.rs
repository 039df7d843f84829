//! What ties a server-side login to its callback and to its browser: [`StateHash`], the key a
//! parked login is stored under, and [`BrowserBinding`], the random value a browser keeps in a
//! cookie so that only it can finish the login it started.
//!
//! Both are stored as SHA-256 hex digests: a store's content (a database dump, a backup) is not
//! enough to finish a login or to pass for the browser that started it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use crate::config::ConfigError;
use crate::secret::CsrfState;

/// Length of a SHA-256 digest in hex.
const HEX_LEN: usize = 64;

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn is_lower_hex_digest(text: &str) -> bool {
    text.len() == HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The SHA-256 (lowercase hex) of a login's `state`: the key a parked login is stored under,
/// found again from the callback's `state`.
///
/// Not a secret (the `state` can't be recovered from it), but not shown either: its `Debug`
/// prints only its first characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StateHash(String);

impl StateHash {
    /// The hash of `state`.
    pub fn of_state(state: &CsrfState) -> Self {
        Self(sha256_hex(state.expose_secret()))
    }

    /// The hash of the one `state` parameter of `callback`; `None` if it has none, or more than
    /// one (such a callback is refused anyway).
    pub fn of_callback(callback: &Url) -> Option<Self> {
        let mut states = callback.query_pairs().filter(|(k, _)| k == "state");
        let state = states.next()?;
        if states.next().is_some() || state.1.is_empty() {
            return None;
        }
        Some(Self(sha256_hex(&state.1)))
    }

    /// A hash read back from a store: 64 lowercase hex digits, `None` otherwise.
    pub fn from_hex(hex: &str) -> Option<Self> {
        is_lower_hex_digest(hex).then(|| Self(hex.to_owned()))
    }

    /// The 64 hex digits, to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateHash({}…)", &self.0[..8])
    }
}

/// The random value that binds a server-side login to the browser that started it, kept by
/// that browser in a cookie (see [`BrowserBinding::COOKIE_ATTRIBUTES`]).
///
/// Without it, an attacker could start a login with their own Withings account, stop at the
/// callback, and send its URL to a victim: the victim's browser would finish the login and the
/// victim's account in the application would be linked to the attacker's Withings data (login
/// CSRF, RFC 6749 §10.12). With it, a callback is accepted only from the browser holding the
/// cookie set when its login started.
///
/// 256 bits from the operating system's CSPRNG, base64url without padding (43 characters).
/// Stores keep only its [`hash`](Self::hash).
#[derive(Clone)]
pub struct BrowserBinding(CsrfState);

impl BrowserBinding {
    /// The attributes of the cookie that carries it: `HttpOnly` (scripts can't read it),
    /// `SameSite=Lax`, `Path=/`. Add `Secure` when the site is served over https.
    ///
    /// `SameSite=Lax`, not `Strict`: the callback is a navigation from Withings' site to this
    /// one, a cross-site request, and a browser sends a `Strict` cookie only on same-site
    /// requests: the callback would arrive without it and every login would fail as if it came
    /// from another browser. `Lax` cookies are sent on cross-site top-level `GET` navigations,
    /// which is what a callback is, and not on cross-site subrequests or `POST`s.
    pub const COOKIE_ATTRIBUTES: &'static str = "HttpOnly; SameSite=Lax; Path=/";

    /// A fresh binding.
    pub fn new_random() -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ConfigError::Random(e.to_string()))?;
        Ok(Self(CsrfState::new(URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// A binding read back from a cookie; `None` unless it has the shape of one this type
    /// makes (43 base64url characters), so that a cookie of any size or content is refused
    /// before anything else.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        let shaped = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Self(CsrfState::new(value)))
    }

    /// The value to put in the cookie.
    ///
    /// # Security
    /// Send it only in a `Set-Cookie` header to the browser it binds, with
    /// [`COOKIE_ATTRIBUTES`](Self::COOKIE_ATTRIBUTES); never log it.
    pub fn reveal_cookie_value(&self) -> &str {
        self.0.expose_secret()
    }

    /// Its hash, which stores keep.
    pub fn hash(&self) -> BindingHash {
        BindingHash(sha256_hex(self.0.expose_secret()))
    }
}

impl fmt::Debug for BrowserBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrowserBinding([redacted])")
    }
}

/// The SHA-256 (lowercase hex) of a [`BrowserBinding`]: what a pending-login store keeps and
/// compares. Compared in constant time; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct BindingHash(String);

impl BindingHash {
    /// A hash read back from a store: 64 lowercase hex digits, `None` otherwise.
    pub fn from_hex(hex: &str) -> Option<Self> {
        is_lower_hex_digest(hex).then(|| Self(hex.to_owned()))
    }

    /// The 64 hex digits, to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for BindingHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BindingHash {}

impl fmt::Debug for BindingHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingHash([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_hash_of_a_callback_is_the_hash_of_its_state() {
        let state = CsrfState::new("abc");
        // printf abc | sha256sum
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(StateHash::of_state(&state).as_str(), expected);
        let callback: Url = "https://app.example.com/cb?code=C&state=abc"
            .parse()
            .unwrap();
        assert_eq!(
            StateHash::of_callback(&callback),
            Some(StateHash::of_state(&state))
        );
        for refused in [
            "https://app.example.com/cb?code=C",
            "https://app.example.com/cb?code=C&state=",
            "https://app.example.com/cb?state=abc&state=abc",
        ] {
            assert_eq!(StateHash::of_callback(&refused.parse().unwrap()), None);
        }
        assert_eq!(
            StateHash::from_hex(expected),
            Some(StateHash::of_state(&state))
        );
        assert_eq!(StateHash::from_hex("ABC"), None);
        assert_eq!(
            format!("{:?}", StateHash::of_state(&state)),
            "StateHash(ba7816bf…)"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_callback_has_a_state_hash_only_with_exactly_one_non_empty_state(query in ".{0,200}") {
            let mut callback: Url = "https://app.example.com/cb".parse().unwrap();
            callback.set_query(Some(&query));
            let states: Vec<String> = callback
                .query_pairs()
                .filter(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .collect();
            let hash = StateHash::of_callback(&callback);
            match states.as_slice() {
                [one] if !one.is_empty() => proptest::prop_assert_eq!(
                    hash,
                    Some(StateHash::of_state(&CsrfState::new(one.as_str())))
                ),
                _ => proptest::prop_assert_eq!(hash, None),
            }
        }

        #[test]
        fn only_shaped_cookie_values_are_bindings(value in ".{0,60}") {
            if let Some(binding) = BrowserBinding::from_cookie_value(&value) {
                proptest::prop_assert_eq!(binding.reveal_cookie_value(), value.as_str());
                proptest::prop_assert_eq!(value.len(), 43);
                proptest::prop_assert!(
                    value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                );
            }
        }
    }

    #[test]
    fn bindings_are_random_shaped_and_never_shown() {
        let a = BrowserBinding::new_random().unwrap();
        let b = BrowserBinding::new_random().unwrap();
        assert_ne!(a.reveal_cookie_value(), b.reveal_cookie_value());
        assert_ne!(a.hash(), b.hash());
        let back = BrowserBinding::from_cookie_value(a.reveal_cookie_value()).unwrap();
        assert_eq!(back.hash(), a.hash());
        assert_eq!(BindingHash::from_hex(a.hash().as_str()).unwrap(), a.hash());
        assert!(BrowserBinding::from_cookie_value("short").is_none());
        assert!(BrowserBinding::from_cookie_value(&"é".repeat(43)).is_none());
        let shown = format!("{a:?} {:?}", a.hash());
        assert!(!shown.contains(a.reveal_cookie_value()));
        assert!(!shown.contains(a.hash().as_str()));
    }
}
