//! What the commands do, without the printing: the demo runs the same steps.

use chrono::{DateTime, TimeDelta, Utc};
use withings_oauth::{Client, Scopes, Unauthorized, UserAgent, UserId, login};
use withings_oauth::{Session, SessionError, StoredEntry};

use crate::error::{CliError, Kind};
use crate::store::{Store, store_error};

/// Why a user must log in again, from what the store holds for them: the words `status` shows
/// and the error of `token`, `refresh` and `revoke` says.
pub(crate) fn login_required_reason(entry: Option<&StoredEntry>) -> &'static str {
    match entry {
        Some(StoredEntry::LoginRequired) => "Withings refused the refresh token",
        None => "no login is stored for the user",
        // Another program logged the user in while this one failed: the store is newer.
        Some(StoredEntry::Credentials(_)) => "the stored login was replaced while this command ran",
    }
}

/// The error of a user who must log in again, for `reason`.
pub(crate) fn login_required(user: UserId, reason: &str) -> CliError {
    CliError::login_required(format!(
        "user {user} must log in again ({reason}): run `withings-oauth login`"
    ))
}

/// The session's error, saying what to do; a login required gets its precise reason from the
/// store.
pub(crate) async fn session_error_in(store: &Store, error: SessionError) -> CliError {
    match &error {
        SessionError::LoginRequired { user } => match store.load(*user).await {
            Ok(entry) => login_required(*user, login_required_reason(entry.as_ref())),
            Err(_) => session_error(error),
        },
        _ => session_error(error),
    }
}

/// The session's error, saying what to do.
pub(crate) fn session_error(error: SessionError) -> CliError {
    match &error {
        SessionError::LoginRequired { user } => login_required(
            *user,
            "the stored login is missing, or Withings refused its refresh token",
        ),
        SessionError::Store(e) => store_error(e),
        SessionError::TokensNotSaved(e) => CliError::store(format!(
            "the new tokens could not be saved ({}); the previous ones stay valid: fix the store and retry",
            store_error(e)
        )),
        SessionError::StartNotSaved { source, .. } => CliError::store(format!(
            "the login succeeded, but it could not be saved ({}): fix the store, then log in again",
            store_error(source)
        )),
        SessionError::Api(e) => {
            let mut cli = CliError::api("the call to Withings failed", e);
            if cli.kind() == Kind::Remote {
                cli = CliError::new(
                    Kind::Remote,
                    format!("{cli} (the stored credentials are unchanged)"),
                );
            }
            cli
        }
        _ => CliError::new(
            Kind::Remote,
            format!("{error}; the stored credentials are unchanged: retry"),
        ),
    }
}

/// Logs in with `agent` and saves the login before anything uses it. Returns the session and
/// the scopes asked for but not granted.
pub(crate) async fn log_in(
    client: &Client,
    scopes: Scopes,
    demo: bool,
    agent: &dyn UserAgent,
    store: &Store,
) -> Result<(Session, Scopes), CliError> {
    let mut unauthorized = Unauthorized::new(client, scopes.clone());
    if demo {
        unauthorized = unauthorized.demo_mode();
    }
    let authorized = login(unauthorized, agent)
        .await
        .map_err(|e| CliError::login(&e))?;
    let missing = scopes.missing_from(authorized.scopes());
    let session = Session::start(authorized, store.shared())
        .await
        .map_err(session_error)?;
    Ok((session, missing))
}

/// The stored session of `user`.
pub(crate) async fn session(
    client: &Client,
    store: &Store,
    user: UserId,
) -> Result<Session, CliError> {
    match Session::restore(client, store.shared(), user).await {
        Ok(session) => Ok(session),
        Err(e) => Err(session_error_in(store, e).await),
    }
}

/// How long until `at`, for people: "valid until ... (2h 59m left)" or "expired at ... (3m ago)".
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

/// `[redacted, 40 chars]`: enough to see a token exists, nothing more.
pub(crate) fn redacted(token: &str) -> String {
    format!("[redacted, {} chars]", token.chars().count())
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
        assert_eq!(redacted("abcdef0123456789"), "[redacted, 16 chars]");
    }

    #[test]
    fn a_dead_login_tells_to_log_in() {
        let e = session_error(SessionError::LoginRequired {
            user: UserId::new(5),
        });
        assert_eq!(e.kind(), Kind::LoginRequired);
        assert!(e.to_string().contains("withings-oauth login"));
    }
}
