//! Other local programs attack the loopback listener while a real login is under way: forged
//! callbacks, an oversized header, a client that sends one byte a second. The login must still
//! finish, and the port must be free afterwards. Dropping a login mid-wait frees the port too.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use url::Url;
use withings_oauth::loopback::LoopbackAgent;
use withings_oauth::{Authorized, Error, Scope, Scopes, authorize};
use withings_oauth_e2e::{client, follow_authorize, getmeas_status, query_param, start_sandbox};
use withings_sandbox::{Sandbox, SandboxConfig};

/// Starts a login through `LoopbackAgent` on its own task; returns it and its authorize URL.
async fn start_login(
    sandbox: &Sandbox,
    timeout: Duration,
) -> (tokio::task::JoinHandle<Result<Authorized, Error>>, Url) {
    let client = client(sandbox, "http://127.0.0.1:0/callback");
    let (urls, mut authorize_urls) = mpsc::unbounded_channel::<Url>();
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .timeout(timeout)
        .on_authorize_url(move |url| {
            let _ = urls.send(url.clone());
        });
    let login =
        tokio::spawn(async move { authorize(&client, Scopes::from(Scope::Metrics), &agent).await });
    let authorize_url = tokio::time::timeout(Duration::from_secs(10), authorize_urls.recv())
        .await
        .expect("the authorize URL is shown at once")
        .expect("an authorize URL");
    (login, authorize_url)
}

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
    let (login, authorize_url) = start_login(&sandbox, Duration::from_secs(60)).await;
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

    // An oversized header is refused: 431, or the connection is cut.
    let oversized = http
        .get(format!("{base}/callback?code=big&state=big"))
        .header("x-padding", "p".repeat(64 * 1024))
        .send()
        .await;
    match oversized {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e:?}"),
    }
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
async fn dropping_a_waiting_login_frees_its_port_and_connections() {
    let sandbox = start_sandbox(SandboxConfig::default().auto_approve(true)).await;
    let client = client(&sandbox, "http://127.0.0.1:0/callback");
    let (urls, mut authorize_urls) = mpsc::unbounded_channel::<Url>();
    let agent = LoopbackAgent::new()
        .open_browser(false)
        .on_authorize_url(move |url| {
            let _ = urls.send(url.clone());
        });

    let mut login = Box::pin(authorize(&client, Scopes::from(Scope::Metrics), &agent));
    // Drive the login until its listener is up and a client is connected to it, half-way
    // through a request; then give up on the login by dropping its future.
    let port = tokio::select! {
        _ = &mut login => panic!("the login ended by itself"),
        url = authorize_urls.recv() => listener_port(&url.expect("an authorize URL")),
    };
    let mut half_open = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half_open.write_all(b"GET /callback?code=").await.unwrap();
    tokio::select! {
        _ = &mut login => panic!("the login ended by itself"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    drop(login);

    TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free as soon as the login is dropped");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(2), half_open.read(&mut buf))
        .await
        .expect("the connection is closed, not left hanging");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // A new login gets a new listener and works.
    let (login, authorize_url) = start_login(&sandbox, Duration::from_secs(20)).await;
    let callback = follow_authorize(&authorize_url).await;
    let page = reqwest::get(callback.as_str()).await.unwrap();
    assert_eq!(page.status(), 200);
    login.await.unwrap().expect("a later login still works");
}
