//! What the command line's tests share: the binary, run against a sandbox with nothing from the
//! real environment (home, configuration, store).

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use withings_oauth::{Credentials, UserId, testing};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox};

pub const BIN: &str = env!("CARGO_BIN_EXE_withings-oauth");

/// The binary with `args`, configured for `sandbox` and the store `store` (a file or a
/// database URL), its home in `home`.
pub fn command(home: &Path, sandbox: &Sandbox, store: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("WITHINGS_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("WITHINGS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env(
            "WITHINGS_REDIRECT_URI",
            "https://app.example.com/withings/callback",
        )
        .env("WITHINGS_BASE_URL", sandbox.base_url().as_str())
        .env("WITHINGS_STORE", store);
    cmd
}

/// Output bytes as text, for messages and searches.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The login the sandbox issues now to `user` (scope `user.metrics`, an hour), as stored
/// credentials that say they expire at `expires_at`.
pub fn issued_login(sandbox: &Sandbox, user: UserId, expires_at: DateTime<Utc>) -> Credentials {
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
