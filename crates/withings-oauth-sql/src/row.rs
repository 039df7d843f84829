//! What a row holds, and the way between it and [`Credentials`]: tokens sealed on the way in,
//! opened and checked on the way out, plaintext zeroized in between.

use std::mem;

use chrono::DateTime;
use withings_oauth::{
    Credentials, StoreError, StoreLocation, StoredCredentials, StoredEntry, UserId, Version,
    VersionedEntry,
};
use zeroize::Zeroizing;

use crate::keys::Keyring;
use crate::sealed::{self, ClearText, Column};

/// A user's row as read (tombstones are never read as entries): the columns of
/// [`LOAD`](crate::queries::LOAD), by name.
#[derive(Clone, sqlx::FromRow)]
pub(crate) struct RawRow {
    pub(crate) version: i64,
    pub(crate) login_required: bool,
    pub(crate) access_token: Option<Vec<u8>>,
    pub(crate) refresh_token: Option<Vec<u8>>,
    pub(crate) token_type: Option<String>,
    pub(crate) scopes: Option<String>,
    pub(crate) expires_at: Option<i64>,
}

/// A row of a gathered load: the user's id and the row.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub(crate) user_id: i64,
    #[sqlx(flatten)]
    pub(crate) row: RawRow,
}

/// Credentials ready to be written: tokens sealed for the version the write gives the row.
pub(crate) struct SealedCredentials {
    pub(crate) version: i64,
    pub(crate) access_token: Vec<u8>,
    pub(crate) refresh_token: Vec<u8>,
    pub(crate) key_id: Option<String>,
    pub(crate) token_type: String,
    pub(crate) scopes: String,
    pub(crate) expires_at: i64,
}

/// Seals `credentials` for `user`'s row at `version` with the active key (or in clear without
/// keys).
pub(crate) fn seal(
    keys: Option<&Keyring>,
    user: u64,
    version: i64,
    credentials: &Credentials,
) -> SealedCredentials {
    let mut stored = credentials.reveal_for_storage();
    let access = Zeroizing::new(mem::take(&mut stored.access_token));
    let refresh = Zeroizing::new(mem::take(&mut stored.refresh_token));
    SealedCredentials {
        version,
        access_token: sealed::seal(keys, user, version, Column::AccessToken, &access),
        refresh_token: sealed::seal(keys, user, version, Column::RefreshToken, &refresh),
        key_id: keys.map(|k| k.active_id().to_owned()),
        token_type: mem::take(&mut stored.token_type),
        scopes: stored.scopes.to_string(),
        expires_at: stored.expires_at.timestamp(),
    }
}

/// Binds a save's parameters to `query` ([`SAVE_ABSENT`](crate::queries::SAVE_ABSENT),
/// [`SAVE_VERSION`](crate::queries::SAVE_VERSION)): $1 user, $2 to $7 the sealed credentials,
/// $8 now.
pub(crate) fn bind_sealed<'q, DB>(
    query: sqlx::query::QueryScalar<'q, DB, i64, <DB as sqlx::Database>::Arguments<'q>>,
    user: i64,
    sealed: &'q SealedCredentials,
    now: i64,
) -> sqlx::query::QueryScalar<'q, DB, i64, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(user)
        .bind(sealed.access_token.as_slice())
        .bind(sealed.refresh_token.as_slice())
        .bind(sealed.key_id.as_deref())
        .bind(sealed.token_type.as_str())
        .bind(sealed.scopes.as_str())
        .bind(sealed.expires_at)
        .bind(now)
}

/// A damaged row: reported, never repaired or overwritten.
pub(crate) fn corrupt(shown: &str, user: UserId, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        location: StoreLocation::Database(shown.to_owned()),
        reason: format!("user {user}'s row: {reason}"),
    }
}

/// Turns a row into the entry it stores.
pub(crate) fn open(
    keys: Option<&Keyring>,
    shown: &str,
    user: UserId,
    row: RawRow,
) -> Result<VersionedEntry, StoreError> {
    let version = u64::try_from(row.version)
        .ok()
        .filter(|v| *v > 0)
        .map(Version::new)
        .ok_or_else(|| corrupt(shown, user, "its version is not positive"))?;
    if row.login_required {
        return Ok(VersionedEntry {
            version,
            entry: StoredEntry::LoginRequired,
        });
    }
    // From here the row has a version: a login that can't be read is named with it, so that a
    // new login can replace it and a forced logout remove it.
    let unreadable = |reason: String| StoreError::Unreadable {
        store: StoreLocation::Database(shown.to_owned()),
        user,
        version,
        reason,
    };
    let (Some(access), Some(refresh), Some(token_type), Some(scopes), Some(expires_at)) = (
        row.access_token,
        row.refresh_token,
        row.token_type,
        row.scopes,
        row.expires_at,
    ) else {
        return Err(unreadable("a column of its credentials is empty".into()));
    };
    let open = |column: Column, stored: &[u8]| {
        sealed::open(
            keys,
            user.get(),
            row.version,
            column,
            stored,
            ClearText::Refused,
        )
    };
    let mut access =
        open(Column::AccessToken, &access).map_err(|e| unreadable(format!("access token: {e}")))?;
    let mut refresh = open(Column::RefreshToken, &refresh)
        .map_err(|e| unreadable(format!("refresh token: {e}")))?;
    let scopes = scopes
        .parse()
        .map_err(|_| unreadable("its scopes are not readable".into()))?;
    let expires_at = DateTime::from_timestamp(expires_at, 0)
        .ok_or_else(|| unreadable("its expiry is out of range".into()))?;
    let stored = StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: user,
        access_token: mem::take(&mut *access),
        refresh_token: mem::take(&mut *refresh),
        expires_at,
        scopes,
        token_type,
    };
    let credentials = Credentials::from_stored(stored).map_err(|e| unreadable(e.to_string()))?;
    Ok(VersionedEntry {
        version,
        entry: StoredEntry::Credentials(credentials),
    })
}
