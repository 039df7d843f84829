//! Other local programs attack the loopback listener while a real login is under way: forged
//! callbacks, an oversized header, a client that sends one byte a second, a crowd of idle
//! connections. The login must still finish, and the port must be free afterwards. Dropping a
//! login mid-wait frees the port too.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use url::Url;
use withings_oauth::{Scope, Scopes};
use withings_oauth_e2e::{
    follow_authorize, getmeas_status, query_param, start_login, start_sandbox,
};
use withings_sandbox::SandboxConfig;

/// More than the 64 connections the listener serves at once.
const IDLE_CONNECTIONS: usize = 80;

fn listener_port(authorize_url: &Url) -> u16 {
    let redirect: Url = query_param(authorize_url, "redirect_uri")
        .expect("a redirect_uri")
        .parse()
        .expect("a URL");
    let port = redirect.port().expect("the real port");
    assert_ne!(port, 0);
    port
}

/// Sends a request one byte a second, for at most `max_bytes` seconds; returns how long the
/// server kept the connection open, or `None` if it never closed it.
async fn slowloris(port: u16, max_bytes: usize) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the listener accepts");
    let request = b"GET /callback?code=slow&state=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut buf = [0u8; 512];
    for byte in request.iter().cycle().take(max_bytes) {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            // Closed (0 bytes, or an error), or an answer the server gives before closing.
            Ok(_) => return Some(started.elapsed()),
            Err(_still_open) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_oversized_and_slow_clients_cannot_stop_a_real_login() {
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let (login, authorize_url) = start_login(
        &sandbox,
        Scopes::from(Scope::Metrics),
        Duration::from_secs(60),
    )
    .await;
    let port = listener_port(&authorize_url);
    let base = format!("http://127.0.0.1:{port}");

    // A slow client connects first and keeps its connection busy.
    let slow = tokio::spawn(slowloris(port, 15));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for forged in [
        "/callback?code=stolen&state=forged",
        "/callback?code=stolen",
        "/callback?error=access_denied&state=forged",
        "/callback?code=a&state=forged&state=forged",
        "/callback?state=forged",
    ] {
        let answered = Instant::now();
        let response = http
            .get(format!("{base}{forged}"))
            .send()
            .await
            .expect("the listener answers a forged callback");
        assert_eq!(response.status(), 400, "{forged}");
        assert!(
            answered.elapsed() < Duration::from_secs(2),
            "a slow client held up the listener"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("different login"), "{page}");
    }
    let favicon = http
        .get(format!("{base}/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(favicon.status(), 404);

    // An oversized header is refused: 431, or that connection is reset while it still sends.
    match send_oversized(port).await {
        Ok(status_line) => assert!(status_line.starts_with("HTTP/1.1 431"), "{status_line}"),
        Err(kind) => assert!(
            matches!(
                kind,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "the oversized request ended with {kind:?}"
        ),
    }
    let after = http
        .get(format!("{base}/callback?code=stolen&state=forged"))
        .send()
        .await
        .expect("the listener still answers after an oversized request");
    assert_eq!(after.status(), 400);
    assert!(!login.is_finished(), "a hostile request ended the login");

    // The slow client is cut off by the header timeout while the login still waits.
    let slow_closed = slow
        .await
        .unwrap()
        .expect("the listener closes a connection that sends one byte a second");
    assert!(
        slow_closed < Duration::from_secs(10),
        "the slow client was kept {slow_closed:?}"
    );
    assert!(!login.is_finished(), "the slow client ended the login");

    // Another slow client is still connected when the real browser comes back.
    let slow_again = tokio::spawn(slowloris(port, 4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let callback = follow_authorize(&authorize_url).await;
    let page = http
        .get(callback.as_str())
        .send()
        .await
        .expect("the listener answers the real callback");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("You can close this window")
    );

    let authorized = tokio::time::timeout(Duration::from_secs(20), login)
        .await
        .expect("the login ends")
        .unwrap()
        .expect("the real login succeeds");
    assert_eq!(getmeas_status(&sandbox, authorized.access_token()).await, 0);
    assert_eq!(sandbox.handle().counters().token_code, 1);

    // The login is over: the listener is gone, and so are the connections it held.
    let _ = slow_again.await;
    TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the listener's port is free again after the login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_crowd_out_the_real_callback() {
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let (login, authorize_url) = start_login(
        &sandbox,
        Scopes::from(Scope::Metrics),
        Duration::from_secs(30),
    )
    .await;
    let port = listener_port(&authorize_url);

    // A local program opens more connections than the listener serves at once, and sends nothing.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the listener accepts"),
        );
    }
    // Well within the 5 s header timeout, so only eviction can make room for the browser.
    let started = Instant::now();
    let callback = follow_authorize(&authorize_url).await;
    let page = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .get(callback.as_str())
        .send()
        .await
        .expect("the real callback is served despite the idle connections");
    assert_eq!(page.status(), 200);
    let took = started.elapsed();

    let authorized = tokio::time::timeout(Duration::from_secs(10), login)
        .await
        .expect("the login ends")
        .unwrap()
        .expect("the real login succeeds");
    assert_eq!(getmeas_status(&sandbox, authorized.access_token()).await, 0);
    // The oldest idle connection was closed to make room.
    let mut buf = [0u8; 16];
    let oldest = tokio::time::timeout(Duration::from_secs(2), idle[0].read(&mut buf))
        .await
        .expect("the oldest idle connection is closed, not left open");
    assert!(matches!(oldest, Ok(0) | Err(_)), "{oldest:?}");
    eprintln!(
        "callback through {IDLE_CONNECTIONS} idle connections: {} ms",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_waiting_login_frees_its_port_and_connections() {
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let (login, authorize_url) = start_login(
        &sandbox,
        Scopes::from(Scope::Metrics),
        Duration::from_secs(60),
    )
    .await;
    let port = listener_port(&authorize_url);

    // A client is connected, half-way through a request, when the application gives up on the
    // login by dropping it.
    let mut half_open = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half_open.write_all(b"GET /callback?code=").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!login.is_finished(), "the login ended by itself");
    login.abort();
    assert!(login.await.unwrap_err().is_cancelled());

    TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free as soon as the login is dropped");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(2), half_open.read(&mut buf))
        .await
        .expect("the connection is closed, not left hanging");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // A new login gets a new listener and works.
    let (login, authorize_url) = start_login(
        &sandbox,
        Scopes::from(Scope::Metrics),
        Duration::from_secs(20),
    )
    .await;
    let callback = follow_authorize(&authorize_url).await;
    let page = reqwest::get(callback.as_str()).await.unwrap();
    assert_eq!(page.status(), 200);
    login.await.unwrap().expect("a later login still works");
}

/// Sends a request with a 64 KiB header, far over the listener's limit; returns the status line
/// of the answer, or how the connection ended when there was none.
async fn send_oversized(port: u16) -> Result<String, io::ErrorKind> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.kind())?;
    let request = format!(
        "GET /callback?code=big&state=big HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(64 * 1024)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.kind())?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the listener ends an oversized request's connection");
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    match read {
        Err(e) if status_line.is_empty() => Err(e.kind()),
        _ => Ok(status_line),
    }
}
