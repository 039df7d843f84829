//! A real browser (headless Chromium over WebDriver) logs in through `LoopbackAgent`: the
//! sandbox's consent page is filled in and submitted, and the sandbox redirects the browser to
//! the loopback listener. And the agent opens the system browser itself, through `BROWSER`, with
//! a one-time link instead of the authorize URL.
//!
//! Needs Chromium and chromedriver (and curl); without them the tests fail and say to run
//! `bash .ci/test`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use tokio::io::AsyncReadExt as _;
use url::Url;
use withings_oauth::{Authorized, CallbackError, Client, Error, Scope, Scopes, authorize};
use withings_oauth::{BrowserOrPasteAgent, LoopbackAgent};
use withings_oauth_e2e::{Browser, getmeas_status, query_param, start_login, start_sandbox};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_EMAIL, SEEDED_PASSWORD, SEEDED_USERID,
    SandboxConfig,
};

/// Generous: a cold Chromium start on a busy machine takes seconds.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(90);

/// Set in the child process of [`the_system_browser_gets_a_one_time_link_not_the_state`]: which
/// agent opens the browser, `loopback` or `browser-or-paste`.
const CHILD_MODE: &str = "WITHINGS_E2E_BROWSER_CHILD_MODE";
/// Set in the same child: the sandbox's base URL.
const CHILD_SANDBOX: &str = "WITHINGS_E2E_BROWSER_CHILD_SANDBOX";
/// Set in the same child: the file the `BROWSER` program writes the address it was given to.
const CHILD_OPENED: &str = "WITHINGS_E2E_BROWSER_CHILD_OPENED";

enum Click {
    Allow,
    Deny,
}

