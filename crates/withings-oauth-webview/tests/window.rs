//! The login window on a real display, without a Withings server: pages are `data:` URLs.
//!
//! Needs a display: `xvfb-run -a cargo test -p withings-oauth-webview` (or `bash .ci/test`).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use url::Url;
use withings_oauth::{Prepared, UserAgent, UserAgentError};
use withings_oauth_webview::WebviewAgent;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt, EventMask, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

fn require_display() {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    assert!(
        set("DISPLAY"),
        "these tests need an X display and DISPLAY is not set: run them under \
         `xvfb-run -a cargo test -p withings-oauth-webview`, or run `bash .ci/test`"
    );
}

/// The login's `state`, as the authorize URL carries it.
const STATE: &str = "st4te";

/// A page that runs `script` once loaded, standing in for the authorize page of a login whose
/// redirect URI is `redirect`: like a real authorize URL, its query names the redirect URI and
/// the login's `state`, which the window checks callbacks against. (In a `data:` URL the query
/// ends up as text after the script, which does no harm.)
fn page(script: &str, redirect: &Url) -> Url {
    let html = format!("<!doctype html><title>t</title><p>login</p><script>{script}</script>");
    // Every byte escaped: `+` would stay a plus sign in a data URL, not become a space.
    let escaped: String = html.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut url = Url::parse(&format!("data:text/html,{escaped}")).unwrap();
    url.query_pairs_mut()
        .append_pair("redirect_uri", redirect.as_str())
        .append_pair("state", STATE);
    url
}

/// A top-level window titled `title` that is on screen (the toolkit may replace the X window
/// while setting it up, so an unmapped one with the same title does not count).
fn viewable_window(conn: &RustConnection, root: Window, title: &str) -> Option<Window> {
    let children = conn.query_tree(root).ok()?.reply().ok()?.children;
    children.into_iter().find(|&window| {
        let titled = conn
            .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::ANY, 0, 256)
            .ok()
            .and_then(|cookie| cookie.reply().ok())
            .is_some_and(|prop| prop.value == title.as_bytes());
        titled
            && conn
                .get_window_attributes(window)
                .ok()
                .and_then(|cookie| cookie.reply().ok())
                .is_some_and(|attrs| attrs.map_state == MapState::VIEWABLE)
    })
}

