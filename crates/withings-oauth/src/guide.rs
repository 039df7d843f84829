//! Explanations that span several types, each in one place: which login agent fits which
//! registration, how pasting works, and what the loopback listener protects.

pub mod agents {
    //! Which user agent fits which registration.
    //!
    //! | callback registered at Withings | agent |
    //! |---|---|
    //! | an `https` URL (what Withings' dashboard asks for) | [`PasteAgent`], or [`BrowserOrPasteAgent`] to open the browser for the user |
    //! | `http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...` or `http://localhost:<port>/...` | [`LoopbackAgent`] (or [`BrowserOrPasteAgent`], which also accepts a paste) |
    //! | a desktop app with a window of its own | the `withings-oauth-webview` crate |
    //!
    //! Withings' documentation says callbacks must be https and must not be `localhost` or an IP,
    //! so a loopback listener can't be the only way in: [`BrowserOrPasteAgent`] opens the browser
    //! and takes whichever comes first, the redirect on the loopback listener (when the redirect
    //! URI is a loopback one) or the address pasted by the user.
    //!
    //! # Pasting
    //! [`PasteAgent`] works everywhere, including over SSH and in containers with no browser: the
    //! browser can be on another machine. After "Allow", Withings sends the browser to the redirect
    //! URI with `?code=..&state=..`; the page there may well fail to load, but the address bar holds
    //! what the login needs. The user pastes that address (or just its `code=..&state=..` part).
    //!
    //! Each input is screened against the login
    //! ([`screen_callback`]) before it is returned: garbage or an
    //! address from another login gets a message and a new prompt, so a typo does not cost a login.
    //! A denial is returned at once, and the flow turns it into
    //! [`CallbackError::Denied`].
    //!
    //! ```
    //! # #[tokio::main(flavor = "current_thread")]
    //! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    //! use withings_oauth::{PasteAgent, Prepared, UserAgent};
    //!
    //! let redirect_uri: url::Url = "https://app.example.com/withings/callback".parse()?;
    //! let authorize_url: url::Url = "https://account.withings.com/oauth2_user/authorize2?response_type=code\
    //!     &client_id=id&redirect_uri=https%3A%2F%2Fapp.example.com%2Fwithings%2Fcallback\
    //!     &scope=user.metrics&state=s7a7e".parse()?;
    //!
    //! // What the user would type: first a stray word, then the query part of the address bar.
    //! let typed: &'static [u8] = b"oops\ncode=c0de&state=s7a7e\n";
    //! let agent = PasteAgent::new(typed, tokio::io::sink());
    //! let callback = agent.run(Prepared::new(redirect_uri), &authorize_url).await?;
    //! assert_eq!(callback.as_str(), "https://app.example.com/withings/callback?code=c0de&state=s7a7e");
    //! # Ok(())
    //! # }
    //! ```
    //!
    //! [`PasteAgent`]: crate::PasteAgent
    //! [`LoopbackAgent`]: crate::LoopbackAgent
    //! [`BrowserOrPasteAgent`]: crate::BrowserOrPasteAgent
    //! [`screen_callback`]: crate::screen_callback
    //! [`CallbackError::Denied`]: crate::CallbackError::Denied
}

