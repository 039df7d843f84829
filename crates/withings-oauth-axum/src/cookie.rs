//! The browser-binding cookie, encrypted and authenticated with the server's [`CookieKey`]: read
//! from `Cookie`, written with `Set-Cookie`.
//!
//! Its clear value is the binding, the time it was issued, and the owner it was issued to. A
//! cookie the server did not issue (planted by a sibling subdomain, or by a page of another
//! port on an http host) does not decrypt and is ignored; one issued to another owner, or too
//! long ago, is ignored too (the private jar authenticates the value, not the cookie's expiry,
//! hence the time inside).

use std::fmt;

use axum::http::header::{COOKIE, HeaderMap};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cookie::{Cookie, CookieJar, Key};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha512;
use withings_oauth::BrowserBinding;
use withings_oauth::chrono::{DateTime, TimeDelta, Utc};

/// The server's secret key for cookies: it encrypts and authenticates the login-binding cookie,
/// and [derives](Self::derive) keys for the application's other cookies (a session cookie, say).
///
/// Every instance of an application must use the same key, or a login started on one can't be
/// finished on another. Keep it in configuration (a file only the server can read, a secret
/// manager), never in the code or the repository; changing it signs every browser out of its
/// pending logins.
///
/// Its `Debug` shows nothing of it.
///
/// ```
/// use withings_oauth_axum::CookieKey;
///
/// let key = CookieKey::generate()?;
/// // To keep it (# Security: in a file only the server can read).
/// let stored = key.reveal_base64();
/// let again = CookieKey::from_base64(&stored)?;
/// assert_eq!(format!("{again:?}"), "CookieKey([redacted])");
/// assert!(CookieKey::from_base64("too short").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CookieKey {
    master: [u8; CookieKey::LEN],
}

/// Why a [`CookieKey`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieKeyError {
    /// The key is not base64 of exactly [`CookieKey::LEN`] bytes. The value is never shown.
    #[error(
        "the cookie key is not the base64 of {} random bytes: generate one (for example `openssl rand -base64 64`)",
        CookieKey::LEN
    )]
    Malformed,
    /// The operating system's random source failed.
    #[error("no random key could be generated ({0}): check the operating system's random source")]
    Random(String),
}

impl CookieKey {
    /// Its length in bytes.
    pub const LEN: usize = 64;

    /// A fresh random key.
    pub fn generate() -> Result<Self, CookieKeyError> {
        let mut master = [0u8; Self::LEN];
        getrandom::fill(&mut master).map_err(|e| CookieKeyError::Random(e.to_string()))?;
        Ok(Self { master })
    }

    /// The key from its base64 form (standard alphabet, padding optional, surrounding
    /// whitespace ignored): [`LEN`](Self::LEN) bytes.
    pub fn from_base64(text: &str) -> Result<Self, CookieKeyError> {
        let text = text.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .map_err(|_| CookieKeyError::Malformed)?;
        let master = bytes.try_into().map_err(|_| CookieKeyError::Malformed)?;
        Ok(Self { master })
    }

    /// Its base64 form, to store a generated key.
    ///
    /// # Security
    /// Whoever has it can forge the application's cookies: write it only where the server
    /// alone can read it; never log it.
    pub fn reveal_base64(&self) -> String {
        STANDARD.encode(self.master)
    }

    /// A key of its own for `purpose` (HMAC-SHA-512 of the purpose under this key), for a
    /// signed or private cookie jar of the application: a session cookie signed with
    /// `key.derive("session")`, say. Different purposes give unrelated keys.
    pub fn derive(&self, purpose: &str) -> Key {
        let mut mac =
            Hmac::<Sha512>::new_from_slice(&self.master).expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        Key::from(&mac.finalize().into_bytes())
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey([redacted])")
    }
}

/// The purpose of the binding cookie's key.
const BINDING_PURPOSE: &str = "withings-oauth-axum login binding";

/// The cookie's name: `__Host-` on https, which browsers accept only with `Secure`, `Path=/` and
/// no `Domain`, so a sibling subdomain can't plant its own binding.
pub(crate) fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-withings-login"
    } else {
        "withings-login"
    }
}

/// What the binding cookie holds, once decrypted.
pub(crate) struct IssuedBinding {
    pub(crate) binding: BrowserBinding,
    issued: DateTime<Utc>,
    owner: String,
}

impl IssuedBinding {
    /// A binding issued now to `owner`.
    pub(crate) fn new(binding: BrowserBinding, owner: &str, now: DateTime<Utc>) -> Self {
        Self {
            binding,
            issued: now,
            owner: owner.to_owned(),
        }
    }

    /// Whether it was issued to `owner` less than `lifetime` before `now` (and not after it).
    pub(crate) fn is_valid_for(
        &self,
        owner: &str,
        lifetime: TimeDelta,
        now: DateTime<Utc>,
    ) -> bool {
        self.owner == owner && self.issued <= now && now - self.issued < lifetime
    }

    fn clear_value(&self) -> String {
        format!(
            "{}.{}.{}",
            self.binding.reveal_cookie_value(),
            self.issued.timestamp(),
            self.owner
        )
    }

