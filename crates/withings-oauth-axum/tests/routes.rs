//! The routes over HTTP, against the sandbox (auto-approving, so no browser is needed): two
//! instances sharing one pending-login store and one token store, racing callbacks, a callback
//! from another browser or for another user, a binding cookie the server did not issue, a
//! cross-site connect, a visitor who is not signed in, an application that fails to record a
//! login.

mod common;

use std::sync::Arc;

use common::{SignedIn, connect, http, open, two_instances};
use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use withings_oauth::{Client, MemoryPendingLogins, MemoryStore, TokenStore, UserId};
use withings_oauth_axum::{CookieKey, WithingsLogin};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_USERID, Sandbox, SandboxConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_instance_finishes_on_the_other_once() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, b, connected) = two_instances(&sandbox).await;
    let (cookie, callback) = connect(&a, "alice").await;
    assert_eq!(
        callback.port(),
        b.base.port(),
        "Withings sends the browser to B"
    );

    // The same callback reaches both instances at the same moment (a double submit across a
    // load balancer): exactly one finishes the login.
    let mut on_a = callback.clone();
    on_a.set_port(a.base.port()).unwrap();
    let (first, second) = tokio::join!(
        open(&on_a, "alice", Some(&cookie)),
        open(&callback, "alice", Some(&cookie))
    );
    let outcomes = [first, second];
    let finished: Vec<_> = outcomes
        .iter()
        .filter(|(status, location, _)| *status == StatusCode::SEE_OTHER && location == "/done")
        .collect();
    assert_eq!(finished.len(), 1, "{outcomes:?}");
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|(status, _, page)| {
            *status == StatusCode::BAD_REQUEST && page.contains("data-kind=\"unknown\"")
        })
        .collect();
    assert_eq!(refused.len(), 1, "{outcomes:?}");
    assert_eq!(sandbox.handle().counters().token_code, 1);

    let user = connected.lock().unwrap()["alice"];
    assert_eq!(user.get(), SEEDED_USERID);
    for instance in [&a, &b] {
        let token = instance.login.access_token(user).await.unwrap();
        assert!(!token.expose_secret().is_empty());
    }

    // Disconnecting revokes the login and deletes it from the shared store.
    a.login.disconnect(user).await.unwrap();
    assert!(
        a.login
            .access_token(user)
            .await
            .unwrap_err()
            .login_required()
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_from_another_browser_is_refused_and_the_right_one_still_finishes() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, b, connected) = two_instances(&sandbox).await;
    let (cookie, callback) = connect(&a, "alice").await;
    let (mallory_cookie, _) = connect(&b, "mallory").await;

    for other in [None, Some(mallory_cookie.as_str())] {
        let (status, _, page) = open(&callback, "alice", other).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(page.contains("data-kind=\"other-browser\""), "{page}");
        assert!(page.contains("started in another browser"), "{page}");
        assert!(!page.contains(&callback.query().unwrap()[..10]));
    }
    assert_eq!(
        sandbox.handle().counters().token_code,
        0,
        "no code was spent"
    );

    let (status, location, _) = open(&callback, "alice", Some(&cookie)).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/done")
    );
    assert_eq!(connected.lock().unwrap()["alice"].get(), SEEDED_USERID);
    assert!(!connected.lock().unwrap().contains_key("mallory"));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_finishes_only_for_the_user_who_started_the_login() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, _b, connected) = two_instances(&sandbox).await;
    // Mallory starts a login for herself; her binding cookie and callback end up in a browser
    // where Alice is signed in.
    let (cookie, callback) = connect(&a, "mallory").await;
    let (status, _, page) = open(&callback, "alice", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("data-kind=\"other-browser\""), "{page}");
    assert_eq!(
        sandbox.handle().counters().token_code,
        0,
        "no code was spent"
    );

    // The binding cookie was issued to Mallory: it binds nothing for Alice. A login Mallory
    // parked under Alice's binding is refused too: the login's owner is not the signed-in user.
    let (alice_cookie, _) = connect(&a, "alice").await;
    let (status, _, page) = open(&callback, "mallory", Some(&alice_cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("data-kind=\"other-browser\""), "{page}");
    let (status, _, page) = open(&callback, "bob", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(
        sandbox.handle().counters().token_code,
        0,
        "no code was spent"
    );
    assert!(connected.lock().unwrap().is_empty());

    // Mallory herself still finishes it.
    let (status, location, _) = open(&callback, "mallory", Some(&cookie)).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/done")
    );
    assert!(connected.lock().unwrap().contains_key("mallory"));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_cookie_the_server_did_not_issue_is_replaced_by_a_fresh_one() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, _b, connected) = two_instances(&sandbox).await;
    // A binding in clear, as an attacker who can set cookies on the host would plant it.
    let planted = format!(
        "withings-login={}",
        withings_oauth::BrowserBinding::new_random()
            .unwrap()
            .reveal_cookie_value()
    );
    let response = http()
        .post(a.base.join("withings/connect").unwrap())
        .header("x-user", "alice")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", &planted)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let issued = response.headers()[SET_COOKIE].to_str().unwrap();
    let issued = issued.split(';').next().unwrap().to_owned();
    assert_ne!(issued, planted, "a fresh binding");
    let authorize: url::Url = response.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let at_withings = http().get(authorize).send().await.unwrap();
    let callback: url::Url = at_withings.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _, _) = open(&callback, "alice", Some(&planted)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the planted binding binds nothing"
    );
    let (status, location, _) = open(&callback, "alice", Some(&issued)).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/done")
    );
    assert_eq!(connected.lock().unwrap()["alice"].get(), SEEDED_USERID);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_post_only_and_refused_from_another_site() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, _b, _) = two_instances(&sandbox).await;
    let url = a.base.join("withings/connect").unwrap();
    let get = http()
        .get(url.clone())
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let host = a.base.authority().to_owned();
    let other_port = format!("http://127.0.0.1:{}", a.base.port().unwrap() + 1);
    let refused: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site"), ("origin", &other_port)],
        &[("origin", &other_port)],
        &[],
    ];
    for headers in refused {
        let mut request = http().post(url.clone()).header("x-user", "alice");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(response.headers().get(SET_COOKIE).is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("data-kind=\"cross-site\""), "{page}");
    }
    let same_origin = http()
        .post(url)
        .header("x-user", "alice")
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::SEE_OTHER);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_is_not_signed_in_gets_a_page_not_a_login() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (a, _b, _) = two_instances(&sandbox).await;
    let response = http()
        .post(a.base.join("withings/connect").unwrap())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("not signed in"), "{page}");
    assert!(page.contains("href=\"/done\""), "{page}");
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_application_fails_to_record_gets_a_page_asking_to_connect_again() {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(format!("http://{}/callback", listener.local_addr().unwrap()).as_str())
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    let tokens: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let login = WithingsLogin::builder::<SignedIn>(
        client,
        Arc::new(MemoryPendingLogins::new()),
        tokens.clone(),
        &CookieKey::generate().unwrap(),
    )
    .after_login("/done")
    .on_connected(|_| async { Err::<(), _>("the accounts table is unreachable") })
    .build();
    let instance = common::serve(listener, login);

    let (cookie, callback) = connect(&instance, "alice").await;
    let (status, location, page) = open(&callback, "alice", Some(&cookie)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(location, "", "not redirected as if all went well");
    assert!(page.contains("data-kind=\"not-recorded\""), "{page}");
    assert!(page.contains("connect again"), "{page}");
    assert!(
        !page.contains("accounts table"),
        "the reason is for the log, not the page: {page}"
    );
    assert!(page.contains("id=\"reference\""), "{page}");
    assert_eq!(
        tokens.users().await.unwrap(),
        vec![UserId::new(SEEDED_USERID)],
        "the login itself was saved"
    );
    sandbox.shutdown().await;
}
