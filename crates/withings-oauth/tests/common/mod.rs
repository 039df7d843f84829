//! Shared pieces of the integration tests: a client aimed at a mock server, token answers in
//! Withings' envelope, and readers for the forms the library sent.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use sha2::Sha256;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use withings_oauth::{
    AuthMethod, Authorized, Client, Credentials, PendingCallback, Scopes, StoredCredentials,
    Unauthorized, UserId,
};

pub(crate) const CLIENT_ID: &str = "cid-1234";
pub(crate) const CLIENT_SECRET: &str = "csecret-5678";
pub(crate) const REDIRECT_URI: &str = "https://app.example.com/withings/callback";
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

pub(crate) fn base_url(server: &MockServer) -> Url {
    server.uri().parse().expect("the mock server's URI")
}

pub(crate) fn client(server: &MockServer) -> Client {
    client_with(server, AuthMethod::ClientSecret, CLIENT_SECRET)
}

pub(crate) fn client_with(server: &MockServer, auth: AuthMethod, secret: &str) -> Client {
    Client::builder()
        .client_id(CLIENT_ID)
        .client_secret(secret)
        .redirect_uri(REDIRECT_URI)
        .base_url(base_url(server))
        .auth_method(auth)
        .build()
        .expect("a valid client")
}

/// A successful token answer, as Withings sends it.
pub(crate) fn token_answer(
    userid: serde_json::Value,
    access: &str,
    refresh: &str,
    scope: &str,
) -> String {
    serde_json::json!({
        "status": 0,
        "body": {
            "userid": userid,
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": 10800,
            "scope": scope,
            "csrf_token": "PACnnxwHTaBQOzF7bQqwFUUotIuvtzSM",
            "token_type": "Bearer"
        }
    })
    .to_string()
}

pub(crate) fn json_response(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into().into_bytes(), "application/json")
}

/// A mock Withings whose token endpoint answers every request with `template`.
pub(crate) async fn token_server(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

pub(crate) async fn mount_token_answer(server: &MockServer, body: impl Into<String>) {
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .respond_with(json_response(body))
        .mount(server)
        .await;
}

pub(crate) async fn mount_nonce(server: &MockServer, nonce: &str) {
    Mock::given(method("POST"))
        .and(path("/v2/signature"))
        .respond_with(json_response(
            serde_json::json!({"status": 0, "body": {"nonce": nonce}}).to_string(),
        ))
        .mount(server)
        .await;
}

pub(crate) async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

/// The form of a request, refusing repeated fields (a repeated field would be ambiguous to
/// Withings).
pub(crate) fn form(request: &Request) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(&request.body).into_owned() {
        assert!(map.insert(k.clone(), v).is_none(), "field {k} sent twice");
    }
    map
}