#[cfg(feature = "loopback")]
pub mod loopback {
    //! The loopback listener of [`LoopbackAgent`] and [`BrowserOrPasteAgent`]: what it accepts,
    //! its limits, and what it protects against other programs on the same machine.
    //!
    //! # The listener
    //! - It binds the redirect URI's own address, loopback only, never a wildcard address: `127.0.0.1`
    //!   (or another `127.x.y.z`) and `[::1]` as written. `localhost` is bound on both `127.0.0.1`
    //!   and `[::1]`, on the same port: browsers may resolve it to either, and a program holding the
    //!   address left free would receive the callback. Where the system has no IPv6, `localhost` is
    //!   served on `127.0.0.1` alone. Prefer the IP literal `http://127.0.0.1:<port>/...`, as
    //!   RFC 8252 §8.3 recommends.
    //! - Only port 0 means "any free port": the listener is bound in [`UserAgent::prepare`], and the
    //!   real port goes into the authorize URL, for servers that accept any port on a loopback
    //!   callback (RFC 8252 §7.3). A redirect URI without a port means port 80, the default port of
    //!   `http`, as a server that compares redirect URIs exactly reads it; binding it needs
    //!   privileges on most systems.
    //! - The browser is opened at a one-time link on the listener,
    //!   `http://127.0.0.1:<port>/start/<random>` (`http://[::1]:<port>/...` for `[::1]`), which
    //!   redirects to the authorize URL. So the login's `state` is never on a command line, where
    //!   any local program can read it (in `/proc/<pid>/cmdline`, say). The link works once. A
    //!   second request for it means someone else has it: the login ends at once with
    //!   [`UserAgentError::StartLinkReused`], and no callback is taken after that.
    //! - The callback path answers a small page saying whether the login worked. A request that is
    //!   not this login's callback (wrong `state`, no `state`, a repeated parameter) gets HTTP 400
    //!   and the listener keeps waiting. Other paths get 404, other methods 405, request bodies 400.
    //! - Each connection is served on its own task, one request per connection, within the limits
    //!   below.
    //! - Dropping the login's future closes the listener and every connection at once.
    //!
    //! # Limits
    //! | what | limit |
    //! |---|---|
    //! | request line and headers | 8 KiB, at most 48 headers; more gets HTTP 431 |
    //! | time to send the request line and headers | 5 s from connecting, then the connection is closed |
    //! | time a connection stays open | 15 s, whatever it does |
    //! | connections at once | 64; one more closes the oldest connection that has not sent its request line and headers, so a new connection is always served |
    //! | the whole login | [`LoopbackAgent::timeout`], [`BrowserOrPasteAgent::timeout`]: 5 minutes unless set |
    //!
    //! # What other local programs can and can't do
    //! A program that does not know the `state` can't end or hijack the login:
    //! - forged callbacks get HTTP 400 and the listener keeps waiting for the real one;
    //! - idle, slow or oversized connections are closed by the limits above, and can't keep the
    //!   real callback out;
    //! - with `localhost`, no other program can hold the second loopback address;
    //! - the `state` is not on the browser's command line, only the one-time start link is; nor
    //!   in [`BrowserOrPasteAgent`]'s instructions, which show the start link too.
    //!
    //! - A fixed port that another program holds is refused by both agents (with the port and
    //!   what to do): the browser would send that program the code.
    //! - A program that reads the start link from the browser's command line and opens it first
    //!   gets the authorize URL and its `state`, and could send the listener a callback with its
    //!   own code (logging the user in as someone else). It needs no Withings login in that
    //!   moment: a code is not bound to the `state` (and Withings has no PKCE), so with a fixed,
    //!   registered port it can get a code for its own account in advance and send the callback
    //!   within milliseconds. Two things stop it:
    //!   - when the user's browser then opens the link, the login ends with
    //!     [`UserAgentError::StartLinkReused`];
    //!   - a callback that arrives less than 3 seconds after the start link was opened is held
    //!     for the rest of those 3 seconds before it is taken, so a browser that asks for the
    //!     link in that time ends the login even when the forged callback came first. Nobody
    //!     logs in at Withings that fast, so a real callback is never held.
    //!
    //! What the listener can't prevent:
    //! - That race won by the other program: a browser that takes more than 3 seconds to ask
    //!   for the start link (a cold start on a slow machine), or never asks (no browser, a
    //!   browser that fails), leaves the forged callback in. The code it carries is about 30
    //!   seconds old at most, so the other program has to be ready, but it can be. Where that
    //!   matters, use an https redirect URI and [`PasteAgent`](crate::PasteAgent), or a
    //!   webview, whose redirect no other program can catch.
    //! - Without a listener, [`BrowserOrPasteAgent`] (an `https` redirect URI) opens the browser
    //!   at the authorize URL itself: its `state` is on the browser's command line while the
    //!   browser starts.
    //! - The callback on `http://127.0.0.1` is not encrypted: any program that can watch the
    //!   loopback interface (root, say) sees the code and `state`.
    //! - [`LoopbackAgent::on_authorize_url`] gets the real authorize URL, `state` included: the
    //!   application decides where it goes.
    //!
    //! ```no_run
    //! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    //! use std::time::Duration;
    //! use withings_oauth::LoopbackAgent;
    //! use withings_oauth::{Client, Scope, Scopes, authorize};
    //!
    //! let client = Client::builder()
    //!     .client_id("my-client-id")
    //!     .client_secret("my-client-secret")
    //!     .redirect_uri("http://127.0.0.1:0/callback") // any free port
    //!     .build()?;
    //! let agent = LoopbackAgent::new()
    //!     .timeout(Duration::from_secs(120))
    //!     .on_authorize_url(|url| eprintln!("If no browser opens, visit {url}"));
    //! let authorized = authorize(&client, Scopes::from(Scope::Metrics), &agent).await?;
    //! # let _ = authorized;
    //! # Ok(())
    //! # }
    //! ```
    //!
    //! [`LoopbackAgent`]: crate::LoopbackAgent
    //! [`BrowserOrPasteAgent`]: crate::BrowserOrPasteAgent
    //! [`LoopbackAgent::timeout`]: crate::LoopbackAgent::timeout
    //! [`BrowserOrPasteAgent::timeout`]: crate::BrowserOrPasteAgent::timeout
    //! [`LoopbackAgent::on_authorize_url`]: crate::LoopbackAgent::on_authorize_url
    //! [`UserAgent::prepare`]: crate::UserAgent::prepare
    //! [`UserAgentError::StartLinkReused`]: crate::UserAgentError::StartLinkReused
}
