//! The token endpoint's `{status, body}` envelope, as a code exchange and a refresh read it.
//!
//! The answer comes from a small HTTP server on 127.0.0.1 that replies to every request with the
//! fuzz input, so the bytes go through the same path as a real answer from Withings.
//!
//! Properties: tokens are accepted only from an envelope whose `status` is 0; accepted
//! credentials are the ones in `body` and survive a trip through the stored form; no error
//! message or `Debug` holds the client secret or a token.

#![no_main]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use url::Url;
use withings_oauth::{
    Authorized, Client, Credentials, Scopes, StoredCredentials, Unauthorized, UserId,
};

const CLIENT_SECRET: &str = "client-secret-5b3d9e21f07a";
const OLD_ACCESS: &str = "old-access-token-8c1f2d";
const OLD_REFRESH: &str = "old-refresh-token-4e6a90";

struct Fixture {
    rt: tokio::runtime::Runtime,
    client: Client,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let answer = Arc::new(Mutex::new(Vec::new()));
        let addr = serve(answer.clone());
        let client = Client::builder()
            .client_id("fuzz-client")
            .client_secret(CLIENT_SECRET)
            .redirect_uri("https://app.example.com/withings/callback")
            .base_url(Url::parse(&format!("http://{addr}/")).unwrap())
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Fixture { rt, client, answer }
    })
}

/// An HTTP/1.1 server that answers every request with `answer`, keeping connections alive.
fn serve(answer: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = answer.lock().unwrap().clone();
                    // One write: head and body in two would wait for a delayed ACK each time.
                    let mut reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    )
                    .into_bytes();
                    reply.extend_from_slice(&answer);
                    if writer.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn old_login(client: &Client) -> Authorized {
    let stored = StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: UserId::new(1001),
        access_token: OLD_ACCESS.into(),
        refresh_token: OLD_REFRESH.into(),
        expires_at: withings_oauth::chrono::Utc::now(),
        scopes: "user.metrics".parse().unwrap(),
        token_type: "Bearer".into(),
    };
    Authorized::from_credentials(client, Credentials::from_stored(stored).unwrap())
}

/// What the envelope says, read independently of the library.
fn envelope(answer: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(answer).ok()
}

fn check_no_secret(text: &str, answer: &str) {
    for secret in [CLIENT_SECRET, OLD_ACCESS, OLD_REFRESH] {
        if !answer.contains(secret) {
            assert!(!text.contains(secret), "a message holds a secret: {text}");
        }
    }
    // A token from the answer is a secret too, unless it also appears elsewhere in it (the
    // `error` text, which messages may quote).
    if let Some(body) = envelope(answer.as_bytes()).and_then(|v| v.get("body").cloned()) {
        for field in ["access_token", "refresh_token"] {
            if let Some(token) = body.get(field).and_then(|t| t.as_str())
                && token.len() >= 12
                && answer.matches(token).count() == 1
            {
                assert!(!text.contains(token), "a message holds the {field}: {text}");
            }
        }
    }
}

fn check_accepted(credentials: &Credentials, answer: &[u8]) {
    let v = envelope(answer).expect("tokens accepted from an answer that is not JSON");
    assert_eq!(
        v["status"].as_i64(),
        Some(0),
        "tokens accepted from a failed envelope"
    );
    let body = &v["body"];
    assert_eq!(
        body["access_token"].as_str(),
        Some(credentials.access_token().expose_secret()),
        "the access token is not the one in the answer"
    );
    let stored = credentials.reveal_for_storage();
    assert_eq!(
        body["refresh_token"].as_str(),
        Some(stored.refresh_token.as_str())
    );
    // The stored form reads back as the same credentials.
    let json = serde_json::to_string(&stored).unwrap();
    let again: StoredCredentials = serde_json::from_str(&json).unwrap();
    let again = Credentials::from_stored(again).expect("accepted credentials can't be stored");
    assert_eq!(again.user_id(), credentials.user_id());
    assert_eq!(
        again.access_token().expose_secret(),
        credentials.access_token().expose_secret()
    );
    assert_eq!(
        again.reveal_for_storage().refresh_token,
        stored.refresh_token
    );
    assert_eq!(again.expires_at(), credentials.expires_at());
    assert!(again.scopes().same_set(credentials.scopes()));
    assert!(!format!("{credentials:?}").contains(credentials.access_token().expose_secret()));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, answer)) = data.split_first() else {
        return;
    };
    let f = fixture();
    *f.answer.lock().unwrap() = answer.to_vec();
    let text = String::from_utf8_lossy(answer).into_owned();
    f.rt.block_on(async {
        if mode & 1 == 0 {
            match old_login(&f.client).refresh().await {
                Ok(new) => check_accepted(new.credentials(), answer),
                Err(e) => {
                    check_no_secret(&e.to_string(), &text);
                    check_no_secret(&format!("{e:?}"), &text);
                    if !e.login_required() {
                        let previous = e.login().expect("a failed refresh lost the old login");
                        assert_eq!(previous.access_token().expose_secret(), OLD_ACCESS);
                    }
                }
            }
        } else {
            let pending = Unauthorized::new(&f.client, Scopes::all()).begin().unwrap();
            let state: String = pending
                .authorize_url()
                .query_pairs()
                .find(|(k, _)| k == "state")
                .unwrap()
                .1
                .into_owned();
            let mut callback = pending.redirect_uri().clone();
            callback
                .query_pairs_mut()
                .append_pair("code", "fuzz-code")
                .append_pair("state", &state);
            match pending.complete(&callback).await {
                Ok(authorized) => check_accepted(authorized.credentials(), answer),
                Err(e) => {
                    check_no_secret(&e.to_string(), &text);
                    check_no_secret(&format!("{e:?}"), &text);
                    assert!(!e.to_string().contains(&state));
                }
            }
        }
    });
});
