//! Helpers shared by the integration tests: a plain reqwest client (no redirects) against a
//! sandbox on 127.0.0.1:0. Signatures are computed here independently of the crate.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use url::Url;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEEDED_EMAIL, SEEDED_PASSWORD, Sandbox,
    SandboxConfig, SandboxHandle,
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
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        sandbox,
        handle,
        http,
    }
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

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "Withings answers HTTP 200 even for errors"
        );
        resp.json().await.unwrap()
    }

    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Value {
        self.post(
            "v2/oauth2",
            &[
                ("action", "requesttoken"),
                ("grant_type", "authorization_code"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ],
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.post(
            "v2/oauth2",
            &[
                ("action", "requesttoken"),
                ("grant_type", "refresh_token"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("refresh_token", refresh_token),
            ],
        )
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
        let resp = self
            .http
            .post(self.url("measure"))
            .bearer_auth(access_token)
            .form(&[("action", "getmeas")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
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
