//! The web example in real browsers (headless Chromium over WebDriver, one profile each):
//! five browsers connecting five Withings users at once, a callback opened in another browser,
//! a replayed callback, a login past its expiry, a denial, a code past its 30 seconds, a login
//! started on one instance and finished on another; and attacks: a page of another origin
//! posting forms to a signed-in victim's application, a binding cookie planted by that page,
//! two signed-in users editing URLs and forms to reach each other's link.
//!
//! The example runs in-process, against the sandbox, with a pending-login store whose clock
//! the tests move. Needs Chromium and chromedriver; without them the tests fail and say to run
//! `bash .ci/test`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::Locator;
use url::Url;
use withings_oauth::chrono::{DateTime, TimeDelta, Utc};
use withings_oauth::{
    Client, Clock, MemoryPendingLogins, MemoryStore, Session, TokenStore, UserId,
};
use withings_oauth_axum::CookieKey;
use withings_oauth_e2e::web_example::{
    PAGE_TIMEOUT, click_connect, consent, shown_weight, shown_withings_user, sign_in,
};
use withings_oauth_e2e::{Browser, query_param, start_sandbox};
use withings_oauth_web_example::{Accounts, Config, DEMO_USERS, Shared, router};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, NUMBERED_USERID_BASE, Sandbox, SandboxConfig,
    TokenKind, User,
};

/// The system clock moved by an offset the test chooses.
#[derive(Default)]
struct OffsetClock(Mutex<TimeDelta>);