/// Waits until a window titled `title` is on screen (`shown`) or no longer is (`!shown`), for at
/// most `within`; returns how long that took.
fn wait_until_shown(title: &str, shown: bool, within: Duration) -> Result<Duration, String> {
    let (conn, screen) = x11rb::connect(None).map_err(|e| format!("X connection: {e}"))?;
    let root = conn.setup().roots[screen].root;
    let started = Instant::now();
    loop {
        if viewable_window(&conn, root, title).is_some() == shown {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            let state = if shown { "shown" } else { "gone" };
            return Err(format!(
                "the window {title:?} was not {state} within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks the window titled `title` to close, as a window manager's close button does, until
/// `stop` is set. Returns how many requests were sent.
///
/// A request goes only to a window that is on screen and is repeated every second, as a person
/// would click again.
fn close_window_titled(title: &str, stop: &AtomicBool, within: Duration) -> Result<u32, String> {
    let (conn, screen) = x11rb::connect(None).map_err(|e| format!("X connection: {e}"))?;
    let root = conn.setup().roots[screen].root;
    let atom = |name: &str| -> Result<u32, String> {
        Ok(conn
            .intern_atom(false, name.as_bytes())
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?
            .atom)
    };
    let protocols = atom("WM_PROTOCOLS")?;
    let delete = atom("WM_DELETE_WINDOW")?;
    let deadline = Instant::now() + within;
    let mut sent = 0;
    let mut last_sent: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err(format!(
                "the login did not end within {within:?} ({sent} close requests sent)"
            ));
        }
        let viewable = viewable_window(&conn, root, title);
        let due = last_sent.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if let Some(window) = viewable.filter(|_| due) {
            let event = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
            conn.send_event(false, window, EventMask::NO_EVENT, event)
                .map_err(|e| e.to_string())?;
            conn.flush().map_err(|e| e.to_string())?;
            sent += 1;
            last_sent = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_window_cancels_the_login() {
    require_display();
    let title = format!("close-me-{}", std::process::id());
    let agent = WebviewAgent::new()
        .title(title.clone())
        .timeout(Duration::from_secs(20));
    let redirect: Url = "https://app.example.com/withings/callback".parse().unwrap();
    let authorize = page("", &redirect);

    let stop = Arc::new(AtomicBool::new(false));
    let closer_stop = Arc::clone(&stop);
    let closer = tokio::task::spawn_blocking(move || {
        close_window_titled(&title, &closer_stop, Duration::from_secs(15))
    });
    let started = Instant::now();
    let result = agent.run(Prepared::new(redirect), &authorize).await;
    stop.store(true, Ordering::SeqCst);
    let sent = closer
        .await
        .expect("closer thread")
        .expect("the window was found and asked to close");
    assert!(sent >= 1, "no close request was sent");
    eprintln!("close requests sent: {sent}");
    assert!(
        matches!(result, Err(UserAgentError::Cancelled)),
        "expected Cancelled, got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ended by the close, not the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sent_to_the_redirect_uri_returns_the_whole_callback() {
    require_display();
    let redirect: Url = "https://app.example.com/withings/callback".parse().unwrap();
    let callback = "https://app.example.com/withings/callback?code=c0de&state=st4te&extra=1";
    let authorize = page(&format!("location.href = '{callback}';"), &redirect);
    let agent = WebviewAgent::new().timeout(Duration::from_secs(20));
    let got = agent
        .run(Prepared::new(redirect), &authorize)
        .await
        .expect("callback captured");
    assert_eq!(got.as_str(), callback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_scheme_redirect_is_captured_without_a_handler() {
    require_display();
    let redirect: Url = "com.example.app://oauth/callback".parse().unwrap();
    let callback = "com.example.app://oauth/callback?code=c0de&state=st4te";
    let authorize = page(&format!("location.href = '{callback}';"), &redirect);
    let agent = WebviewAgent::new().timeout(Duration::from_secs(20));
    let got = agent
        .run(Prepared::new(redirect), &authorize)
        .await
        .expect("callback captured");
    assert_eq!(got.as_str(), callback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_login_closes_its_window_and_the_next_login_works() {
    require_display();
    let title = format!("abandoned-{}", std::process::id());
    let agent = WebviewAgent::new()
        .title(title.clone())
        .timeout(Duration::from_secs(60));
    let redirect: Url = "https://app.example.com/withings/callback".parse().unwrap();
    let unanswered = page("", &redirect);

    let mut login = agent.run(Prepared::new(redirect.clone()), &unanswered);
    let watched = title.clone();
    let appeared = tokio::select! {
        result = &mut login => panic!("the login ended on its own: {result:?}"),
        appeared = tokio::task::spawn_blocking(move || {
            wait_until_shown(&watched, true, Duration::from_secs(15))
        }) => appeared.expect("watcher thread"),
    };
    appeared.expect("the login window is on screen before the login is dropped");

    // The application gives up on its own (a cancel button, a shutdown) long before the
    // agent's timeout.
    drop(login);
    let closed_after = tokio::task::spawn_blocking(move || {
        wait_until_shown(&title, false, Duration::from_secs(1))
    })
    .await
    .expect("watcher thread")
    .expect("the abandoned login's window leaves the screen");
    eprintln!("window gone {closed_after:?} after the drop");

    let callback = "https://app.example.com/withings/callback?code=c0de&state=st4te";
    let next_page = page(&format!("location.href = '{callback}';"), &redirect);
    let next = tokio::time::timeout(
        Duration::from_secs(20),
        agent.run(Prepared::new(redirect), &next_page),
    )
    .await
    .expect("the next login is not stuck behind the abandoned window")
    .expect("callback captured");
    assert_eq!(next.as_str(), callback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_navigation_to_the_redirect_uri_with_another_state_is_blocked_and_the_window_stays() {
    require_display();
    let redirect: Url = "https://app.example.com/withings/callback".parse().unwrap();
    // A page (or a program driving it) sends a callback of its own first: another login's code.
    let forged = "https://app.example.com/withings/callback?code=attacker&state=forged";
    let real = format!("https://app.example.com/withings/callback?code=c0de&state={STATE}");
    let authorize = page(
        &format!(
            "location.href = '{forged}'; setTimeout(function () {{ location.href = '{real}'; }}, 700);"
        ),
        &redirect,
    );
    let agent = WebviewAgent::new().timeout(Duration::from_secs(20));
    let got = agent
        .run(Prepared::new(redirect), &authorize)
        .await
        .expect("the real callback is captured after the forged one was blocked");
    assert_eq!(got.as_str(), real);
}
