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
        // A browser that failed before the barrier leaves the others waiting at it: fail, with
        // its panic, instead of hanging.
        let (browser, shown) = tokio::time::timeout(Duration::from_secs(180), login)
            .await
            .unwrap_or_else(|_| panic!("{}'s login did not finish within 3 minutes", DEMO_USERS[i]))
            .expect("the login task does not panic");
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

/// A site of another origin (another port of 127.0.0.1, so its pages are same-site with the
/// application: `SameSite=Lax` cookies go along) whose pages attack `app`: each auto-submits a
/// form to one of the application's routes, and `/plant?value=...` sets a binding cookie on
/// the host.
async fn start_attacker(app: &Url) -> Url {
    use axum::extract::{Path, Query};
    use axum::response::{Html, IntoResponse};
    use axum::routing::get;
    let app = app.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base: Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let router = axum::Router::new()
        .route(
            "/post/{*target}",
            get(move |Path(target): Path<String>| {
                let action = app.join(&target).unwrap();
                async move {
                    Html(format!(
                        "<!doctype html><title>Win a prize</title>\
                         <form id=\"attack\" method=\"post\" action=\"{action}\">\
                         <input type=\"hidden\" name=\"user\" value=\"bob\"></form>\
                         <script>document.getElementById('attack').submit()</script>"
                    ))
                }
            }),
        )
        .route(
            "/plant",
            get(
                |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                    (
                        [(
                            "set-cookie",
                            format!("withings-login={}; Path=/", query["value"]),
                        )],
                        Html("<!doctype html><title>Nothing to see</title><p id=\"planted\">ok"),
                    )
                        .into_response()
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// The value of the browser's binding cookie for 127.0.0.1.
async fn binding_cookie(browser: &Browser) -> Option<String> {
    let cookie = browser
        .webdriver()
        .get_named_cookie("withings-login")
        .await
        .ok()?;
    Some(cookie.value().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_posted_from_another_origin_are_refused_and_change_nothing() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let attacker = start_attacker(base).await;
    let victim = Browser::start().await;
    let web = victim.webdriver();
    click_connect(&victim, base, "alice").await;
    consent(&victim, 1, true).await;
    let alice = NUMBERED_USERID_BASE + 1;
    assert_eq!(shown_withings_user(&victim, "alice").await, Some(alice));
    let pending_before = site.pending.len();

    for target in [
        "disconnect?user=bob",
        "disconnect",
        "withings/connect?user=bob",
        "sign-out",
    ] {
        web.goto(attacker.join(&format!("post/{target}")).unwrap().as_str())
            .await
            .unwrap();
        let (kind, text) = error_kind(&victim).await;
        assert_eq!(kind, "cross-site", "{target}: {text}");
        assert!(text.contains("another site"), "{text}");
        let landed = web.current_url().await.unwrap();
        assert_eq!(landed.port(), base.port(), "{target}: not sent to Withings");
    }

    assert_eq!(site.pending.len(), pending_before, "no login was started");
    let user = site.accounts.get("alice").await.unwrap();
    assert_eq!(user.map(|u| u.get()), Some(alice), "alice's link is intact");
    assert_eq!(token_owner(&site, user.unwrap()).await, alice);
    assert_eq!(site.accounts.get("bob").await.unwrap(), None);
    web.goto(base.as_str()).await.unwrap();
    assert_eq!(
        shown_withings_user(&victim, "alice").await,
        Some(alice),
        "still signed in and connected"
    );
    victim.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_binding_cookie_binds_nothing_and_the_victim_still_connects() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let attacker_site = start_attacker(base).await;

    // The attacker, signed in as bob, starts a login: a binding cookie the server issued to
    // bob, and the authorize URL (its state) of bob's pending login.
    let attacker = Browser::start().await;
    click_connect(&attacker, base, "bob").await;
    let planted = binding_cookie(&attacker)
        .await
        .expect("bob's binding cookie");
    let bobs_login = attacker.webdriver().current_url().await.unwrap();
    attacker.close().await;

    // The victim, signed in as alice, visits the attacker's page, which plants bob's cookie.
    let victim = Browser::start().await;
    let web = victim.webdriver();
    sign_in(&victim, base, "alice").await;
    let mut plant = attacker_site.join("plant").unwrap();
    plant.query_pairs_mut().append_pair("value", &planted);
    web.goto(plant.as_str()).await.unwrap();
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("planted"))
        .await
        .unwrap();
    assert_eq!(
        binding_cookie(&victim).await.as_deref(),
        Some(planted.as_str())
    );

    // Lured to bob's login, the victim allows it: the callback is refused, no code is spent,
    // nobody is linked to the victim's Withings account.
    web.goto(bobs_login.as_str()).await.unwrap();
    consent(&victim, 1, true).await;
    let (kind, _) = error_kind(&victim).await;
    assert_eq!(kind, "other-browser");
    assert_eq!(site.sandbox.handle().counters().token_code, 0);
    assert_eq!(site.accounts.get("bob").await.unwrap(), None);
    assert_eq!(site.accounts.get("alice").await.unwrap(), None);

    // The victim's own login gets a fresh binding and completes for the victim.
    click_connect(&victim, base, "alice").await;
    let fresh = binding_cookie(&victim).await.expect("a binding cookie");
    assert_ne!(fresh, planted, "the planted binding was not reused");
    consent(&victim, 1, true).await;
    let alice = NUMBERED_USERID_BASE + 1;
    assert_eq!(shown_withings_user(&victim, "alice").await, Some(alice));
    let user = site
        .accounts
        .get("alice")
        .await
        .unwrap()
        .expect("connected");
    assert_eq!(token_owner(&site, user).await, alice);
    assert_eq!(site.accounts.get("bob").await.unwrap(), None);
    victim.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_signed_in_users_can_neither_see_nor_change_each_others_link() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let (alice, bob) = (NUMBERED_USERID_BASE + 1, NUMBERED_USERID_BASE + 2);
    let x = Browser::start().await;
    let y = Browser::start().await;
    click_connect(&x, base, "alice").await;
    consent(&x, 1, true).await;
    assert_eq!(shown_withings_user(&x, "alice").await, Some(alice));
    click_connect(&y, base, "bob").await;
    consent(&y, 2, true).await;
    assert_eq!(shown_withings_user(&y, "bob").await, Some(bob));

    // Alice edits the URL to name bob: she sees her own page, nothing of bob's.
    let web = x.webdriver();
    for path in ["?user=bob", "?owner=bob&user_id=bob"] {
        web.goto(base.join(path).unwrap().as_str()).await.unwrap();
        assert_eq!(shown_withings_user(&x, "alice").await, Some(alice));
        let source = web.source().await.unwrap();
        assert!(!source.contains("user-bob"), "{source}");
        assert!(!source.contains(&bob.to_string()), "{source}");
    }

    // Alice edits her forms to name bob: each acts on her own link only.
    let submit = |action: &'static str| async move {
        web.execute(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = arguments[0]; \
             for (const name of ['user', 'owner']) { const i = document.createElement('input'); \
             i.type = 'hidden'; i.name = name; i.value = 'bob'; f.appendChild(i); } \
             document.body.appendChild(f); f.submit();",
            vec![action.into()],
        )
        .await
        .unwrap();
    };
    submit("/disconnect?user=bob").await;
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("connect"))
        .await
        .expect("alice disconnected her own link");
    assert_eq!(site.accounts.get("alice").await.unwrap(), None);
    let bobs = site.accounts.get("bob").await.unwrap().expect("bob's link");
    assert_eq!(bobs.get(), bob);
    assert_eq!(
        token_owner(&site, bobs).await,
        bob,
        "bob's tokens are alive"
    );

    submit("/withings/connect?user=bob").await;
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("consent-form"))
        .await
        .unwrap();
    consent(&x, 3, true).await;
    assert_eq!(
        shown_withings_user(&x, "alice").await,
        Some(NUMBERED_USERID_BASE + 3),
        "the login was alice's"
    );
    assert_eq!(
        site.accounts.get("bob").await.unwrap().map(|u| u.get()),
        Some(bob)
    );

    y.webdriver().goto(base.as_str()).await.unwrap();
    assert_eq!(shown_withings_user(&y, "bob").await, Some(bob));
    x.close().await;
    y.close().await;
}

/// The pages signed out and signed in, as PNG screenshots; written to the directory
/// `WITHINGS_SCREENSHOTS_DIR` names, when set (the README's pictures are made so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_render_signed_out_and_signed_in() {
    let site = start_site(1).await;
    let base = &site.instances[0];
    let browser = Browser::start().await;
    let web = browser.webdriver();
    web.set_window_size(1280, 760).await.unwrap();
    let save = |name: &'static str, png: Vec<u8>| {
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        if let Some(dir) = std::env::var_os("WITHINGS_SCREENSHOTS_DIR") {
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    };
    web.goto(base.as_str()).await.unwrap();
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("sign-in-form"))
        .await
        .unwrap();
    save(
        "web-example-signed-out.png",
        web.screenshot().await.unwrap(),
    );
    click_connect(&browser, base, "alice").await;
    consent(&browser, 1, true).await;
    assert_eq!(
        shown_withings_user(&browser, "alice").await,
        Some(NUMBERED_USERID_BASE + 1)
    );
    assert!(shown_weight(&browser, "alice").await.ends_with(" kg"));
    save("web-example-signed-in.png", web.screenshot().await.unwrap());
    browser.close().await;
}
