//! Two `withings-web-example` processes on one PostgreSQL database and one sandbox, configured
//! as the README's two-instance recipe says, in a real browser (headless Chromium over
//! WebDriver): a user signs in on instance A and starts a login there, whose callback lands on
//! instance B, where the same session is signed in; it completes, and both instances then show
//! the user's Withings id and last weight, read from the sessions, tokens, pending logins and
//! accounts they share.
//!
//! Needs PostgreSQL (`WITHINGS_TEST_DATABASE_URL`, set by `source .ci/postgres.sh`), Chromium
//! and chromedriver; without them the test fails and says what to run.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use url::Url;
use withings_oauth::testing;
use withings_oauth_e2e::web_example::{click_connect, consent, shown_weight, shown_withings_user};
use withings_oauth_e2e::{Browser, start_sandbox};
use withings_oauth_sql::testing::Schemas;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, NUMBERED_USERID_BASE, SandboxConfig,
};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The cookie key both instances share: 64 bytes, base64.
const COOKIE_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

/// A running `withings-web-example` process; killed when dropped.
struct Instance {
    child: tokio::process::Child,
    base: Url,
}

/// Starts the binary listening on `listen`, against the sandbox at `sandbox`, with
/// `redirect_uri`, on `database`; returns once it printed the address to open, or `None` if
/// it exited before (its log, on the test's stderr, says why: a port taken meanwhile...).
async fn start_instance(
    listen: &str,
    sandbox: &Url,
    redirect_uri: &str,
    database: &str,
) -> Option<Instance> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_withings-web-example"))
        .args(["--listen", listen, "--database", database])
        .env("WITHINGS_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("WITHINGS_WEB_COOKIE_KEY", COOKIE_KEY)
        .env_remove("WITHINGS_WEB_COOKIE_KEY_FILE")
        .env("WITHINGS_WEB_DEMO_ACCOUNTS", "true")
        .env("WITHINGS_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env("WITHINGS_REDIRECT_URI", redirect_uri)
        .env("WITHINGS_BASE_URL", sandbox.as_str())
        .env("WITHINGS_STORE_KEYS", KEYS)
        .env_remove("WITHINGS_STORE_KEYS_FILE")
        .env_remove("WITHINGS_WEB_DATABASE")
        // Warnings and errors only, on the test's stderr.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("it prints the address to open within 60 s")
        .expect("its stdout can be read")?;
    let base = line
        .strip_prefix("open ")
        .unwrap_or_else(|| panic!("{line:?} says what to open"))
        .parse()
        .expect("a URL");
    Some(Instance { child, base })
}

/// Instances A (on any port) and B (on a port known before it starts: both send browsers back
/// to B's callback), started at once, as a deployment's instances are: they migrate the same
/// database. B's port was free a moment before B binds it; should another program take it
/// meanwhile, both start again on another.
async fn start_two_instances(sandbox: &Url, database: &str) -> (Instance, Instance) {
    for _ in 0..3 {
        // B must know its own callback URL before it starts.
        let b_listen = format!("127.0.0.1:{}", testing::free_port());
        let redirect = format!("http://{b_listen}/callback");
        let (a, b) = tokio::join!(
            start_instance("127.0.0.1:0", sandbox, &redirect, database),
            start_instance(&b_listen, sandbox, &redirect, database),
        );
        match (a, b) {
            (Some(a), Some(b)) => return (a, b),
            (a, b) => {
                eprintln!("an instance did not start (its log is above); both start again");
                for mut instance in [a, b].into_iter().flatten() {
                    instance.child.start_kill().unwrap();
                    let _ = instance.child.wait().await;
                }
            }
        }
    }
    panic!("the two instances did not start in 3 attempts (see their logs above)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_process_finishes_on_another_sharing_one_postgres_database() {
    let schemas = Schemas::new();
    let database = schemas.url_in(&schemas.create().await);
    let sandbox = start_sandbox(SandboxConfig::default().seed_users(5)).await;
    let (a, b) = start_two_instances(&sandbox.base_url(), &database).await;

    let browser = Browser::start().await;
    let web = browser.webdriver();
    click_connect(&browser, &a.base, "dave").await;
    consent(&browser, 4, true).await;

    let expected = NUMBERED_USERID_BASE + 4;
    assert_eq!(shown_withings_user(&browser, "dave").await, Some(expected));
    let landed = web.current_url().await.unwrap();
    assert_eq!(landed.port(), b.base.port(), "the callback was served by B");
    assert_eq!(sandbox.handle().counters().token_code, 1);

    for instance in [&a, &b] {
        web.goto(instance.base.as_str()).await.unwrap();
        assert_eq!(
            shown_withings_user(&browser, "dave").await,
            Some(expected),
            "{} shows dave's Withings user",
            instance.base
        );
        let weight = shown_weight(&browser, "dave").await;
        assert!(weight.ends_with(" kg"), "{}: {weight}", instance.base);
    }

    browser.close().await;
    for mut instance in [a, b] {
        instance.child.start_kill().unwrap();
        let _ = instance.child.wait().await;
    }
    sandbox.shutdown().await;
    schemas.drop_all().await;
}
