//! Helpers shared by the integration tests: a plain reqwest client (no redirects) against a
//! sandbox on 127.0.0.1:0. Signatures are computed here independently of the crate.

#![allow(dead_code, unreachable_pub)]

pub mod child;
pub mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use url::Url;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, KNOWN_SCOPES, SEEDED_EMAIL, SEEDED_PASSWORD,
    SEEDED_USERID, Sandbox, SandboxConfig, SandboxHandle,
};

pub const REDIRECT: &str = "http://127.0.0.1:8765/callback";
pub const SCOPE: &str = "user.info,user.metrics";

pub struct Env {
    pub sandbox: Sandbox,
    pub handle: SandboxHandle,
    pub http: reqwest::Client,
}

pub async fn start(config: SandboxConfig) -> Env {
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let handle = sandbox.handle();
    Env {
        sandbox,
        handle,
        http: http_client(),
    }
}

/// A client that shows redirects instead of following them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sends `request` and parses the envelope, after checking the HTTP 200 that Withings answers
/// even for errors.
pub async fn envelope(request: reqwest::RequestBuilder) -> Value {
    let resp = request.send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "Withings answers HTTP 200 even for errors"
    );
    resp.json().await.unwrap()
}

/// The form of a code exchange authenticated with the client secret.
pub fn code_form<'a>(
    client_id: &'a str,
    client_secret: &'a str,
    code: &'a str,
    redirect_uri: &'a str,
) -> [(&'static str, &'a str); 6] {
    [
        ("action", "requesttoken"),
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ]
}

/// The form of a refresh authenticated with the client secret.
pub fn refresh_form<'a>(
    client_id: &'a str,
    client_secret: &'a str,
    refresh_token: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("action", "requesttoken"),
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("refresh_token", refresh_token),
    ]
}

/// `value[key]` as an owned string; panics with the value when it is not a string.
pub fn string(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
        .to_owned()
}

pub async fn start_default() -> Env {
    start(SandboxConfig::default()).await
}

pub fn auth_params(redirect_uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", DEFAULT_CLIENT_ID.into()),
        ("redirect_uri", redirect_uri.into()),
        ("scope", SCOPE.into()),
        ("state", "st4te".into()),
    ]
}

impl Env {
    pub fn url(&self, path: &str) -> Url {
        self.sandbox.base_url().join(path).unwrap()
    }

    pub fn authorize_url(&self, params: &[(&str, String)]) -> Url {
        let mut url = self
            .sandbox
            .account_url()
            .join("oauth2_user/authorize2")
            .unwrap();
        for (k, v) in params {
            url.query_pairs_mut().append_pair(k, v);
        }
        url
    }

    pub async fn get_page(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.http
            .get(self.authorize_url(params))
            .send()
            .await
            .unwrap()
    }

    pub async fn submit(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.http
            .post(self.url("oauth2_user/authorize2"))
            .form(params)
            .send()
            .await
            .unwrap()
    }

    /// Logs alice in through the form and returns the code.
    pub async fn code_for(&self, redirect_uri: &str) -> String {
        let mut form = auth_params(redirect_uri);
        form.push(("email", SEEDED_EMAIL.into()));
        form.push(("password", SEEDED_PASSWORD.into()));
        form.push(("decision", "allow".into()));
        let resp = self.submit(&form).await;
        assert_eq!(resp.status(), 302);
        location_params(&resp)["code"].clone()
    }

    /// A POST to `path`, to be completed and sent by the caller.
    pub fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// POSTs `form` to `path` and returns the response as it is (faults answer otherwise
    /// than with an envelope).
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.request(path).form(form).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        envelope(self.request(path).form(form)).await
    }

    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Value {
        let form = code_form(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, redirect_uri);
        self.post("v2/oauth2", &form).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.refresh_as(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, refresh_token)
            .await
    }

    pub async fn refresh_as(&self, client_id: &str, secret: &str, refresh_token: &str) -> Value {
        let form = refresh_form(client_id, secret, refresh_token);
        self.post("v2/oauth2", &form).await
    }

    /// A signed call of the default client: `action`, `client_id`, `nonce`, the signature of
    /// the three keyed by `secret`, then `extra`.
    pub async fn post_signed(
        &self,
        action: &str,
        nonce: &str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> Value {
        let signature = sign(secret, &[action, DEFAULT_CLIENT_ID, nonce]);
        let mut form = vec![
            ("action", action),
            ("client_id", DEFAULT_CLIENT_ID),
            ("nonce", nonce),
            ("signature", signature.as_str()),
        ];
        form.extend_from_slice(extra);
        self.post("v2/oauth2", &form).await
    }

    /// A signed call with a fresh nonce and the right secret.
    pub async fn signed(&self, action: &str, extra: &[(&str, &str)]) -> Value {
        let nonce = self.nonce().await;
        self.post_signed(action, &nonce, DEFAULT_CLIENT_SECRET, extra)
            .await
    }

    /// Code flow end to end: returns the token body.
    pub async fn tokens(&self) -> Value {
        let code = self.code_for(REDIRECT).await;
        let answer = self.exchange(&code, REDIRECT).await;
        assert_eq!(answer["status"], 0, "{answer}");
        answer["body"].clone()
    }

    pub async fn measure(&self, access_token: &str) -> Value {
        let request = self
            .request("measure")
            .bearer_auth(access_token)
            .form(&[("action", "getmeas")]);
        envelope(request).await
    }

    /// An access token of the seeded user with `scopes`, valid an hour, minted without a login.
    pub fn login(&self, scopes: &[&str]) -> String {
        self.handle
            .issue_tokens(
                SEEDED_USERID,
                DEFAULT_CLIENT_ID,
                scopes,
                Duration::from_secs(3600),
            )
            .unwrap()
            .access_token
    }

    /// An access token with every scope.
    pub fn login_all(&self) -> String {
        self.login(&KNOWN_SCOPES)
    }

    /// A data call: `form` POSTed to `path` with `token` as bearer; the envelope.
    pub async fn call(&self, path: &str, token: &str, form: &[(&str, &str)]) -> Value {
        envelope(self.request(path).bearer_auth(token).form(form)).await
    }

    pub async fn getnonce_raw(&self, timestamp: u64, secret: &str) -> Value {
        let ts = timestamp.to_string();
        let signature = sign(secret, &["getnonce", DEFAULT_CLIENT_ID, &ts]);
        self.post(
            "v2/signature",
            &[
                ("action", "getnonce"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("timestamp", &ts),
                ("signature", &signature),
            ],
        )
        .await
    }

    pub async fn nonce(&self) -> String {
        let answer = self.getnonce_raw(now(), DEFAULT_CLIENT_SECRET).await;
        assert_eq!(answer["status"], 0, "{answer}");
        answer["body"]["nonce"].as_str().unwrap().to_owned()
    }
}

/// `Y-m-d` of `days` days from today (UTC).
pub fn ymd(days: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Withings' signature: hex HMAC-SHA256 of the values joined by commas.
pub fn sign(secret: &str, values: &[&str]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(values.join(",").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn location_params(resp: &reqwest::Response) -> HashMap<String, String> {
    let location = resp.headers()["location"].to_str().unwrap();
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn assert_error(answer: &Value, status: u64, error: &str) {
    assert_eq!(answer["status"], status, "{answer}");
    assert_eq!(answer["error"], error, "{answer}");
    assert_eq!(answer["body"], serde_json::json!({}), "{answer}");
}