impl OffsetClock {
    fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

/// The example, served on 127.0.0.1 by one or more instances sharing their stores.
struct Site {
    sandbox: Sandbox,
    instances: Vec<Url>,
    tokens: Arc<dyn TokenStore>,
    accounts: Accounts,
    pending: Arc<MemoryPendingLogins>,
    pending_clock: Arc<OffsetClock>,
}

/// Starts `instances` instances of the example over one set of stores. All use the last
/// instance's callback as their redirect URI, as instances behind one load balancer would.
async fn start_site(instances: usize) -> Site {
    let sandbox = start_sandbox(SandboxConfig::default().seed_users(5)).await;
    let mut listeners = Vec::new();
    for _ in 0..instances {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let last = listeners.last().unwrap().local_addr().unwrap();
    let redirect = format!("http://{last}/callback");
    let pending_clock = Arc::new(OffsetClock::default());
    let pending = Arc::new(MemoryPendingLogins::new().with_clock(pending_clock.clone()));
    let tokens: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let mut shared = Shared::in_memory_with_pending(pending.clone());
    shared.tokens = tokens.clone();
    shared.users.seed_demo_accounts().await.unwrap();
    // One key for every instance, as a deployment configures it.
    let cookie_key = CookieKey::generate().unwrap();
    let mut bases = Vec::new();
    for listener in listeners {
        let client = Client::builder()
            .client_id(DEFAULT_CLIENT_ID)
            .client_secret(DEFAULT_CLIENT_SECRET)
            .redirect_uri(redirect.as_str())
            .base_url(sandbox.base_url())
            .build()
            .unwrap();
        bases.push(
            format!("http://{}/", listener.local_addr().unwrap())
                .parse()
                .unwrap(),
        );
        let mut config = Config::new(client, cookie_key.clone());
        config.demo_accounts = true;
        let app = router(config, shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Site {
        sandbox,
        instances: bases,
        tokens,
        accounts: shared.accounts,
        pending,
        pending_clock,
    }
}

/// The kind of the login error page the browser is on.
async fn error_kind(browser: &Browser) -> (String, String) {
    let main = browser
        .webdriver()
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("login-error"))
        .await
        .expect("a login error page");
    let kind = main.attr("data-kind").await.unwrap().expect("a kind");
    (kind, main.text().await.expect("the page's text"))
}

/// What the sandbox sends the browser back to when sandbox user `i` allows the login whose
/// consent page the browser shows, obtained by submitting the consent form without the browser
/// (so the callback is not opened yet).
async fn callback_without_opening(browser: &Browser, i: u32) -> Url {
    let consent_page = browser.webdriver().current_url().await.expect("a URL");
    let user = User::numbered(i);
    let mut form: Vec<(String, String)> = consent_page.query_pairs().into_owned().collect();
    form.extend([
        ("email".to_owned(), user.email),
        ("password".to_owned(), user.password),
        ("decision".to_owned(), "allow".to_owned()),
    ]);
    let mut post_to = consent_page.clone();
    post_to.set_query(None);
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(post_to)
        .form(&form)
        .send()
        .await
        .expect("the sandbox answers the consent form");
    let location = response.headers()["location"].to_str().unwrap();
    let callback: Url = location.parse().expect("a callback URL");
    assert!(query_param(&callback, "code").is_some(), "{callback}");
    callback
}

/// The Withings user whose access token the store holds for `user`, as the sandbox knows it.
async fn token_owner(site: &Site, user: UserId) -> u64 {
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri("http://127.0.0.1/callback")
        .base_url(site.sandbox.base_url())
        .build()
        .unwrap();
    let session = Session::restore(&client, site.tokens.clone(), user)
        .await
        .expect("credentials stored for the user");
    let token = session.access_token().await.unwrap();
    site.sandbox
        .handle()
        .live_tokens()
        .into_iter()
        .find(|t| t.kind == TokenKind::Access && t.token == token.expose_secret())
        .expect("the stored access token is live at the sandbox")
        .userid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_browsers_connect_five_users_at_once_and_none_is_swapped() {
    let site = start_site(1).await;
    let base = site.instances[0].clone();
    let mut browsers = Vec::new();
    for _ in 0..5 {
        browsers.push(Browser::start().await);
    }
    // Each browser reaches its consent page, then all allow at the same moment.
    let ready = Arc::new(tokio::sync::Barrier::new(5));
    let mut logins = Vec::new();
    for (i, browser) in browsers.into_iter().enumerate() {
        let (base, ready) = (base.clone(), ready.clone());
        let app_user = DEMO_USERS[i];
        logins.push(tokio::spawn(async move {
            click_connect(&browser, &base, app_user).await;
            ready.wait().await;
            consent(&browser, i as u32 + 1, true).await;
            let shown = shown_withings_user(&browser, app_user).await;
            (browser, shown)
        }));
    }
    let mut browsers = Vec::new();
    for (i, login) in logins.into_iter().enumerate() {
        let (browser, shown) = login.await.expect("the login task does not panic");
        let expected = NUMBERED_USERID_BASE + i as u64 + 1;
        assert_eq!(shown, Some(expected), "{}'s page", DEMO_USERS[i]);
        browsers.push(browser);
    }
    for (i, app_user) in DEMO_USERS.iter().enumerate() {
        let expected = NUMBERED_USERID_BASE + i as u64 + 1;
        let user = site
            .accounts
            .get(app_user)
            .await
            .unwrap()
            .expect("connected");
        assert_eq!(
            user.get(),
            expected,
            "{app_user} is linked to their own Withings user"
        );
        assert_eq!(
            token_owner(&site, user).await,
            expected,
            "{app_user}'s tokens are theirs"
        );
    }
    assert_eq!(site.sandbox.handle().counters().token_code, 5);
    for browser in browsers {
        browser.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_opened_in_another_browser_is_refused_and_the_first_browser_still_finishes() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let x = Browser::start().await;
    let y = Browser::start().await;

    click_connect(&x, base, "alice").await;
    let callback = callback_without_opening(&x, 1).await;
    // Y has a binding cookie of its own: it started a login too.
    click_connect(&y, base, "bob").await;
    y.webdriver().goto(callback.as_str()).await.unwrap();
    let (kind, text) = error_kind(&y).await;
    assert_eq!(kind, "other-browser");
    assert!(text.contains("started in another browser"), "{text}");
    assert!(!text.contains(&query_param(&callback, "code").unwrap()));
    assert_eq!(site.sandbox.handle().counters().token_code, 0);

    x.webdriver().goto(callback.as_str()).await.unwrap();
    assert_eq!(
        shown_withings_user(&x, "alice").await,
        Some(NUMBERED_USERID_BASE + 1)
    );
    assert_eq!(
        site.accounts.get("bob").await.unwrap(),
        None,
        "Y connected nobody"
    );
    x.close().await;
    y.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_expiry_denial_and_a_stale_code_each_get_their_page() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let browser = Browser::start().await;
    let web = browser.webdriver();

    // Denied.
    click_connect(&browser, base, "alice").await;
    consent(&browser, 1, false).await;
    let (kind, text) = error_kind(&browser).await;
    assert_eq!(kind, "denied");
    assert!(text.contains("not allowed"), "{text}");

    // A login, then its callback replayed.
    click_connect(&browser, base, "alice").await;
    let callback = callback_without_opening(&browser, 1).await;
    web.goto(callback.as_str()).await.unwrap();
    assert_eq!(
        shown_withings_user(&browser, "alice").await,
        Some(NUMBERED_USERID_BASE + 1)
    );
    web.goto(callback.as_str()).await.unwrap();
    let (kind, text) = error_kind(&browser).await;
    assert_eq!(kind, "unknown");
    assert!(text.contains("already used"), "{text}");
    assert_eq!(site.sandbox.handle().counters().token_code, 1);

    // A code whose exchange comes more than 30 seconds after it was issued.
    click_connect(&browser, base, "bob").await;
    let callback = callback_without_opening(&browser, 2).await;
    site.sandbox.handle().advance_clock(Duration::from_secs(31));
    web.goto(callback.as_str()).await.unwrap();
    let (kind, text) = error_kind(&browser).await;
    assert_eq!(kind, "code-expired");
    assert!(text.contains("start again"), "{text}");

    // A login that waited past the pending-login store's lifetime.
    click_connect(&browser, base, "carol").await;
    site.pending_clock.advance(TimeDelta::minutes(11));
    consent(&browser, 3, true).await;
    let (kind, text) = error_kind(&browser).await;
    assert_eq!(kind, "expired");
    assert!(text.contains("start again"), "{text}");

    // The application still works: alice connected, bob and carol not.
    sign_in(&browser, base, "alice").await;
    assert_eq!(
        shown_withings_user(&browser, "alice").await,
        Some(NUMBERED_USERID_BASE + 1)
    );
    for other in ["bob", "carol"] {
        sign_in(&browser, base, other).await;
        assert_eq!(shown_withings_user(&browser, other).await, None);
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_instance_finishes_on_another_and_both_serve_the_data() {
    let site = start_site(2).await;
    let (a, b) = (&site.instances[0], &site.instances[1]);
    let browser = Browser::start().await;
    let web = browser.webdriver();

    click_connect(&browser, a, "dave").await;
    consent(&browser, 4, true).await;
    assert_eq!(
        shown_withings_user(&browser, "dave").await,
        Some(NUMBERED_USERID_BASE + 4)
    );
    let landed = web.current_url().await.unwrap();
    assert_eq!(landed.port(), b.port(), "the callback was served by B");

    for instance in [a, b] {
        web.goto(instance.as_str()).await.unwrap();
        assert_eq!(
            shown_withings_user(&browser, "dave").await,
            Some(NUMBERED_USERID_BASE + 4)
        );
        let weight = shown_weight(&browser, "dave").await;
        assert!(weight.ends_with(" kg"), "{weight}");
    }

    // Disconnect on A: both instances show dave as not connected.
    web.goto(a.as_str()).await.unwrap();
    web.find(Locator::Id("disconnect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("connect"))
        .await
        .expect("dave can connect again");
    web.goto(b.as_str()).await.unwrap();
    assert_eq!(shown_withings_user(&browser, "dave").await, None);
    browser.close().await;
}