    fn from_clear_value(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '.');
        let binding = BrowserBinding::from_cookie_value(parts.next()?)?;
        let issued = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
        let owner = parts.next()?.to_owned();
        Some(Self {
            binding,
            issued,
            owner,
        })
    }
}

/// The binding cookie, with the server's key.
pub(crate) struct BindingCookie {
    key: Key,
    secure: bool,
}

impl BindingCookie {
    pub(crate) fn new(key: &CookieKey, secure: bool) -> Self {
        Self {
            key: key.derive(BINDING_PURPOSE),
            secure,
        }
    }

    /// The first cookie of the binding's name that this server issued. A browser may send
    /// several of one name (one planted with another path, say): each is tried, so a planted
    /// one can't hide the real one.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<IssuedBinding> {
        let name = cookie_name(self.secure);
        let jar = CookieJar::new();
        let private = jar.private(&self.key);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(key, _)| *key == name)
            .filter_map(|(_, value)| private.decrypt(Cookie::new(name, value.trim().to_owned())))
            .find_map(|cookie| IssuedBinding::from_clear_value(cookie.value()))
    }

    /// The `Set-Cookie` value for `issued`: a session cookie (the browser forgets it when it
    /// quits), `HttpOnly`, `SameSite=Lax` (see [`BrowserBinding::COOKIE_ATTRIBUTES`] for why not
    /// `Strict`), `Path=/`, `Secure` on https.
    pub(crate) fn set_cookie(&self, issued: &IssuedBinding) -> String {
        let name = cookie_name(self.secure);
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name, issued.clear_value()));
        let sealed = jar.get(name).map(Cookie::value).unwrap_or_default();
        format!(
            "{name}={sealed}; {}{}",
            BrowserBinding::COOKIE_ATTRIBUTES,
            if self.secure { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers
    }

    fn sent(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn an_issued_cookie_round_trips_and_says_lax_httponly_and_secure_on_https() {
        let key = CookieKey::generate().unwrap();
        let now = Utc::now();
        let binding = BrowserBinding::new_random().unwrap();
        let issued = IssuedBinding::new(binding.clone(), "alice", now);
        let cookie = BindingCookie::new(&key, true);
        let set = cookie.set_cookie(&issued);
        assert!(set.starts_with("__Host-withings-login="), "{set}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(
            !set.contains(binding.reveal_cookie_value()) && !set.contains("alice"),
            "the value is encrypted: {set}"
        );
        let plain = BindingCookie::new(&key, false);
        assert!(!plain.set_cookie(&issued).contains("Secure"));

        let read = cookie
            .read(&headers(&[
                "theme=dark; __Host-withings-login=junk",
                &sent(&set),
            ]))
            .expect("the issued cookie");
        assert_eq!(read.binding.hash(), binding.hash());
        let lifetime = TimeDelta::minutes(10);
        assert!(read.is_valid_for("alice", lifetime, now));
        assert!(!read.is_valid_for("bob", lifetime, now), "issued to alice");
        assert!(
            !read.is_valid_for("alice", lifetime, now + lifetime),
            "too old"
        );
        assert!(
            plain.read(&headers(&[&sent(&set)])).is_none(),
            "the https name differs"
        );
        assert!(cookie.read(&HeaderMap::new()).is_none());
    }

    #[test]
    fn a_cookie_the_server_did_not_issue_is_ignored() {
        let key = CookieKey::generate().unwrap();
        let cookie = BindingCookie::new(&key, false);
        let binding = BrowserBinding::new_random().unwrap();
        // A well-formed binding in clear, as an attacker would plant it.
        let planted = format!("withings-login={}", binding.reveal_cookie_value());
        assert!(cookie.read(&headers(&[&planted])).is_none());
        // A cookie of another server (another key).
        let other = BindingCookie::new(&CookieKey::generate().unwrap(), false);
        let foreign = other.set_cookie(&IssuedBinding::new(binding, "alice", Utc::now()));
        assert!(cookie.read(&headers(&[&sent(&foreign)])).is_none());
        // A planted cookie sent before the real one does not hide it.
        let real = IssuedBinding::new(BrowserBinding::new_random().unwrap(), "bob", Utc::now());
        let both = format!("{}; {}", sent(&foreign), sent(&cookie.set_cookie(&real)));
        let read = cookie.read(&headers(&[&both])).expect("the real cookie");
        assert_eq!(read.binding.hash(), real.binding.hash());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_keys_need_64_bytes() {
        let key = CookieKey::generate().unwrap();
        assert_ne!(key.derive("a").master(), key.derive("b").master());
        assert_eq!(key.derive("a").master(), key.derive("a").master());
        assert!(CookieKey::from_base64(&STANDARD.encode([7u8; 63])).is_err());
        assert!(CookieKey::from_base64(&STANDARD.encode([7u8; 65])).is_err());
        assert!(CookieKey::from_base64(&STANDARD.encode([7u8; 64])).is_ok());
        let error = CookieKey::from_base64("c2VjcmV0").unwrap_err().to_string();
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn any_cookie_header_gives_an_issued_binding_or_none(header in ".{0,300}") {
            let cookie = BindingCookie::new(&CookieKey::generate().unwrap(), false);
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("withings-login={header}")) {
                headers.insert(COOKIE, value);
            }
            proptest::prop_assert!(cookie.read(&headers).is_none());
        }
    }
}
