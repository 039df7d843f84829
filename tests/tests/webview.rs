//! The embedded webview against the sandbox, in a real WebKitGTK window.
//!
//! These tests need a display: run them with `xvfb-run -a cargo test -p withings-oauth-e2e --test
//! webview` (the project's `bash .ci/test` does). All tests of this file share one process, so
//! they also prove that several logins, in a row and at the same time, share the window thread.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use withings_oauth::UserAgentError;
use withings_oauth::{Authorized, Client, Error, Scope, Scopes, authorize};
use withings_oauth_e2e::{client, getmeas_status, start_sandbox};
use withings_oauth_webview::WebviewAgent;
use withings_sandbox::{DEFAULT_CLIENT_ID, HTTPS_CALLBACK, SEEDED_USERID, SandboxConfig};

/// Where the child test process is told which no-display case to check.
const CHILD_ENV: &str = "WITHINGS_WEBVIEW_NO_DISPLAY_CASE";

fn require_display() {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    assert!(
        set("DISPLAY") || set("WAYLAND_DISPLAY"),
        "the webview tests need a display and none is set (DISPLAY, WAYLAND_DISPLAY): run them \
         under `xvfb-run -a cargo test -p withings-oauth-e2e --test webview`, or run `bash .ci/test`"
    );
}

