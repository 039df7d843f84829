//! The OAuth `state` parameter, which ties a callback to the login (and browser) that started
//! it: 256 bits from the operating system's CSPRNG, base64url without padding, compared in
//! constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::config::ConfigError;
use crate::secret::CsrfState;

/// Makes a fresh, unguessable `state` (43 URL-safe characters).
pub(crate) fn new_state() -> Result<CsrfState, ConfigError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ConfigError::Random(e.to_string()))?;
    Ok(CsrfState::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// Compares two states in constant time (for equal lengths).
pub(crate) fn same_state(expected: &str, got: &str) -> bool {
    expected.as_bytes().ct_eq(got.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_long_url_safe_and_distinct() {
        let a = new_state().unwrap();
        let b = new_state().unwrap();
        assert_eq!(a.expose_secret().len(), 43);
        assert!(
            a.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn comparison() {
        assert!(same_state("abc", "abc"));
        assert!(!same_state("abc", "abd"));
        assert!(!same_state("abc", "abcd"));
    }
}
