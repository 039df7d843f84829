//! Raw bytes sent to the loopback listener before the real callback: a port scanner, a stray
//! browser tab, a hostile local process.
//!
//! Properties: whatever comes first, the listener stays up and the login ends with this
//! login's callback; it never hands back a callback with another state.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;
use withings_oauth::LoopbackAgent;
use withings_oauth::{UserAgent, screen_callback};

const STATE: &str = "s7a7e-Zq93kP0xR2vLm8";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn authorize_url(redirect_uri: &Url) -> Url {
    let mut url = Url::parse("https://account.withings.com/oauth2_user/authorize2").unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "fuzz-client")
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("scope", "user.metrics")
        .append_pair("state", STATE);
    url
}

/// Sends `bytes` on one connection and reads whatever comes back, within a second.
async fn send(port: u16, bytes: &[u8]) {
    // Refused once the login is over, which the fuzz bytes may end themselves.
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut answer)).await;
}

fuzz_target!(|data: &[u8]| {
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .on_authorize_url(|_| {})
        .timeout(Duration::from_secs(5));
    runtime().block_on(async {
        let redirect_uri = Url::parse("http://127.0.0.1:0/callback").unwrap();
        let prepared = agent.prepare(&redirect_uri).await.unwrap();
        let redirect_uri = prepared.redirect_uri().clone();
        let port = redirect_uri.port().unwrap();
        let authorize_url = authorize_url(&redirect_uri);
        let real = format!("GET /callback?code=the-real-code&state={STATE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let client = async {
            send(port, data).await;
            send(port, real.as_bytes()).await;
        };
        let (result, ()) = tokio::join!(agent.run(prepared, &authorize_url), client);
        let callback = result.expect("the listener stopped before the real callback");
        // This login's end: a code, a denial, or a callback without either (the flow then
        // fails with `MissingCode`); never one that belongs elsewhere.
        if let Err(e) = screen_callback(&authorize_url, &callback) {
            assert!(!e.is_foreign(), "the listener handed back a callback that is not this login's: {e}");
        }
        let states: Vec<_> = callback.query_pairs().filter(|(k, _)| k == "state").collect();
        assert_eq!(states.len(), 1, "the listener handed back a callback without one state");
        assert_eq!(states[0].1, STATE, "the listener handed back a callback with another state");
    });
});
