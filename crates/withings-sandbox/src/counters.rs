//! What the clients did: request counters, in total and per user.

use std::collections::BTreeMap;

use serde::Serialize;

/// How many requests of each kind the sandbox answered since start (or the last
/// [`SandboxHandle::reset_counters`](crate::SandboxHandle::reset_counters)).
///
/// Request counters count every outcome; `*_rejected` count the requests answered with the
/// matching error. Requests answered by a fault (other than [`Fault::Delay`](crate::Fault))
/// or by the rate limit count only in `faults_applied` / `rate_limited`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// `GET /oauth2_user/authorize2` requests.
    pub authorize_page: u64,
    /// Authorizations granted (form Allow with valid credentials, or auto-approve).
    pub authorize_allow: u64,
    /// Authorizations denied on the consent page.
    pub authorize_deny: u64,
    /// `requesttoken` with `grant_type=authorization_code`.
    pub token_code: u64,
    /// `requesttoken` with `grant_type=refresh_token`.
    pub token_refresh: u64,
    /// Refreshes answered `Invalid Params: invalid refresh_token`.
    pub refresh_rejected: u64,
    /// Refreshes that returned a new pair.
    pub refresh_granted: u64,
    /// Refreshes with a refresh token already rotated away but still inside its grace
    /// period: granted, and a sign that two refreshes raced or a rotated pair was lost.
    pub refresh_in_grace: u64,
    /// Refreshes refused because the refresh token had been rotated away and then died (its
    /// successor's access token was used, or the grace period ended). Counted within
    /// `refresh_rejected`. The client lost or failed to store a rotated pair.
    pub refresh_dead_token: u64,
    /// Refreshes that presented a refresh token already rotated away (exchanged once for a
    /// newer pair) by its own client, whatever came of it: granted inside its grace period,
    /// refused because it had died, or, with
    /// [strict rotation](crate::SandboxConfig::strict_rotation), refused together with its
    /// whole chain. Zero means the client never presented a rotated refresh token twice.
    pub rotated_refresh_reused: u64,
    /// Grants ended by [strict rotation](crate::SandboxConfig::strict_rotation): a rotated
    /// refresh token was presented again while its chain still had a live refresh token, so
    /// every token of the chain was revoked.
    pub chains_killed: u64,
    /// Code exchanges answered `Invalid Params: invalid code`.
    pub code_rejected: u64,
    /// Code exchanges that returned tokens.
    pub code_granted: u64,
    /// `getnonce` requests.
    pub getnonce: u64,
    /// `revoke` requests.
    pub revoke: u64,
    /// `getdemoaccess` requests.
    pub demo_access: u64,
    /// `/measure` requests.
    pub measure: u64,
    /// `/measure` requests answered with status 401 because of the access token.
    pub measure_rejected: u64,
    /// Requests to any data service (`/measure`, `/v2/measure`, `/v2/user`, `/v2/sleep`,
    /// `/v2/heart`, `/notify`).
    pub data_calls: u64,
    /// Data requests answered with status 401 because of the access token (unknown, expired,
    /// revoked or missing).
    pub data_rejected: u64,
    /// Data requests whose access token was accepted (whatever the service answered then).
    pub data_served: u64,
    /// Notifications POSTed to a callback URL that answered HTTP 200.
    pub notifications_sent: u64,
    /// Notifications whose callback URL did not answer HTTP 200 in time.
    pub notifications_failed: u64,
    /// Requests answered with status 601.
    pub rate_limited: u64,
    /// Requests a fault was applied to.
    pub faults_applied: u64,
    /// The counters per user id, for the users who logged in, refreshed or called a data
    /// service at least once.
    pub users: BTreeMap<u64, UserCounters>,
}

impl Counters {
    /// The counters of `userid`, zero if it did nothing.
    pub fn user(&self, userid: u64) -> UserCounters {
        self.users.get(&userid).copied().unwrap_or_default()
    }

    /// Counts a code exchange that returned tokens for `userid`.
    pub(crate) fn count_code_granted(&mut self, userid: u64) {
        self.code_granted += 1;
        self.users.entry(userid).or_default().code_granted += 1;
    }

    /// Counts a data request whose access token of `userid` was accepted.
    pub(crate) fn count_data_served(&mut self, userid: u64) {
        self.data_served += 1;
        self.users.entry(userid).or_default().data_served += 1;
    }

    /// Counts a refresh of `userid` in its counters and in the totals.
    pub(crate) fn count_refresh(&mut self, userid: u64, outcome: RefreshOutcome) {
        let user = self.users.entry(userid).or_default();
        match outcome {
            RefreshOutcome::Granted { in_grace } => {
                user.refresh_granted += 1;
                self.refresh_granted += 1;
                if in_grace {
                    user.refresh_in_grace += 1;
                    self.refresh_in_grace += 1;
                    user.rotated_refresh_reused += 1;
                    self.rotated_refresh_reused += 1;
                }
            }
            RefreshOutcome::DeadToken => {
                user.refresh_dead_token += 1;
                self.refresh_dead_token += 1;
                user.rotated_refresh_reused += 1;
                self.rotated_refresh_reused += 1;
            }
            RefreshOutcome::Reused { killed } => {
                user.rotated_refresh_reused += 1;
                self.rotated_refresh_reused += 1;
                if killed {
                    user.chains_killed += 1;
                    self.chains_killed += 1;
                }
            }
        }
    }
}

/// How a refresh with a known refresh token ended, for [`Counters::count_refresh`].
pub(crate) enum RefreshOutcome {
    /// A new pair; `in_grace` if the token had already been rotated away.
    Granted { in_grace: bool },
    /// Refused: the token had been rotated away and then died.
    DeadToken,
    /// Refused under strict rotation: the token had been rotated away; `killed` if its chain
    /// was still alive and has now been revoked.
    Reused { killed: bool },
}

/// The counters of one user, as in [`Counters::users`]; each is counted in the total of the
/// same name in [`Counters`] too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserCounters {
    /// Code exchanges that returned tokens.
    pub code_granted: u64,
    /// Data requests whose access token was accepted.
    pub data_served: u64,
    /// Refreshes that returned a new pair.
    pub refresh_granted: u64,
    /// Granted refreshes with a refresh token already rotated away, inside its grace period.
    pub refresh_in_grace: u64,
    /// Refreshes refused because the refresh token had been rotated away and then died.
    pub refresh_dead_token: u64,
    /// Refreshes that presented a refresh token already rotated away, whatever came of it.
    pub rotated_refresh_reused: u64,
    /// Grants ended by strict rotation.
    pub chains_killed: u64,
}
