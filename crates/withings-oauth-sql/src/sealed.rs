//! The stored form of a token: a versioned byte format that names the key that sealed it, with
//! the user, the row's version and the column bound in as associated data.
//!
//! ```text
//! clear:   0x00 | token bytes                                    (no key configured)
//! sealed:  0x02 | id length (1 byte) | key id | 24-byte nonce | XChaCha20-Poly1305(token) | tag
//! associated data: the header above (up to the nonce) | "withings-oauth-sql" 0 | column 0 | row
//! row: the user id and the row's version (8 bytes each, big-endian) for tokens; every column
//!      of its row for the `state` of a pending login
//! ```
//!
//! Binding the column and the row means a ciphertext copied onto another row or column fails
//! authentication instead of handing one user's tokens to another; binding the version means an
//! older ciphertext of the same user, written back over a newer row, does not open either (a
//! rollback to a revoked pair). A store with keys refuses a value in clear text: only a program
//! without keys writes one, and an encrypted database refuses those programs.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::keys::Keyring;

const CLEAR: u8 = 0;
const XCHACHA: u8 = 2;
const NONCE_LEN: usize = 24;

/// The column a sealed value lives in: part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    AccessToken,
    RefreshToken,
    /// The `state` of a pending login.
    PendingState,
}

impl Column {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Column::AccessToken => "access_token",
            Column::RefreshToken => "refresh_token",
            Column::PendingState => "pending_state",
        }
    }
}

/// Why a stored value can't be opened. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Sealed with a key that is not loaded.
    UnknownKey(String),
    /// Sealed, but no key is configured.
    NoKeys(String),
    /// The tag did not verify: wrong key bytes, an altered value, or a value copied from
    /// another row or column.
    Authentication(String),
    /// Not a format this version reads, or cut short.
    Malformed(&'static str),
    /// In clear text, where keys are configured.
    Clear,
}

/// Whether a value in clear text may be opened by a store with keys: only by the step that
/// seals a database's clear rows once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClearText {
    Refused,
    Accepted,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::UnknownKey(id) => write!(
                f,
                "it was encrypted with key `{id}`, which is not loaded: add that key to {} (after the active one)",
                crate::keys::KEYS_ENV
            ),
            OpenError::NoKeys(id) => write!(
                f,
                "it was encrypted with key `{id}` but no key is configured: set {}",
                crate::keys::KEYS_ENV
            ),
            OpenError::Authentication(id) => write!(
                f,
                "its ciphertext failed authentication with key `{id}` (a wrong key under that id, or the value was altered or copied from another row)"
            ),
            OpenError::Malformed(why) => write!(f, "its stored token is not readable ({why})"),
            OpenError::Clear => f.write_str(
                "it is in clear text although this store has keys: written by a program without keys, or planted",
            ),
        }
    }
}

