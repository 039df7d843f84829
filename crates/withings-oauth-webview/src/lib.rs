//! An embedded-webview [`UserAgent`] for [`withings_oauth`]: the Withings consent page opens in a
//! native window of your application, and the window closes itself once the user has answered.
//!
//! [`WebviewAgent`] opens a window at the authorize URL and watches every navigation of the page.
//! When the page is sent to the login's redirect URI (same scheme, host, port and path, any
//! query) with this login's `state`, the navigation is blocked, the window closes and the full
//! callback URL goes back to the login flow, which checks it again and exchanges the code. A
//! navigation to the redirect URI without this login's `state` (a page or a program trying to
//! end or hijack the login) is blocked too, and the window stays, waiting for the real callback,
//! as the loopback and paste agents do. Because the callback never
//! loads, it fits applications that registered
//! - an **https callback** (`https://app.example.com/withings/callback`) with no server behind
//!   it, which is what Withings' developer dashboard asks for, or
//! - a **custom scheme** (`com.example.app://callback`) with no handler installed,
//!
//! as well as a loopback URL. No local listener is opened.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use withings_oauth::{Client, Scope, Scopes, authorize};
//! use withings_oauth_webview::WebviewAgent;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .client_id("my-client-id")
//!     .client_secret("my-client-secret")
//!     .redirect_uri("https://app.example.com/withings/callback")
//!     .build()?;
//! let agent = WebviewAgent::new()
//!     .title("Connect your Withings account")
//!     .timeout(Duration::from_secs(180));
//! let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await?;
//! println!("logged in as Withings user {}", authorized.user_id().get());
//! # Ok(())
//! # }
//! ```
//!
//! # Calling it from an async application
//! The future returned by [`UserAgent::run`] is `Send` and does not block: await it from any
//! task of any runtime. The window lives on a thread of its own that this crate starts at the
//! first login and keeps for the life of the process (GTK binds itself to one thread, once per
//! process). That thread sleeps between logins; several logins, in a row or at the same time,
//! share it, each in its own window. Dropping the future closes its window.
//!
//! Outcomes, as [`UserAgentError`]:
//! - the user closes the window: [`UserAgentError::Cancelled`];
//! - nobody answers within the timeout (default 5 minutes): [`UserAgentError::TimedOut`];
//! - no window can be created (no display, as on a server or in CI without Xvfb):
//!   [`UserAgentError::Other`], whose text says to use the paste agent or run under a desktop
//!   session. A panic in this crate's code on the window thread (its event loop, or its handlers
//!   of the page's navigations and of close requests) ends the login with such an error too; it
//!   never unwinds into your code. A panic inside the windowing libraries' own handlers of GTK
//!   signals is beyond this crate's reach: Rust aborts the process there.
//!
//! The page runs in an ephemeral web context: no cookie or form data of the login is kept on
//! disk, so each login asks for the Withings password again.
//!
//! # Platforms
//! - **Linux and the BSDs**: WebKitGTK 4.1 and GTK 3 at run time (building needs their
//!   development packages, e.g. `libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev` on Debian);
//!   X11 or Wayland. This is where the project's tests run (X11, under Xvfb). GTK serves one
//!   thread per process: an application that already runs GTK on a thread of its own gets an
//!   error from this agent and should show the page with its own GTK widgets instead.
//! - **Windows** (WebView2 runtime): the same design, since tao allows its event loop on a
//!   thread other than the main one there too.
//! - **macOS, iOS and Android**: windows only run on the process's main thread, which belongs to
//!   your application, so this agent returns [`UserAgentError::Other`] there at once. A macOS
//!   application either uses the system browser with a loopback redirect (the core crate's
//!   loopback agent), or runs `tao`/`wry` on its main thread itself, catches the navigation to
//!   the redirect URI the same way, and hands the URL to
//!   [`PendingCallback::complete`](withings_oauth::PendingCallback::complete).

#![deny(missing_docs)]

use std::time::Duration;

use url::Url;
use withings_oauth::{AgentFuture, Prepared, UserAgent, UserAgentError};

// `window_thread` and `gtk_platform` come from build.rs, which lists the platforms once.
#[cfg(window_thread)]
mod gui;
#[cfg(window_thread)]
mod matcher;

/// A [`UserAgent`] that shows the Withings consent page in an embedded webview window.
///
/// See the [crate documentation](crate) for how it behaves and where it runs.
#[derive(Debug, Clone)]
pub struct WebviewAgent {
    timeout: Duration,
    title: String,
    size: (u32, u32),
}

impl Default for WebviewAgent {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5 * 60),
            title: "Sign in to Withings".to_owned(),
            size: (520, 760),
        }
    }
}

impl WebviewAgent {
    /// An agent with a 5-minute timeout, the title "Sign in to Withings" and a 520×760 window.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the window waits for the user before the login fails with
    /// [`UserAgentError::TimedOut`]. Counted from the moment the window opens.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The window title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The window's inner size in logical pixels (before the display's scale factor).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width.max(1), height.max(1));
        self
    }
}

impl UserAgent for WebviewAgent {
    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        let redirect_uri = prepared.redirect_uri().clone();
        Box::pin(async move { self.show(authorize_url.clone(), redirect_uri).await })
    }
}

impl WebviewAgent {
    #[cfg(window_thread)]
    async fn show(&self, authorize_url: Url, redirect_uri: Url) -> Result<Url, UserAgentError> {
        #[cfg(gtk_platform)]
        check_display()?;
        let mut ticket = gui::submit(gui::LoginPage {
            authorize_url,
            redirect_uri,
            title: self.title.clone(),
            size: self.size,
            timeout: self.timeout,
        })?;
        ticket.outcome().await
    }

    #[cfg(not(window_thread))]
    async fn show(&self, authorize_url: Url, redirect_uri: Url) -> Result<Url, UserAgentError> {
        let _ = (authorize_url, redirect_uri);
        Err(UserAgentError::Other(
            "the embedded login window is not available on this platform (its windows may only \
             run on the application's main thread): use the system browser with a loopback \
             redirect, or the paste agent"
                .to_owned(),
        ))
    }
}

/// Fails early, with advice, where GTK would find no display to open.
#[cfg(gtk_platform)]
fn check_display() -> Result<(), UserAgentError> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("DISPLAY") || set("WAYLAND_DISPLAY") {
        Ok(())
    } else {
        Err(UserAgentError::Other(format!(
            "DISPLAY and WAYLAND_DISPLAY are not set, so the login window cannot be shown; {}",
            gui::NO_DISPLAY_ADVICE
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn the_login_future_is_send() {
        let agent = WebviewAgent::new();
        let authorize: Url = "http://127.0.0.1:1/oauth2_user/authorize2".parse().unwrap();
        let prepared = Prepared::new("https://app.example.com/cb".parse().unwrap());
        let future = agent.run(prepared, &authorize);
        assert_send(&future);
    }

    #[test]
    fn builder_settings_are_kept() {
        let agent = WebviewAgent::new()
            .timeout(Duration::from_secs(7))
            .title("Connect")
            .size(0, 300);
        assert_eq!(agent.timeout, Duration::from_secs(7));
        assert_eq!(agent.title, "Connect");
        assert_eq!(agent.size, (1, 300));
        assert_eq!(WebviewAgent::new().timeout, Duration::from_secs(300));
    }
}

/// The README's example, compiled as a doc test so it can't rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