pub(crate) fn expected_form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn content_type(request: &Request) -> &str {
    request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Starts a login and returns it with the `state` its authorize URL carries.
pub(crate) fn begin(client: &Client, scopes: Scopes) -> (PendingCallback, String) {
    let pending = Unauthorized::new(client, scopes)
        .begin()
        .expect("a login starts");
    let state = query_value(pending.authorize_url(), "state").expect("the URL has a state");
    (pending, state)
}

pub(crate) fn query_value(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The callback Withings would send after the user allowed access.
pub(crate) fn callback(code: &str, state: &str) -> Url {
    let mut url = Url::parse(REDIRECT_URI).unwrap();
    url.query_pairs_mut()
        .append_pair("code", code)
        .append_pair("state", state);
    url
}

/// A login restored from storage, with known tokens.
pub(crate) fn authorized(
    client: &Client,
    user: u64,
    access: &str,
    refresh: &str,
    expires_at: DateTime<Utc>,
    scopes: &str,
) -> Authorized {
    let stored = StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: UserId::new(user),
        access_token: access.to_owned(),
        refresh_token: refresh.to_owned(),
        expires_at,
        scopes: Scopes::parse_granted(scopes),
        token_type: "Bearer".to_owned(),
    };
    let credentials = Credentials::from_stored(stored).expect("valid stored credentials");
    Authorized::from_credentials(client, credentials)
}

pub(crate) fn refresh_token_of(authorized: &Authorized) -> String {
    authorized.credentials().reveal_for_storage().refresh_token
}

pub(crate) fn access_token_of(authorized: &Authorized) -> String {
    authorized.credentials().reveal_for_storage().access_token
}

/// HMAC-SHA256 in lowercase hex, computed here independently of the library.
pub(crate) fn hmac_hex(key: &str, message: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A local port nothing listens on: bound, then released.
pub(crate) fn closed_port_url() -> Url {
    let port = withings_oauth::testing::free_port();
    format!("http://127.0.0.1:{port}/").parse().unwrap()
}

pub(crate) const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// What a token, code or client secret can look like.
pub(crate) fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{8,40}"
}

/// Fails if `shown` contains any of `secrets`.
pub(crate) fn assert_hidden(
    what: &str,
    shown: &str,
    secrets: &[&str],
) -> Result<(), TestCaseError> {
    for secret in secrets {
        prop_assert!(
            !shown.contains(secret),
            "{} shows a secret: {}",
            what,
            shown
        );
    }
    Ok(())
}

/// Answers every call with an error whose text repeats the secrets of the request (`code`,
/// `refresh_token`, `client_secret`) and the client secret of the current case, as a careless
/// server could. The client id says how: `echo-<status>` or `cut-<status>` (the secret pushed
/// past the length limit of kept messages, so only its beginning would remain);
/// `after-<status>-<text>` (the first secret right after `<text>`); `signed-<status>` answers
/// `getnonce` normally and echoes at `/v2/oauth2`.
pub(crate) fn echo(client_secret: Arc<Mutex<String>>) -> impl Fn(&Request) -> ResponseTemplate {
    move |request| {
        let form = form(request);
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let mut parts = client_id.splitn(3, '-');
        let (mode, status) = (parts.next().unwrap(), parts.next().unwrap_or("503"));
        let text_before = parts.next().unwrap_or_default();
        if request.url.path() == "/v2/signature" && mode == "signed" {
            return json_response(r#"{"status":0,"body":{"nonce":"n0nce"}}"#);
        }
        let mut echoed: Vec<String> = ["code", "refresh_token", "client_secret"]
            .iter()
            .filter_map(|k| form.get(*k).cloned())
            .collect();
        echoed.push(client_secret.lock().unwrap().clone());
        let text = match mode {
            "cut" => format!("{}{}", "x".repeat(200 - echoed[0].len() / 2), echoed[0]),
            "after" => format!("{text_before}{}", echoed[0]),
            _ => format!("Invalid Params: bad {}", echoed.join(" and ")),
        };
        let status: i64 = status.parse().unwrap();
        json_response(serde_json::json!({"status": status, "body": {}, "error": text}).to_string())
    }
}

pub(crate) fn echo_client(
    server: &MockServer,
    client_id: &str,
    secret: &str,
    auth: AuthMethod,
) -> Client {
    Client::builder()
        .client_id(client_id)
        .client_secret(secret)
        .redirect_uri(REDIRECT_URI)
        .base_url(base_url(server))
        .auth_method(auth)
        .build()
        .unwrap()
}

pub(crate) fn network_config(cases: u32) -> Config {
    Config {
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

/// A one-shot HTTP server on a raw socket, for answers wiremock can't give: it reads one request,
/// writes `head` and `body_start`, waits `stall`, then closes the connection.
pub(crate) fn raw_server(head: String, body_start: &'static [u8], stall: Duration) -> Url {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let mut stream = reader.into_inner();
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body_start);
        let _ = stream.flush();
        std::thread::sleep(stall);
    });
    format!("http://127.0.0.1:{port}/").parse().unwrap()
}

/// A client for `base`, with short timeouts.
pub(crate) fn impatient_client(base: Url) -> Client {
    Client::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .redirect_uri(REDIRECT_URI)
        .base_url(base)
        .timeouts(SHORT_TIMEOUT, SHORT_TIMEOUT)
        .build()
        .expect("a valid client")
}
