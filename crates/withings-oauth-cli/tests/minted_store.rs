//! Logins minted in bulk by the sandbox's admin API, in the store's format, are the command
//! line's own: `fleet status` counts them and `token` refreshes one.

mod common;

use std::path::Path;
use std::process::Output;

use common::text;
use serde_json::{Value, json};
use withings_sandbox::{Sandbox, SandboxConfig, User};

fn run(home: &Path, sandbox: &Sandbox, store: &Path, args: &[&str]) -> Output {
    common::command(home, sandbox, store, args)
        .output()
        .unwrap()
}

/// Writes `contents` readable by its owner only, as the store asks of its file.
fn write_private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_minted_as_a_store_file_are_counted_and_refreshed() {
    let sandbox = Sandbox::start(SandboxConfig::default().admin_api(true))
        .await
        .unwrap();
    let file: Value = reqwest::Client::new()
        .post(sandbox.base_url().join("admin/logins").unwrap())
        .json(&json!({ "count": 3, "format": "store", "expires_in": 0 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("tokens.json");
    write_private(&store, file.to_string().as_bytes());

    let out = run(
        home.path(),
        &sandbox,
        &store,
        &["fleet", "status", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["users"], 3, "{status}");
    assert_eq!(status["expired"], 3, "minted already expired: {status}");

    let user = User::numbered(2).userid;
    let out = run(
        home.path(),
        &sandbox,
        &store,
        &["--user", &user.to_string(), "token"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let minted = file["users"][user.to_string()]["credentials"]["access_token"]
        .as_str()
        .unwrap();
    assert_eq!(printed.trim().len(), 40, "an access token");
    assert_ne!(printed.trim(), minted, "the expired one was refreshed");
    assert_eq!(sandbox.handle().counters().user(user).refresh_granted, 1);
}
