//! What the fleet's tests share.

use chrono::{DateTime, Utc};
use withings_oauth::{Credentials, UserId, testing};
use withings_sandbox::{DEFAULT_CLIENT_ID, Sandbox};

/// The login the sandbox issues now to `user` (scope `user.metrics`, an hour), as stored
/// credentials that say they expire at `expires_at`.
pub(crate) fn issued_login(
    sandbox: &Sandbox,
    user: UserId,
    expires_at: DateTime<Utc>,
) -> Credentials {
    let issued = sandbox
        .handle()
        .issue_tokens(
            user.get(),
            DEFAULT_CLIENT_ID,
            &["user.metrics"],
            std::time::Duration::from_secs(3600),
        )
        .expect("tokens for a seeded user");
    testing::credentials(
        user,
        &issued.access_token,
        &issued.refresh_token,
        expires_at,
    )
}