async fn webview_login(client: &Client, agent: &WebviewAgent) -> Result<Authorized, Error> {
    authorize(client, Scopes::from(Scope::Metrics), agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_callback_is_intercepted_and_two_logins_in_a_row_work() {
    require_display();
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    // app.example.com does not resolve here: only interception can bring the callback back.
    let client = client(&sandbox, HTTPS_CALLBACK);
    let agent = WebviewAgent::new().timeout(Duration::from_secs(60));

    let started = Instant::now();
    let first = webview_login(&client, &agent)
        .await
        .expect("first webview login");
    let first_took = started.elapsed();
    assert_eq!(first.user_id().get(), SEEDED_USERID);
    assert_eq!(getmeas_status(&sandbox, first.access_token()).await, 0);

    let started = Instant::now();
    let second = webview_login(&client, &agent)
        .await
        .expect("second webview login in the same process");
    let second_took = started.elapsed();
    assert_eq!(second.user_id().get(), SEEDED_USERID);
    assert_ne!(
        first.access_token().expose_secret(),
        second.access_token().expose_secret(),
        "the second login must get its own tokens"
    );
    assert_eq!(getmeas_status(&sandbox, second.access_token()).await, 0);
    assert_eq!(sandbox.handle().counters().token_code, 2);
    eprintln!("webview logins took {first_took:?} and {second_took:?}");
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_logins_each_get_their_own_callback() {
    require_display();
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let client = client(&sandbox, HTTPS_CALLBACK);
    let agent = WebviewAgent::new().timeout(Duration::from_secs(60));

    // Each callback carries its own login's `state`: a callback routed to the wrong window
    // would fail the state check.
    let (a, b, c) = tokio::join!(
        webview_login(&client, &agent),
        webview_login(&client, &agent),
        webview_login(&client, &agent),
    );
    let logins = [
        a.expect("login a"),
        b.expect("login b"),
        c.expect("login c"),
    ];
    for login in &logins {
        assert_eq!(login.user_id().get(), SEEDED_USERID);
        assert_eq!(getmeas_status(&sandbox, login.access_token()).await, 0);
    }
    assert_eq!(sandbox.handle().counters().token_code, 3);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_scheme_callback_is_intercepted() {
    require_display();
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let custom = "com.example.withings-app://oauth/callback";
    sandbox
        .handle()
        .register_callback(DEFAULT_CLIENT_ID, custom);
    let client = client(&sandbox, custom);

    let authorized = webview_login(
        &client,
        &WebviewAgent::new().timeout(Duration::from_secs(60)),
    )
    .await
    .expect("webview login with a custom scheme callback");
    assert_eq!(authorized.user_id().get(), SEEDED_USERID);
    assert_eq!(getmeas_status(&sandbox, authorized.access_token()).await, 0);
    sandbox.shutdown().await;
}

/// Blocking the navigation keeps the callback (its code and state) off the network even when
/// something listens at the redirect URI: here a local port that counts every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_callback_is_caught_without_connecting_to_it() {
    require_display();
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port on 127.0.0.1");
    let port = listener
        .local_addr()
        .expect("the listener's address")
        .port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let counter = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let redirect_uri = format!("http://127.0.0.1:{port}/cb");
    sandbox
        .handle()
        .register_callback(DEFAULT_CLIENT_ID, &redirect_uri);
    let client = client(&sandbox, &redirect_uri);

    let authorized = webview_login(
        &client,
        &WebviewAgent::new().timeout(Duration::from_secs(60)),
    )
    .await
    .expect("webview login with a loopback callback");
    assert_eq!(authorized.user_id().get(), SEEDED_USERID);
    assert_eq!(getmeas_status(&sandbox, authorized.access_token()).await, 0);
    // A connection opened as the window closes would arrive a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    counter.abort();
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the webview connected to the redirect URI"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_page_times_out_then_the_next_login_works() {
    require_display();
    // Without auto-approve the consent form waits for a person who never comes.
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(false)).await;
    let client = client(&sandbox, HTTPS_CALLBACK);

    // Long enough for a webview to start and load the page on a busy machine.
    let timeout = Duration::from_secs(8);
    let started = Instant::now();
    let err = webview_login(&client, &WebviewAgent::new().timeout(timeout))
        .await
        .expect_err("nobody answers the consent form");
    let waited = started.elapsed();
    assert!(
        matches!(err, Error::UserAgent(UserAgentError::TimedOut(d)) if d == timeout),
        "expected a timeout, got: {err}"
    );
    assert!(
        waited >= timeout,
        "gave up after {waited:?}, before the timeout"
    );
    assert!(
        err.to_string().contains("run the login again"),
        "the message says what to do: {err}"
    );
    let counters = sandbox.handle().counters();
    assert_eq!(
        counters.authorize_page, 1,
        "the window loaded the consent page and waited on it"
    );
    assert_eq!(counters.token_code, 0);

    sandbox.handle().set_auto_approve(true);
    let authorized = webview_login(
        &client,
        &WebviewAgent::new().timeout(Duration::from_secs(60)),
    )
    .await
    .expect("a login after a timed-out one");
    assert_eq!(authorized.user_id().get(), SEEDED_USERID);
    sandbox.shutdown().await;
}

#[test]
fn without_a_usable_display_the_login_fails_with_advice() {
    // Environment variables are process-wide, so each case runs in a child process: this
    // same test binary, running only `no_display_child`.
    let exe = std::env::current_exe().expect("test binary path");
    for (case, display) in [("unset", None), ("unreachable", Some(":987"))] {
        let mut command = Command::new(&exe);
        command
            .args(["--exact", "no_display_child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, case)
            .env_remove("WAYLAND_DISPLAY");
        match display {
            Some(display) => command.env("DISPLAY", display),
            None => command.env_remove("DISPLAY"),
        };
        let output = command.output().expect("run the child test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "case {case}: the child failed or crashed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "case {case}: the child test did not run\nstdout:\n{stdout}"
        );
    }
}

/// Run by [`without_a_usable_display_the_login_fails_with_advice`] in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by without_a_usable_display_the_login_fails_with_advice with a broken display"]
async fn no_display_child() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        panic!(
            "this test only runs as a child of without_a_usable_display_the_login_fails_with_advice"
        );
    };
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let client = client(&sandbox, HTTPS_CALLBACK);
    let agent = WebviewAgent::new().timeout(Duration::from_secs(30));
    // Twice: a second login must not hang or crash after the first found no display.
    for attempt in 1..=2 {
        let err = tokio::time::timeout(Duration::from_secs(30), webview_login(&client, &agent))
            .await
            .unwrap_or_else(|_| panic!("case {case}, attempt {attempt}: hung instead of failing"))
            .expect_err("no window can be shown");
        let text = err.to_string();
        assert!(
            matches!(err, Error::UserAgent(UserAgentError::Other(_))),
            "case {case}, attempt {attempt}: {text}"
        );
        assert!(
            text.contains("paste agent") && text.contains("desktop session"),
            "case {case}, attempt {attempt}: the message must give advice: {text}"
        );
    }
    assert_eq!(sandbox.handle().counters().token_code, 0);
    sandbox.shutdown().await;
}
