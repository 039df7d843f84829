//! The routes over HTTP, against the sandbox (auto-approving, so no browser is needed): two
//! instances sharing one pending-login store and one token store, racing callbacks, a callback
//! from another browser, a visitor who is not signed in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use url::Url;
use withings_oauth::{
    Client, MemoryPendingLogins, MemoryStore, PendingLoginStore, TokenStore, UserId,
};
use withings_oauth_axum::WithingsLogin;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_USERID, Sandbox, SandboxConfig,
};

struct Instance {
    base: Url,
    login: WithingsLogin,
}

type Connected = Arc<Mutex<HashMap<String, UserId>>>;

/// Starts an instance serving `login.router()` on `listener`.
fn serve(listener: tokio::net::TcpListener, login: WithingsLogin) -> Instance {
    let base: Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let app: Router = login.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Instance { base, login }
}

/// Two instances sharing their stores; both use B's callback as their redirect URI.
async fn two_instances(sandbox: &Sandbox) -> (Instance, Instance, Connected) {
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/callback", b.local_addr().unwrap());
    let pending: Arc<dyn PendingLoginStore> = Arc::new(MemoryPendingLogins::new());
    let tokens: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let connected: Connected = Arc::default();
    let build = || {
        let client = Client::builder()
            .client_id(DEFAULT_CLIENT_ID)
            .client_secret(DEFAULT_CLIENT_SECRET)
            .redirect_uri(redirect.as_str())
            .base_url(sandbox.base_url())
            .build()
            .unwrap();
        let record = connected.clone();
        WithingsLogin::builder(client, pending.clone(), tokens.clone(), |request| {
            request
                .uri
                .query()?
                .strip_prefix("user=")
                .map(str::to_owned)
        })
        .after_login("/done")
        .on_connected(move |c| {
            record.lock().unwrap().insert(c.owner, c.user_id);
            async {}
        })
        .build()
    };
    (serve(a, build()), serve(b, build()), connected)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Connects `owner` at `instance`: the binding cookie and the callback URL Withings sends the
/// browser to (not yet opened).
async fn connect(instance: &Instance, owner: &str) -> (String, Url) {
    let response = http()
        .post(
            instance
                .base
                .join(&format!("withings/connect?user={owner}"))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let authorize: Url = response.headers()[LOCATION]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let at_withings = http().get(authorize).send().await.unwrap();
    let callback = at_withings.headers()[LOCATION]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (cookie, callback)
}

async fn open(callback: &Url, cookie: Option<&str>) -> (StatusCode, String, String) {
    let mut request = http().get(callback.clone());
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

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
    let (first, second) = tokio::join!(open(&on_a, Some(&cookie)), open(&callback, Some(&cookie)));
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
        let (status, _, page) = open(&callback, other).await;
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

    let (status, location, _) = open(&callback, Some(&cookie)).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/done")
    );
    assert_eq!(connected.lock().unwrap()["alice"].get(), SEEDED_USERID);
    assert!(!connected.lock().unwrap().contains_key("mallory"));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_is_not_signed_in_gets_a_page_not_a_login() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (a, _b, _) = two_instances(&sandbox).await;
    let response = http()
        .get(a.base.join("withings/connect").unwrap())
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

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One thread, so that the servers' tasks log to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_say_what_happened_and_hold_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "withings_oauth=trace,withings_oauth_axum=trace",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let (a, _b, connected) = two_instances(&sandbox).await;
    let (cookie, callback) = connect(&a, "alice").await;
    assert_eq!(open(&callback, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        open(&callback, Some(&cookie)).await.0,
        StatusCode::SEE_OTHER
    );
    let user = connected.lock().unwrap()["alice"];
    let access = a.login.access_token(user).await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for step in [
        "Withings login parked",
        "Withings callback refused",
        "other-browser",
        "Withings login finished",
    ] {
        assert!(
            logs.contains(step),
            "{step:?} missing from the logs:\n{logs}"
        );
    }
    let secrets = [
        cookie.split_once('=').unwrap().1.to_owned(),
        query_value(&callback, "state"),
        query_value(&callback, "code"),
        access.expose_secret().to_owned(),
    ];
    for secret in secrets {
        assert!(!logs.contains(&secret), "a secret is in the logs:\n{logs}");
    }
    sandbox.shutdown().await;
}

fn query_value(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}
