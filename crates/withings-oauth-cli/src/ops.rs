//! What the commands do, without the printing: the demo runs the same steps.

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use withings_oauth::{
    Authorized, Client, Credentials, Scopes, Unauthorized, UserAgent, UserId, login,
};

use crate::error::CliError;
use crate::store::Store;

/// A token expiring sooner than this is refreshed first, so a script gets minutes of use.
pub(crate) const REFRESH_MARGIN: TimeDelta = TimeDelta::minutes(5);

/// Logs in with `agent` and saves the credentials. Returns them and the scopes not granted.
pub(crate) async fn log_in(
    client: &Client,
    scopes: Scopes,
    demo: bool,
    agent: &dyn UserAgent,
    store: &Store,
) -> Result<(Credentials, Scopes), CliError> {
    let mut unauthorized = Unauthorized::new(client, scopes.clone());
    if demo {
        unauthorized = unauthorized.demo_mode();
    }
    let authorized = login(unauthorized, agent)
        .await
        .map_err(|e| CliError::login(&e))?;
    let credentials = authorized.into_credentials();
    store.save(&credentials).map_err(|e| {
        CliError::new(
            e.kind(),
            format!("{e} (the login succeeded, but its credentials could not be saved: fix the store and log in again)"),
        )
    })?;
    let missing = scopes.missing_from(credentials.scopes());
    Ok((credentials, missing))
}

/// The stored credentials of `user`.
pub(crate) fn stored(store: &Store, user: UserId) -> Result<Credentials, CliError> {
    store.load(user)?.ok_or_else(|| {
        CliError::login_required(format!(
            "user {user} has no stored credentials in {}: run `withings-oauth login`",
            store.path().display()
        ))
    })
}

/// Refreshes `user`'s tokens and saves the new pair before anything can use it.
pub(crate) async fn refresh(
    client: &Client,
    store: &Store,
    user: UserId,
) -> Result<Credentials, CliError> {
    let credentials = stored(store, user)?;
    let fresh = Authorized::restore_from_stored(client, credentials)
        .refresh()
        .await
        .map_err(|e| CliError::refresh(user, &e))?
        .into_credentials();
    store.save(&fresh).map_err(|e| {
        CliError::new(
            e.kind(),
            format!("{e} (the new tokens could not be saved; the previous ones stay valid for 8 hours, as long as the new access token is not used)"),
        )
    })?;
    Ok(fresh)
}

/// A valid access token of `user`, refreshed (and saved) first if it expires soon.
/// Returns the token and whether it was refreshed.
pub(crate) async fn access_token(
    client: &Client,
    store: &Store,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<(SecretString, bool), CliError> {
    let credentials = stored(store, user)?;
    if !credentials.expires_within(REFRESH_MARGIN, now) {
        return Ok((credentials.access_token().clone(), false));
    }
    let fresh = refresh(client, store, user).await?;
    Ok((fresh.access_token().clone(), true))
}

/// Revokes `user`'s access at Withings, then deletes the local credentials.
pub(crate) async fn revoke(client: &Client, store: &Store, user: UserId) -> Result<(), CliError> {
    let credentials = stored(store, user)?;
    Authorized::restore_from_stored(client, credentials)
        .revoke()
        .await
        .map_err(|e| {
            CliError::api(
                "revoking access failed (the local credentials are kept)",
                &e.source,
            )
        })?;
    store.remove(user).map_err(|e| {
        CliError::new(
            e.kind(),
            format!("{e} (access was revoked at Withings, but the dead credentials are still in the store: run `withings-oauth logout`)"),
        )
    })?;
    Ok(())
}

/// How long until `at`, for people: "2h 59m", "45s", or "expired 3m ago".
pub(crate) fn describe_expiry(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let human = |d: TimeDelta| {
        let s = d.num_seconds();
        match s {
            s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
            s if s >= 60 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    };
    let at_text = at.format("%Y-%m-%d %H:%M:%S UTC");
    if at > now {
        format!("valid until {at_text} ({} left)", human(at - now))
    } else {
        format!("expired at {at_text} ({} ago)", human(now - at))
    }
}

/// `[redacted, 40 chars]`: enough to see a token exists and changed length, nothing more.
pub(crate) fn redacted(token: &SecretString) -> String {
    use secrecy::ExposeSecret;
    format!(
        "[redacted, {} chars]",
        token.expose_secret().chars().count()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_naturally() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            describe_expiry(now + TimeDelta::seconds(10_799), now),
            "valid until 2026-01-01 14:59:59 UTC (2h 59m left)"
        );
        assert_eq!(
            describe_expiry(now - TimeDelta::seconds(90), now),
            "expired at 2026-01-01 11:58:30 UTC (1m ago)"
        );
    }

    #[test]
    fn redaction_shows_only_the_length() {
        let token = SecretString::from("abcdef0123456789");
        assert_eq!(redacted(&token), "[redacted, 16 chars]");
    }
}
