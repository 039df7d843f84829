//! Text pasted into the paste agent: any lines, any bytes.
//!
//! Properties: what the agent returns is this login's callback (or its denial), never another
//! login's; the agent never writes a pasted code back out.

#![no_main]

use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use url::Url;
use withings_oauth::PasteAgent;
use withings_oauth::{Prepared, UserAgent, screen_callback};

const REDIRECT_URI: &str = "https://app.example.com/withings/callback";
const STATE: &str = "s7a7e-Zq93kP0xR2vLm8";

/// A writer whose bytes stay readable after the agent is done with it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn authorize_url() -> Url {
    let mut url = Url::parse("https://account.withings.com/oauth2_user/authorize2").unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "fuzz-client")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "user.metrics")
        .append_pair("state", STATE);
    url
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Everything the agent writes when nothing is pasted: instructions, not echoes.
fn baseline() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| run(b"\n").1)
}

fn run(input: &[u8]) -> (Result<Url, withings_oauth::UserAgentError>, String) {
    let out = Shared::default();
    let agent = PasteAgent::new(Cursor::new(input.to_vec()), out.clone()).max_attempts(3);
    let authorize_url = authorize_url();
    let result = runtime().block_on(agent.run(
        Prepared::new(Url::parse(REDIRECT_URI).unwrap()),
        &authorize_url,
    ));
    let text = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    (result, text)
}

fuzz_target!(|data: &[u8]| {
    let (result, output) = run(data);
    let input = String::from_utf8_lossy(data);
    if let Ok(callback) = &result {
        // This login's end: a code, a denial, or a callback without either (the flow then
        // fails with `MissingCode`); never one that belongs elsewhere.
        if let Err(e) = screen_callback(&authorize_url(), callback) {
            assert!(
                !e.is_foreign(),
                "the agent returned a callback that is not this login's: {e}"
            );
        }
        let states: Vec<_> = callback
            .query_pairs()
            .filter(|(k, _)| k == "state")
            .collect();
        assert_eq!(
            states.len(),
            1,
            "the agent returned a callback without one state"
        );
        assert_eq!(
            states[0].1, STATE,
            "the agent returned a callback with another state"
        );
    }
    // Refused lines are not echoed either: a code in any pasted line stays out of the output.
    for line in input.lines() {
        let line = line.trim();
        let pairs: Vec<(String, String)> = match Url::parse(line) {
            Ok(url) => url.query_pairs().into_owned().collect(),
            Err(_) => url::form_urlencoded::parse(line.as_bytes())
                .into_owned()
                .collect(),
        };
        for (_, code) in pairs.iter().filter(|(k, _)| k == "code") {
            if code.len() >= 10
                && code.chars().any(|c| c.is_ascii_digit())
                && input.matches(code.as_str()).count() == 1
                && !baseline().contains(code.as_str())
            {
                assert!(
                    !output.contains(code.as_str()),
                    "a pasted code was written back: {output}"
                );
            }
        }
    }
});
