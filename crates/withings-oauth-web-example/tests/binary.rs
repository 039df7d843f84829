//! The binary: one command starts the example with its embedded sandbox and its SQLite file in
//! the current directory, and prints the address to open, where the users' page is served; a
//! database URL it can't use stops it with a message that says so.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_the_address_to_open_and_serves_the_users_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
        .current_dir(dir.path())
        .env_remove("WITHINGS_CLIENT_ID")
        .env_remove("WITHINGS_BASE_URL")
        .env_remove("WITHINGS_WEB_DATABASE")
        .env_remove("WITHINGS_WEB_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("its stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("it prints the address within 30 s")
        .expect("its stdout can be read")
        .expect("a line");
    let address = line
        .strip_prefix("open ")
        .unwrap_or_else(|| panic!("{line:?} says what to open"));
    assert!(address.starts_with("http://127.0.0.1:"), "{address}");
    assert!(address.ends_with('/'), "{address}");

    let page = reqwest::get(address)
        .await
        .expect("the page answers")
        .text()
        .await
        .expect("a page");
    for user in withings_oauth_web_example::DEMO_USERS {
        assert!(page.contains(&format!("id=\"connect-{user}\"")), "{page}");
    }
    assert!(
        page.contains("user1@example.com"),
        "the sandbox accounts are listed"
    );
    assert!(
        dir.path().join("withings-web-example.db").is_file(),
        "the default database is a SQLite file in the current directory"
    );
    child.start_kill().expect("stopping the binary");
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_it_cannot_use_stops_it_with_a_reason() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
        .args(["--database", "mysql://app@db/withings"])
        .env_remove("WITHINGS_CLIENT_ID")
        .env_remove("WITHINGS_BASE_URL")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sqlite://"), "{stderr}");
    assert!(stderr.contains("postgres://"), "{stderr}");
    assert!(output.stdout.is_empty(), "no address to open");
}
