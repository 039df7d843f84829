//! Tests of the loopback listener and the browser-or-paste agent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};

use super::bind::*;
use super::server::*;
use super::*;
use crate::user_agent::paste::tests::{STATE, SharedOutput, authorize_url};
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

/// Sends `request` to `addr` and returns the whole answer.
async fn send_to(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    answer
}

async fn send(port: u16, request: &str) -> String {
    send_to(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), request).await
}

fn get(path_and_query: &str) -> String {
    format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// A listener for `configured`, waiting on its own task: the redirect URI, the start link.
async fn listen(configured: &str) -> (Url, String, JoinHandle<Result<Url, UserAgentError>>) {
    let (redirect_uri, listeners) = bind(&configured.parse().unwrap()).await.unwrap();
    let authorize = authorize_url(redirect_uri.as_str());
    let (listening, start) = Listening::new(&listeners, redirect_uri.clone(), &authorize).unwrap();
    let wait = tokio::spawn(wait_for_callback(listeners, listening));
    (redirect_uri, start.expose_secret().to_owned(), wait)
}

#[test]
fn only_loopback_http_redirect_uris_are_supported() {
    let addr = |s: &str| listen_addr(&s.parse().unwrap());
    let at = |a: &str, also_ipv6| ListenAddr {
        addr: a.parse().unwrap(),
        also_ipv6,
    };
    assert_eq!(
        addr("http://127.0.0.1:0/cb").unwrap(),
        at("127.0.0.1:0", false)
    );
    assert_eq!(
        addr("http://localhost:8123/cb").unwrap(),
        at("127.0.0.1:8123", true)
    );
    assert_eq!(addr("http://[::1]:0/cb").unwrap(), at("[::1]:0", false));
    // No port is http's port 80, whether written or not: never "any port".
    for port_80 in ["http://127.0.0.1/cb", "http://127.0.0.1:80/cb"] {
        assert_eq!(
            addr(port_80).unwrap(),
            at("127.0.0.1:80", false),
            "{port_80}"
        );
    }
    assert_eq!(addr("http://[::1]/cb").unwrap(), at("[::1]:80", false));
    for bad in [
        "https://app.example.com/cb",
        "https://127.0.0.1:8123/cb",
        "http://192.168.1.2:8123/cb",
        "http://0.0.0.0:8123/cb",
        "http://example.com/cb",
    ] {
        match addr(bad) {
            Err(UserAgentError::UnsupportedRedirectUri { reason }) => {
                assert!(reason.contains("BrowserOrPasteAgent"), "{reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn a_privileged_port_error_suggests_port_0() {
    let err = bind_error(
        "127.0.0.1:80".parse().unwrap(),
        io::ErrorKind::PermissionDenied.into(),
    );
    assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:80"), "{text}");
    assert!(text.contains("http://127.0.0.1:0/callback"), "{text}");
}

#[tokio::test]
async fn prepare_binds_a_free_port_on_both_loopback_addresses_for_localhost() {
    let agent = LoopbackAgent::new();
    let configured: Url = "http://localhost:0/callback".parse().unwrap();
    let mut prepared = agent.prepare(&configured).await.unwrap();
    let port = prepared.redirect_uri().port().unwrap();
    assert_ne!(port, 0);
    assert_eq!(prepared.redirect_uri().host_str(), Some("localhost"));
    assert_eq!(prepared.redirect_uri().path(), "/callback");
    let listeners = prepared.take_resource::<Listeners>().unwrap();
    let first = listeners.first.local_addr().unwrap();
    assert_eq!(first, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    match &listeners.second {
        Some(second) => assert_eq!(
            second.local_addr().unwrap(),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port))
        ),
        None => assert!(
            ipv6_unavailable(),
            "IPv6 works here, yet [::1] was not bound"
        ),
    }
}

/// Another program holding `[::1]:P` would get the callback of a browser that resolves
/// `localhost` to `::1`: the login must not start on `127.0.0.1` alone.
#[tokio::test]
async fn localhost_is_refused_when_another_program_holds_its_ipv6_side() {
    // The thief's port may be in use on 127.0.0.1 by an unrelated program: pick another.
    for _ in 0..20 {
        let Ok(thief) = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
            assert!(ipv6_unavailable());
            return;
        };
        let port = thief.local_addr().unwrap().port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let configured: Url = format!("http://localhost:{port}/callback").parse().unwrap();
        let err = LoopbackAgent::new().prepare(&configured).await.unwrap_err();
        if err.to_string().contains(&format!("127.0.0.1:{port}")) {
            continue; // taken on IPv4 between the check and the bind
        }
        assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("[::1]:{port}")), "{err}");
        // The IPv4 side it bound first is released again.
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        return;
    }
    panic!("no port was free on 127.0.0.1 while taken on [::1] in 20 tries");
}

#[tokio::test]
async fn a_localhost_callback_over_ipv6_ends_the_wait() {
    if ipv6_unavailable() {
        return;
    }
    let (redirect_uri, _, wait) = listen("http://localhost:0/callback").await;
    let port = redirect_uri.port().unwrap();
    let answer = send_to(
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        &get(&format!("/callback?code=C&state={STATE}")),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let callback = wait.await.unwrap().unwrap();
    assert_eq!(callback.host_str(), Some("localhost"));
}

#[tokio::test]
async fn the_start_link_redirects_to_the_authorize_url_once() {
    let (redirect_uri, start, _wait) = listen("http://127.0.0.1:0/callback").await;
    let start: Url = start.parse().unwrap();
    assert_eq!(start.host_str(), Some("127.0.0.1"));
    assert_eq!(start.port(), redirect_uri.port());
    assert!(start.path().starts_with(START_PREFIX), "{start}");
    assert!(start.query().is_none());
    assert!(!start.as_str().contains(STATE));
    let port = redirect_uri.port().unwrap();

    let guessed = send(port, &get("/start/guessed")).await;
    assert!(guessed.starts_with("HTTP/1.1 404"), "{guessed}");
    let post = send(
        port,
        &format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            start.path()
        ),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");

    let first = send(port, &get(start.path())).await;
    assert!(first.starts_with("HTTP/1.1 302"), "{first}");
    let location = first
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("a Location header");
    assert_eq!(location, authorize_url(redirect_uri.as_str()).as_str());

    let second = send(port, &get(start.path())).await;
    assert!(second.starts_with("HTTP/1.1 404"), "{second}");
    assert!(second.contains("already used"), "{second}");
}

#[tokio::test]
async fn a_second_request_for_the_start_link_stops_the_login() {
    let (redirect_uri, start, wait) = listen("http://127.0.0.1:0/callback").await;
    let start: Url = start.parse().unwrap();
    let port = redirect_uri.port().unwrap();
    // Someone else read the link (off the browser's command line) and opened it first.
    let first = send(port, &get(start.path())).await;
    assert!(first.starts_with("HTTP/1.1 302"), "{first}");
    // A guess at another link is not a second request for this one.
    let guessed = send(port, &get("/start/guessed")).await;
    assert!(guessed.starts_with("HTTP/1.1 404"), "{guessed}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!wait.is_finished());

    // The user's browser opens it: the login ends, and no callback with its state is taken.
    let second = send(port, &get(start.path())).await;
    assert!(second.starts_with("HTTP/1.1 404"), "{second}");
    let err = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the login ends")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, UserAgentError::StartLinkReused), "{err:?}");
    assert!(err.to_string().contains("start the login again"), "{err}");
    let late = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(
        late.is_err(),
        "the listener is closed: a forged callback finds no one"
    );
}

#[tokio::test]
async fn a_callback_racing_the_users_browser_for_the_start_link_is_held_and_dropped() {
    let (redirect_uri, start, wait) = listen("http://127.0.0.1:0/callback").await;
    let start: Url = start.parse().unwrap();
    let port = redirect_uri.port().unwrap();
    // Another program read the link off the browser's command line, opened it first, and at
    // once sent a callback with the state and a code it got in advance (Withings does not bind
    // codes to the state).
    let first = send(port, &get(start.path())).await;
    assert!(first.starts_with("HTTP/1.1 302"), "{first}");
    let forged = send(port, &get(&format!("/callback?code=THEIRS&state={STATE}"))).await;
    assert!(forged.starts_with("HTTP/1.1 200"), "{forged}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wait.is_finished(), "the callback is held");
    // The user's browser, a moment later, asks for the link: the login ends, the forged
    // callback is never returned.
    let second = send(port, &get(start.path())).await;
    assert!(second.starts_with("HTTP/1.1 404"), "{second}");
    let err = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the login ends")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, UserAgentError::StartLinkReused), "{err:?}");
}

#[tokio::test]
async fn a_callback_soon_after_the_start_link_is_taken_once_the_hold_passed() {
    let (redirect_uri, start, wait) = listen("http://127.0.0.1:0/callback").await;
    let start: Url = start.parse().unwrap();
    let port = redirect_uri.port().unwrap();
    let opened = tokio::time::Instant::now();
    assert!(
        send(port, &get(start.path()))
            .await
            .starts_with("HTTP/1.1 302")
    );
    let right = send(port, &get(&format!("/callback?code=C&state={STATE}"))).await;
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");
    let callback = tokio::time::timeout(START_LINK_HOLD * 3, wait)
        .await
        .expect("taken after the hold")
        .unwrap()
        .unwrap();
    assert!(opened.elapsed() >= START_LINK_HOLD);
    assert_eq!(
        callback.query(),
        Some(format!("code=C&state={STATE}").as_str())
    );
}

#[tokio::test]
async fn foreign_callbacks_get_400_and_the_right_one_ends_the_wait() {
    let (redirect_uri, _, wait) = listen("http://127.0.0.1:0/callback").await;
    let port = redirect_uri.port().unwrap();

    let wrong = send(port, &get("/callback?code=C&state=forged")).await;
    assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
    assert!(wrong.contains("different login"), "{wrong}");
    let favicon = send(port, &get("/favicon.ico")).await;
    assert!(favicon.starts_with("HTTP/1.1 404"), "{favicon}");
    let post = send(
        port,
        &format!(
            "POST /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let body = send(
        port,
        &format!(
            "GET /callback?code=C&state={STATE} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        ),
    )
    .await;
    assert!(body.starts_with("HTTP/1.1 400"), "{body}");
    let huge = send(
        port,
        &format!(
            "GET /callback HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES * 2)
        ),
    )
    .await;
    assert!(huge.starts_with("HTTP/1.1 431"), "{huge}");
    assert!(!wait.is_finished());

    let right = send(port, &get(&format!("/callback?code=C0DE&state={STATE}"))).await;
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");
    assert!(right.contains("You can close this window"), "{right}");
    assert!(!right.contains("C0DE"));
    let callback = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        callback.as_str(),
        format!("http://127.0.0.1:{port}/callback?code=C0DE&state={STATE}")
    );
}

#[tokio::test]
async fn a_denial_with_the_right_state_ends_the_wait_with_a_denied_page() {
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .on_authorize_url(|_| {});
    let prepared = agent
        .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
        .await
        .unwrap();
    let redirect_uri = prepared.redirect_uri().clone();
    let port = redirect_uri.port().unwrap();
    let authorize = authorize_url(redirect_uri.as_str());
    let browser = tokio::spawn(async move {
        send(
            port,
            &get(&format!("/callback?error=access_denied&state={STATE}")),
        )
        .await
    });
    let callback = agent.run(prepared, &authorize).await.unwrap();
    assert!(callback.query().unwrap().contains("error=access_denied"));
    let page = browser.await.unwrap();
    assert!(page.contains("Access denied"), "{page}");
}

#[tokio::test]
async fn it_times_out_and_frees_the_port() {
    let shown = Arc::new(Mutex::new(None::<Url>));
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .timeout(Duration::from_millis(200))
        .on_authorize_url({
            let shown = shown.clone();
            move |url| *shown.lock().unwrap() = Some(url.clone())
        });
    let prepared = agent
        .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
        .await
        .unwrap();
    let port = prepared.redirect_uri().port().unwrap();
    let authorize = authorize_url(prepared.redirect_uri().as_str());
    let err = agent.run(prepared, &authorize).await.unwrap_err();
    assert!(matches!(err, UserAgentError::TimedOut(d) if d == Duration::from_millis(200)));
    assert_eq!(shown.lock().unwrap().as_ref(), Some(&authorize));
    TcpListener::bind(("127.0.0.1", port)).await.unwrap();
}

#[tokio::test]
async fn https_redirect_uris_are_refused_with_advice() {
    let err = LoopbackAgent::new()
        .prepare(&"https://app.example.com/withings/callback".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PasteAgent"), "{err}");
}

#[tokio::test]
async fn browser_or_paste_takes_the_loopback_redirect_or_the_paste() {
    // The loopback redirect arrives while nothing is pasted.
    let (reader, _keep_open) = tokio::io::duplex(64);
    let out = SharedOutput::default();
    let agent = BrowserOrPasteAgent::new(tokio::io::BufReader::new(reader), out.clone())
        .open_browser(false);
    let prepared = agent
        .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
        .await
        .unwrap();
    let port = prepared.redirect_uri().port().unwrap();
    let authorize = authorize_url(prepared.redirect_uri().as_str());
    let browser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(port, &get(&format!("/callback?code=C&state={STATE}"))).await
    });
    let callback = agent.run(prepared, &authorize).await.unwrap();
    assert_eq!(callback.port(), Some(port));
    assert!(browser.await.unwrap().starts_with("HTTP/1.1 200"));
    let text = out.text();
    assert!(text.contains("finishes by itself"), "{text}");
    assert!(text.contains("nothing to paste"), "{text}");
    // The user is shown the one-time start link, never the authorize URL and its state.
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/start/")),
        "{text}"
    );
    assert!(!text.contains(STATE), "the state is in the output: {text}");
    assert!(
        !text.contains("authorize2"),
        "the authorize URL is in the output: {text}"
    );

    // An https redirect URI: no listener, the paste ends it.
    let https: Url = "https://app.example.com/withings/callback".parse().unwrap();
    let typed = format!("{https}?code=C&state={STATE}\n");
    let agent = BrowserOrPasteAgent::new(io::Cursor::new(typed.into_bytes()), tokio::io::sink())
        .open_browser(false);
    let prepared = agent.prepare(&https).await.unwrap();
    assert_eq!(prepared.redirect_uri(), &https);
    let callback = agent
        .run(prepared, &authorize_url(https.as_str()))
        .await
        .unwrap();
    assert_eq!(callback.host_str(), Some("app.example.com"));
}

#[tokio::test]
async fn browser_or_paste_times_out_and_frees_the_port() {
    let (reader, _keep_open) = tokio::io::duplex(64);
    let out = SharedOutput::default();
    let agent = BrowserOrPasteAgent::new(tokio::io::BufReader::new(reader), out.clone())
        .open_browser(false)
        .timeout(Duration::from_millis(300));
    let prepared = agent
        .prepare(&"http://127.0.0.1:0/callback".parse().unwrap())
        .await
        .unwrap();
    let port = prepared.redirect_uri().port().unwrap();
    let authorize = authorize_url(prepared.redirect_uri().as_str());
    let run = agent.run(prepared, &authorize);
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the agent's own timeout ends the login")
        .unwrap_err();
    assert!(matches!(err, UserAgentError::TimedOut(d) if d == Duration::from_millis(300)));
    assert!(out.text().contains("the login timed out"), "{}", out.text());
    TcpListener::bind(("127.0.0.1", port)).await.unwrap();
}

#[tokio::test]
async fn a_taken_fixed_port_is_refused_by_both_agents() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let redirect_uri: Url = format!("http://127.0.0.1:{port}/callback").parse().unwrap();

    let err = LoopbackAgent::new()
        .prepare(&redirect_uri)
        .await
        .unwrap_err();
    assert!(matches!(err, UserAgentError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // The program holding the port would receive the browser's `GET /callback?code=..`.
    let out = SharedOutput::default();
    let agent =
        BrowserOrPasteAgent::new(io::Cursor::new(Vec::new()), out.clone()).open_browser(false);
    let err = agent.prepare(&redirect_uri).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("port is taken"), "{message}");
    assert!(message.contains("stop that program"), "{message}");
    assert!(out.text().is_empty(), "no prompt: the login never started");
}

#[tokio::test]
async fn an_ipv6_loopback_redirect_is_served_on_ipv6_loopback() {
    let configured: Url = "http://[::1]:0/callback".parse().unwrap();
    let (redirect_uri, listeners) = match bind(&configured).await {
        Ok(bound) => bound,
        // A host without IPv6 gets a typed error naming the address, not a panic.
        Err(e @ UserAgentError::Io { .. }) => {
            assert!(e.to_string().contains("[::1]:0"), "{e}");
            return;
        }
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(redirect_uri.host_str(), Some("[::1]"));
    assert!(listeners.second.is_none());
    let addr = listeners.first.local_addr().unwrap();
    assert_eq!(addr.ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
    let authorize = authorize_url(redirect_uri.as_str());
    let (listening, start) = Listening::new(&listeners, redirect_uri.clone(), &authorize).unwrap();
    assert!(
        start
            .expose_secret()
            .starts_with(&format!("http://[::1]:{}/start/", addr.port()))
    );
    let wait = tokio::spawn(wait_for_callback(listeners, listening));
    let answer = send_to(addr, &get(&format!("/callback?code=C&state={STATE}"))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let callback = wait.await.unwrap().unwrap();
    assert_eq!(callback.host_str(), Some("[::1]"));
    assert_eq!(callback.port(), Some(addr.port()));
}
