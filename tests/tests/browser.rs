//! A real browser (headless Chromium over WebDriver) logs in through `LoopbackAgent`: the
//! sandbox's consent page is filled in and submitted, and the sandbox redirects the browser to
//! the loopback listener.
//!
//! Needs Chromium and chromedriver; without them the tests fail and say to run `bash .ci/test`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use tokio::sync::mpsc;
use url::Url;
use withings_oauth::loopback::LoopbackAgent;
use withings_oauth::{Authorized, CallbackError, Error, Scope, Scopes, authorize};
use withings_oauth_e2e::{Browser, client, getmeas_status, start_sandbox};
use withings_sandbox::{SEEDED_EMAIL, SEEDED_PASSWORD, SEEDED_USERID, SandboxConfig};

/// Generous: a cold Chromium start on a busy machine takes seconds.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(90);

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
    let client = client(sandbox, "http://127.0.0.1:0/callback");
    let (urls, mut authorize_urls) = mpsc::unbounded_channel::<Url>();
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .timeout(LOGIN_TIMEOUT)
        .on_authorize_url(move |url| {
            let _ = urls.send(url.clone());
        });
    let scopes: Scopes = [Scope::Info, Scope::Metrics].into_iter().collect();
    let login = tokio::spawn(async move { authorize(&client, scopes, &agent).await });

    let authorize_url = tokio::time::timeout(Duration::from_secs(10), authorize_urls.recv())
        .await
        .expect("the agent shows the authorize URL at once")
        .expect("an authorize URL");
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
