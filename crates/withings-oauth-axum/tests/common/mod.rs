//! What the route tests share: two instances of a `WithingsLogin` over shared stores, served on
//! 127.0.0.1, and an HTTP client that plays the browser.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use url::Url;
use withings_oauth::{
    Client, MemoryPendingLogins, MemoryStore, PendingLoginStore, TokenStore, UserId,
};
use withings_oauth_axum::{CookieKey, LoginOwner, WithingsLogin};
use withings_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox};

/// One instance: where it is served, and its `WithingsLogin`.
pub(crate) struct Instance {
    pub(crate) base: Url,
    pub(crate) login: WithingsLogin,
}

/// The signed-in user: the `x-user` header, the tests' stand-in for an application's session.
pub(crate) struct SignedIn(String);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
        user.map(|u| SignedIn(u.to_owned()))
            .ok_or(StatusCode::UNAUTHORIZED)
    }
}

impl LoginOwner for SignedIn {
    fn owner_id(&self) -> String {
        self.0.clone()
    }
}

/// Which Withings user each owner connected, as the `on_connected` hook recorded it.
pub(crate) type Connected = Arc<Mutex<HashMap<String, UserId>>>;

/// Starts an instance serving `login.router()` on `listener`.
pub(crate) fn serve(listener: tokio::net::TcpListener, login: WithingsLogin) -> Instance {
    let base: Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let app: Router = login.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Instance { base, login }
}

/// Two instances sharing their stores; both use B's callback as their redirect URI.
pub(crate) async fn two_instances(sandbox: &Sandbox) -> (Instance, Instance, Connected) {
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/callback", b.local_addr().unwrap());
    let pending: Arc<dyn PendingLoginStore> = Arc::new(MemoryPendingLogins::new());
    let tokens: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let connected: Connected = Arc::default();
    let key = CookieKey::generate().unwrap();
    let build = || {
        let client = Client::builder()
            .client_id(DEFAULT_CLIENT_ID)
            .client_secret(DEFAULT_CLIENT_SECRET)
            .redirect_uri(redirect.as_str())
            .base_url(sandbox.base_url())
            .build()
            .unwrap();
        let record = connected.clone();
        WithingsLogin::builder::<SignedIn>(client, pending.clone(), tokens.clone(), &key)
            .after_login("/done")
            .on_connected(move |c| {
                record.lock().unwrap().insert(c.owner, c.user_id);
                async { Ok::<(), std::convert::Infallible>(()) }
            })
            .build()
    };
    (serve(a, build()), serve(b, build()), connected)
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Connects `owner` at `instance`, from the application's own page: the binding cookie and
/// the callback URL Withings sends the browser to (not yet opened).
pub(crate) async fn connect(instance: &Instance, owner: &str) -> (String, Url) {
    let response = http()
        .post(instance.base.join("withings/connect").unwrap())
        .header("x-user", owner)
        .header("sec-fetch-site", "same-origin")
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

/// Opens `callback` as `user`'s browser, with `cookie` if any.
pub(crate) async fn open(
    callback: &Url,
    user: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = http().get(callback.clone()).header("x-user", user);
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