fn associated_data(header: &[u8], column: Column, row: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 40 + row.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(b"withings-oauth-sql\0");
    aad.extend_from_slice(column.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(row);
    aad
}

/// What a token is bound to: its user and the version of the row it is written with.
fn token_row(user: u64, version: i64) -> [u8; 16] {
    let mut row = [0u8; 16];
    row[..8].copy_from_slice(&user.to_be_bytes());
    row[8..].copy_from_slice(&version.to_be_bytes());
    row
}

/// Seals `token` for `user`'s `column` at `version` with the active key, or stores it in clear
/// without keys.
pub(crate) fn seal(
    keys: Option<&Keyring>,
    user: u64,
    version: i64,
    column: Column,
    token: &str,
) -> Vec<u8> {
    seal_for_row(keys, &token_row(user, version), column, token)
}

/// Opens a stored value of `user`'s `column` at `version` into its token, zeroizing every
/// intermediate copy.
pub(crate) fn open(
    keys: Option<&Keyring>,
    user: u64,
    version: i64,
    column: Column,
    stored: &[u8],
    clear: ClearText,
) -> Result<Zeroizing<String>, OpenError> {
    open_for_row(keys, &token_row(user, version), column, stored, clear)
}

/// Seals `value` for the row named by `row` (see the module docs) with the active key, or
/// stores it in clear without keys.
pub(crate) fn seal_for_row(
    keys: Option<&Keyring>,
    row: &[u8],
    column: Column,
    token: &str,
) -> Vec<u8> {
    let Some(keys) = keys else {
        let mut out = Vec::with_capacity(1 + token.len());
        out.push(CLEAR);
        out.extend_from_slice(token.as_bytes());
        return out;
    };
    let (id, key) = keys.active();
    let mut header = Vec::with_capacity(2 + id.len());
    header.push(XCHACHA);
    header.push(id.len() as u8); // ids are at most 32 bytes (checked when parsed)
    header.extend_from_slice(id.as_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    // 192 random bits: collisions are not a concern at any realistic number of writes.
    getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
    let aad = associated_data(&header, column, row);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: token.as_bytes(),
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption of a short message can't fail");
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a value stored for the row named by `row`, zeroizing every intermediate copy.
pub(crate) fn open_for_row(
    keys: Option<&Keyring>,
    row: &[u8],
    column: Column,
    stored: &[u8],
    clear: ClearText,
) -> Result<Zeroizing<String>, OpenError> {
    let plain: Zeroizing<Vec<u8>> = match stored {
        [CLEAR, ..] if keys.is_some() && clear == ClearText::Refused => {
            return Err(OpenError::Clear);
        }
        [CLEAR, token @ ..] => Zeroizing::new(token.to_vec()),
        [XCHACHA, len, rest @ ..] => {
            let len = usize::from(*len);
            let (id, rest) = (rest.get(..len), rest.get(len..));
            let (Some(id), Some(rest)) = (id, rest) else {
                return Err(OpenError::Malformed("cut short"));
            };
            let id = std::str::from_utf8(id).map_err(|_| OpenError::Malformed("bad key id"))?;
            if rest.len() < NONCE_LEN + 16 {
                return Err(OpenError::Malformed("cut short"));
            }
            let keys = keys.ok_or_else(|| OpenError::NoKeys(id.to_owned()))?;
            let key = keys
                .get(id)
                .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
            let (nonce, sealed) = rest.split_at(NONCE_LEN);
            let aad = associated_data(&stored[..2 + len], column, row);
            let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
            Zeroizing::new(
                cipher
                    .decrypt(
                        XNonce::from_slice(nonce),
                        Payload {
                            msg: sealed,
                            aad: &aad,
                        },
                    )
                    .map_err(|_| OpenError::Authentication(id.to_owned()))?,
            )
        }
        [] => return Err(OpenError::Malformed("empty")),
        _ => return Err(OpenError::Malformed("unknown format")),
    };
    let text = std::str::from_utf8(&plain).map_err(|_| OpenError::Malformed("not text"))?;
    let mut token = Zeroizing::new(String::with_capacity(text.len()));
    token.push_str(text);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &str) -> Keyring {
        Keyring::parse(spec).unwrap()
    }

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn a_sealed_token_opens_only_for_its_user_and_column() {
        let ring = keys(K1);
        let sealed = seal(Some(&ring), 7, 1, Column::RefreshToken, "refresh-secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let opened = open(
            Some(&ring),
            7,
            1,
            Column::RefreshToken,
            &sealed,
            ClearText::Refused,
        )
        .unwrap();
        assert_eq!(opened.as_str(), "refresh-secret");
        for (user, version, column) in [
            (8, 1, Column::RefreshToken),
            (7, 1, Column::AccessToken),
            (7, 2, Column::RefreshToken),
        ] {
            assert_eq!(
                open(
                    Some(&ring),
                    user,
                    version,
                    column,
                    &sealed,
                    ClearText::Refused
                ),
                Err(OpenError::Authentication("k1".into()))
            );
        }
    }

    #[test]
    fn an_older_key_still_opens_what_it_sealed_and_a_missing_one_is_named() {
        let old = seal(Some(&keys(K1)), 7, 1, Column::AccessToken, "a");
        let rotated = keys(&format!("{K2},{K1}"));
        assert_eq!(
            open(
                Some(&rotated),
                7,
                1,
                Column::AccessToken,
                &old,
                ClearText::Refused
            )
            .unwrap()
            .as_str(),
            "a"
        );
        assert_eq!(
            open(
                Some(&keys(K2)),
                7,
                1,
                Column::AccessToken,
                &old,
                ClearText::Refused
            ),
            Err(OpenError::UnknownKey("k1".into()))
        );
        assert_eq!(
            open(None, 7, 1, Column::AccessToken, &old, ClearText::Refused),
            Err(OpenError::NoKeys("k1".into()))
        );
    }

    #[test]
    fn a_key_swapped_under_the_same_id_fails_authentication() {
        let sealed = seal(Some(&keys(K1)), 7, 1, Column::AccessToken, "a");
        let impostor = keys(&K2.replace("k2", "k1"));
        assert_eq!(
            open(
                Some(&impostor),
                7,
                1,
                Column::AccessToken,
                &sealed,
                ClearText::Refused
            ),
            Err(OpenError::Authentication("k1".into()))
        );
    }

    #[test]
    fn clear_values_round_trip_and_damaged_ones_are_refused() {
        let clear = seal(None, 7, 1, Column::AccessToken, "token");
        assert_eq!(
            open(None, 7, 1, Column::AccessToken, &clear, ClearText::Refused)
                .unwrap()
                .as_str(),
            "token"
        );
        let mut cut = seal(Some(&keys(K1)), 7, 1, Column::AccessToken, "token");
        cut.truncate(10);
        assert!(matches!(
            open(
                Some(&keys(K1)),
                7,
                1,
                Column::AccessToken,
                &cut,
                ClearText::Refused
            ),
            Err(OpenError::Malformed(_))
        ));
        assert!(matches!(
            open(
                None,
                7,
                1,
                Column::AccessToken,
                &[9, 1, 2],
                ClearText::Refused
            ),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn a_store_with_keys_opens_clear_text_only_when_sealing_a_clear_database() {
        let clear = seal(None, 7, 1, Column::AccessToken, "token");
        let ring = keys(K1);
        assert_eq!(
            open(
                Some(&ring),
                7,
                1,
                Column::AccessToken,
                &clear,
                ClearText::Refused
            ),
            Err(OpenError::Clear)
        );
        let opened = open(
            Some(&ring),
            7,
            1,
            Column::AccessToken,
            &clear,
            ClearText::Accepted,
        );
        assert_eq!(opened.unwrap().as_str(), "token");
    }

    #[test]
    fn bad_key_specs_are_refused_without_showing_the_key() {
        for spec in [
            "",
            "k1",
            "k1:not-base64!",
            "k1:AAAA",
            "bad id:AAAA",
            &format!("{K1},{K1}"),
        ] {
            let error = Keyring::parse(spec).unwrap_err().to_string();
            assert!(!error.contains("AAEC"), "{error}");
        }
    }
}
