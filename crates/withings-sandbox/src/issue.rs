//! Tokens minted without a login, for tests that need many logged-in users at once (see
//! [`SandboxHandle::issue_tokens`](crate::SandboxHandle::issue_tokens)).

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::DEMO_USERID;
use crate::clock::later;
use crate::state::Inner;

/// An access/refresh pair minted by
/// [`SandboxHandle::issue_tokens`](crate::SandboxHandle::issue_tokens), as a code exchange
/// would have answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedTokens {
    /// The user the pair belongs to.
    pub userid: u64,
    /// Bearer token for data calls.
    pub access_token: String,
    /// Token for `grant_type=refresh_token`; it lives as long as a logged-in user's.
    pub refresh_token: String,
    /// The access token's lifetime in whole seconds, as `expires_in` in an envelope.
    pub expires_in: u64,
    /// When the access token stops being accepted (sandbox clock).
    pub expires_at: SystemTime,
    /// Granted scopes, in the order asked, without duplicates.
    pub scopes: Vec<String>,
}

/// Why [`SandboxHandle::issue_tokens`](crate::SandboxHandle::issue_tokens) minted nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    /// No app is registered with this client id.
    UnknownClient,
    /// No user has this user id (the demo user, [`DEMO_USERID`], always exists).
    UnknownUser,
    /// The scope list is empty or names a scope outside
    /// [`KNOWN_SCOPES`](crate::KNOWN_SCOPES).
    InvalidScope,
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownClient => "no app is registered with this client id: register it first",
            Self::UnknownUser => {
                "no user has this user id: add it to the config (with_user, seed_users) first"
            }
            Self::InvalidScope => "the scopes must be one or more of KNOWN_SCOPES",
        })
    }
}

impl std::error::Error for IssueError {}

impl Inner {
    /// Issues a pair for `userid` and `client_id` as a code exchange would, with an access
    /// token living `expires_in` from `now`. Nothing is counted: no request was made.
    pub(crate) fn issue_tokens(
        &mut self,
        userid: u64,
        client_id: &str,
        scopes: &[&str],
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<IssuedTokens, IssueError> {
        "minted".clone_into(&mut self.agent);
        if !self.apps.contains_key(client_id) {
            return Err(IssueError::UnknownClient);
        }
        if userid != DEMO_USERID && !self.users.iter().any(|u| u.userid == userid) {
            return Err(IssueError::UnknownUser);
        }
        let scopes =
            crate::wire::parse_scopes(&scopes.join(",")).ok_or(IssueError::InvalidScope)?;
        let pair = self.issue_pair_lasting(client_id, userid, scopes, None, expires_in, now);
        Ok(IssuedTokens {
            userid,
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            expires_in: pair.expires_in,
            expires_at: later(now, expires_in),
            scopes: pair.scopes,
        })
    }
}

/// `logins` as the credential store file of the `withings-oauth` command line (its format 2:
/// one entry per user, each at version 1), so that a test can hand a fleet of logins to the
/// command line without logging each one in.
pub(crate) fn store_file(logins: &[IssuedTokens]) -> Value {
    let users: serde_json::Map<String, Value> = logins
        .iter()
        .map(|t| {
            let expires_at =
                DateTime::<Utc>::from(t.expires_at).to_rfc3339_opts(SecondsFormat::Secs, true);
            let entry = json!({
                "version": 1,
                "credentials": {
                    "format": 1,
                    "user_id": t.userid,
                    "access_token": t.access_token,
                    "refresh_token": t.refresh_token,
                    "expires_at": expires_at,
                    "scopes": t.scopes.join(","),
                    "token_type": "Bearer",
                },
            });
            (t.userid.to_string(), entry)
        })
        .collect();
    json!({ "format": 2, "last_version": 1, "users": users })
}