/// Runs a login through `LoopbackAgent` whose authorize URL goes to the browser, which logs in
/// and clicks `click`; returns the login's outcome and the text of the page the browser ends on.
async fn browser_login(
    browser: &Browser,
    sandbox: &withings_sandbox::Sandbox,
    click: Click,
) -> (Result<Authorized, Error>, String) {
    let scopes: Scopes = [Scope::Info, Scope::Metrics].into_iter().collect();
    let (login, authorize_url) = start_login(sandbox, scopes, LOGIN_TIMEOUT).await;
    assert_eq!(authorize_url.origin(), sandbox.base_url().origin());

    let web = browser.webdriver();
    web.goto(authorize_url.as_str())
        .await
        .expect("the authorize page loads");
    let email = web
        .find(Locator::Id("email"))
        .await
        .expect("an email field");
    email
        .send_keys(SEEDED_EMAIL)
        .await
        .expect("typing the email");
    web.find(Locator::Id("password"))
        .await
        .expect("a password field")
        .send_keys(SEEDED_PASSWORD)
        .await
        .expect("typing the password");
    let button = match click {
        Click::Allow => "allow",
        Click::Deny => "deny",
    };
    web.find(Locator::Id(button))
        .await
        .expect("the consent buttons")
        .click()
        .await
        .expect("clicking");

    let outcome = tokio::time::timeout(LOGIN_TIMEOUT, login)
        .await
        .expect("the login ends within its timeout")
        .expect("the login task does not panic");
    // The listener answers the browser before the login returns, so its page is there now.
    let page = web
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("message"))
        .await
        .expect("the loopback listener's page")
        .text()
        .await
        .expect("the page's text");
    (outcome, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_logs_in_through_the_loopback_listener() {
    let started = Instant::now();
    let sandbox = start_sandbox(SandboxConfig::default()).await;
    let browser = Browser::start().await;
    let browser_ready = started.elapsed();

    let (outcome, page) = browser_login(&browser, &sandbox, Click::Allow).await;
    let authorized = outcome.expect("the browser login succeeds");
    assert_eq!(authorized.user_id().get(), SEEDED_USERID);
    assert!(authorized.scopes().contains(&Scope::Metrics));
    assert!(page.contains("You can close this window"), "{page}");
    assert_eq!(
        getmeas_status(&sandbox, authorized.access_token()).await,
        0,
        "the sandbox accepts the access token on getmeas"
    );
    let current = browser.webdriver().current_url().await.expect("a URL");
    assert_eq!(current.host_str(), Some("127.0.0.1"));
    assert_eq!(current.path(), "/callback");
    assert_eq!(sandbox.handle().counters().token_code, 1);

    browser.close().await;
    eprintln!(
        "browser login: {:.1} s in all, {:.1} s to start chromedriver and Chromium",
        started.elapsed().as_secs_f64(),
        browser_ready.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_deny_in_a_real_browser_is_a_typed_denial() {
    let started = Instant::now();
    let sandbox = start_sandbox(SandboxConfig::default()).await;
    let browser = Browser::start().await;

    let (outcome, page) = browser_login(&browser, &sandbox, Click::Deny).await;
    let err = outcome.expect_err("a denied login fails");
    assert!(err.is_denied(), "{err:?}");
    assert!(
        matches!(&err, Error::Callback(CallbackError::Denied { error, .. }) if error == "access_denied"),
        "{err:?}"
    );
    assert!(err.to_string().contains("allow access"), "{err}");
    assert!(page.contains("denied"), "{page}");
    assert_eq!(sandbox.handle().counters().token_code, 0);

    browser.close().await;
    eprintln!(
        "browser denial: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// `curl`, which the `BROWSER` program uses to play a browser that follows redirects.
fn curl() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("curl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("this test needs curl, to play the system browser: install the Debian package curl (bash .ci/test does)")
    })
}

/// Writes a `BROWSER` program into `dir`: it saves the address it is given to `opened` and
/// fetches it with curl in the background, following redirects as a browser would.
fn browser_program(dir: &Path, opened: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let program = dir.join("browser");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{opened}'\n\
         '{curl}' --silent --show-error --location --noproxy '*' --max-time 30 \
         --output '{page}' \"$1\" 2> '{errors}' &\n",
        opened = opened.display(),
        curl = curl().display(),
        page = dir.join("page").display(),
        errors = dir.join("curl-errors").display(),
    );
    std::fs::write(&program, script).expect("writing the BROWSER program");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("making the BROWSER program executable");
    program
}

/// `BROWSER` is process-wide, so each login runs in a child process of this test binary
/// ([`browser_child`]) with `BROWSER` set to a program that records its argument and fetches it
/// with curl; the sandbox auto-approves, so curl ends on the listener's callback page. Both
/// agents that open the browser are tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_browser_gets_a_one_time_link_not_the_state() {
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    for (logins, mode) in [(1, "loopback"), (2, "browser-or-paste")] {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opened = dir.path().join("opened");
        let program = browser_program(dir.path(), &opened);

        let child =
            tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
                .args(["--ignored", "--exact", "browser_child", "--nocapture"])
                .env("BROWSER", &program)
                .env(CHILD_MODE, mode)
                .env(CHILD_SANDBOX, sandbox.base_url().as_str())
                .env(CHILD_OPENED, &opened)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
        let output = tokio::time::timeout(Duration::from_secs(90), child)
            .await
            .expect("the child login ends within 90 s")
            .expect("the test binary runs again as a child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let curl_errors =
            std::fs::read_to_string(dir.path().join("curl-errors")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{mode}: the child login failed: {stdout}{stderr}\ncurl: {curl_errors}"
        );
        assert!(
            stdout.contains(&format!("LOGGED IN user {SEEDED_USERID}")),
            "{mode}: {stdout}{stderr}"
        );

        let opened = std::fs::read_to_string(&opened).expect("the BROWSER program was run");
        let link: Url = opened.trim().parse().expect("the browser was given a URL");
        assert_eq!(link.host_str(), Some("127.0.0.1"), "{mode}: {link}");
        assert!(link.path().starts_with("/start/"), "{mode}: {link}");
        assert!(link.query().is_none(), "{mode}: {link}");
        assert!(!opened.contains("state"), "{mode}: {opened}");
        // curl followed the link to the sandbox and back to the listener's page.
        let page_file = dir.path().join("page");
        let mut page = String::new();
        for _ in 0..50 {
            page = std::fs::read_to_string(&page_file).unwrap_or_default();
            if page.contains("</html>") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(page.contains("You can close this window"), "{mode}: {page}");
        assert_eq!(sandbox.handle().counters().token_code, logins, "{mode}");
        eprintln!(
            "{mode} login through BROWSER: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[tokio::test]
#[ignore = "the child process of the_system_browser_gets_a_one_time_link_not_the_state"]
async fn browser_child() {
    // Not a test of its own: without the variables (`--include-ignored`) there is nothing to do.
    let (Ok(mode), Ok(base_url), Ok(opened)) = (
        std::env::var(CHILD_MODE),
        std::env::var(CHILD_SANDBOX),
        std::env::var(CHILD_OPENED),
    ) else {
        return;
    };
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri("http://127.0.0.1:0/callback")
        .base_url(base_url.parse().expect("the sandbox URL"))
        .build()
        .expect("a client of the sandbox");
    let (authorized, authorize_url) = match mode.as_str() {
        "loopback" => {
            let shown = Arc::new(Mutex::new(None::<Url>));
            let agent = LoopbackAgent::new()
                .timeout(Duration::from_secs(60))
                .on_authorize_url({
                    let shown = shown.clone();
                    move |url| *shown.lock().unwrap() = Some(url.clone())
                });
            let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await;
            let shown = shown.lock().unwrap().clone();
            (authorized, shown)
        }
        "browser-or-paste" => {
            // Nothing is typed, but the keyboard stays open: only the listener can end the login.
            let (_keyboard, input) = tokio::io::duplex(1024);
            let (output, mut screen) = tokio::io::duplex(64 * 1024);
            let agent = BrowserOrPasteAgent::new(tokio::io::BufReader::new(input), output)
                .timeout(Duration::from_secs(60));
            let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await;
            drop(agent);
            let mut text = String::new();
            screen
                .read_to_string(&mut text)
                .await
                .expect("reading the instructions");
            // The instructions show the one-time start link the browser got, never the
            // authorize URL and its state.
            let opened = std::fs::read_to_string(&opened).expect("the BROWSER program was run");
            let start = opened.trim();
            assert!(text.contains(start), "the start link is shown: {text}");
            assert!(
                !text.contains("authorize2"),
                "the authorize URL is shown: {text}"
            );
            assert!(!text.contains("state="), "a state is shown: {text}");
            (authorized, None)
        }
        other => panic!("unknown mode {other}"),
    };
    let authorized = authorized.expect("the login through the BROWSER program succeeds");
    let opened = std::fs::read_to_string(&opened).expect("the BROWSER program was run");
    if let Some(authorize_url) = authorize_url {
        let state = query_param(&authorize_url, "state").expect("the authorize URL has a state");
        assert!(
            !opened.contains(&state),
            "the browser's command line holds the state"
        );
    }
    println!("LOGGED IN user {}", authorized.user_id().get());
}
