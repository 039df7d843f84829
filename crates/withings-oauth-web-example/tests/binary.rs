//! The binary: one command starts the example with its embedded sandbox and its SQLite file in
//! the current directory, and prints the address to open, where the sign-in page is served with
//! the demo accounts; `--help` lists every setting with its variable; a database URL it can't
//! use, or PostgreSQL without a cookie key, stops it with a message that says so.

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
        .env_remove("WITHINGS_WEB_COOKIE_KEY")
        .env_remove("WITHINGS_WEB_COOKIE_KEY_FILE")
        .env_remove("WITHINGS_WEB_DEMO_ACCOUNTS")
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
    assert!(page.contains("id=\"sign-in-form\""), "{page}");
    for user in withings_oauth_web_example::DEMO_USERS {
        let password = withings_oauth_web_example::demo_password(user);
        assert!(page.contains(&format!("<code>{password}</code>")), "{page}");
    }
    assert!(
        page.contains("user1@example.com"),
        "the sandbox accounts are listed"
    );
    assert!(
        dir.path().join("withings-web-example.db").is_file(),
        "the default database is a SQLite file in the current directory"
    );
    let key = dir.path().join("withings-web-example.db.cookie-key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the generated cookie key is its user's alone"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_setting_with_its_variable_and_no_value() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
        .arg("--help")
        .env(
            "WITHINGS_WEB_DATABASE",
            "postgres://app:s3cret-pw@db.internal/withings",
        )
        .env("WITHINGS_CLIENT_SECRET", "client-s3cret")
        .output()
        .await
        .expect("the binary runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        ("--database", "WITHINGS_WEB_DATABASE"),
        ("--listen", "WITHINGS_WEB_LISTEN"),
        ("--client-id", "WITHINGS_CLIENT_ID"),
        ("--redirect-uri", "WITHINGS_REDIRECT_URI"),
        ("--withings-base-url", "WITHINGS_BASE_URL"),
        ("--cookie-key-file", "WITHINGS_WEB_COOKIE_KEY_FILE"),
        ("--session-minutes", "WITHINGS_WEB_SESSION_MINUTES"),
        (
            "--pending-login-minutes",
            "WITHINGS_WEB_PENDING_LOGIN_MINUTES",
        ),
        ("--demo-accounts", "WITHINGS_WEB_DEMO_ACCOUNTS"),
    ] {
        assert!(help.contains(setting.0), "{} in {help}", setting.0);
        assert!(help.contains(setting.1), "{} in {help}", setting.1);
    }
    for secret in [
        "WITHINGS_CLIENT_SECRET",
        "WITHINGS_WEB_COOKIE_KEY ",
        "WITHINGS_STORE_KEYS",
    ] {
        assert!(help.contains(secret), "{secret} in {help}");
    }
    assert!(!help.contains("s3cret"), "no value is shown: {help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_database_without_a_cookie_key_stops_it_with_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
        .current_dir(dir.path())
        .args(["--database", "postgres://app@127.0.0.1:1/withings"])
        .env_remove("WITHINGS_CLIENT_ID")
        .env_remove("WITHINGS_BASE_URL")
        .env_remove("WITHINGS_WEB_COOKIE_KEY")
        .env_remove("WITHINGS_WEB_COOKIE_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WITHINGS_WEB_COOKIE_KEY"), "{stderr}");
    assert!(
        !stderr.contains("Error: "),
        "a sentence, not a Debug dump: {stderr}"
    );
    assert!(output.stdout.is_empty(), "no address to open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_user_reads_the_password_from_standard_input_and_refuses_a_short_one() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let add = |password: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let mut child =
                tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
                    .current_dir(dir)
                    .args(["add-user", "alice"])
                    .env_remove("WITHINGS_WEB_DATABASE")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("the binary starts");
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{password}\n").as_bytes())
                .await
                .unwrap();
            drop(stdin);
            child.wait_with_output().await.unwrap()
        }
    };
    let short = add("hunter2").await;
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("choose a longer one"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let added = add("a long passphrase").await;
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success(), "{stderr}");
    assert!(stderr.contains("user alice can sign in"), "{stderr}");
    assert!(!stderr.contains("passphrase"), "{stderr}");
}
