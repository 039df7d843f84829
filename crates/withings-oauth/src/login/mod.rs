//! The login as types: [`Unauthorized`] → [`PendingCallback`] → [`Authorized`], refreshing
//! ([`refresh()`]) and one-call logins with a user agent ([`authorize`], [`login`]).
//!
//! Each step consumes the previous one, so a callback can't be completed twice and a refresh
//! can't be tried before login. See the [crate docs](crate#the-flow-as-types) for the diagram.
//! `unauthorized`, `pending` and `authorized` hold the three states (`parked` the stored form
//! of a pending login, and the two conversions); `authorize_request` the authorize URL and the
//! redirect URIs allowed, which `unauthorized` and `parked` check; `refresh` the transition
//! that loops on `Authorized`; `error` the login error and the shape that hands a login back.
//! Each file imports only the ones below it: `unauthorized` and `parked` → `pending` →
//! `authorized`, all → `authorize_request`.

mod authorize_request;
mod authorized;
mod error;
mod parked;
mod pending;
mod refresh;
mod unauthorized;

pub use authorized::{Authorized, RevokeError};
pub use error::Error;
pub use parked::ParkedLogin;
pub use pending::PendingCallback;
pub(crate) use refresh::refresh_under;
pub use refresh::{RefreshError, refresh};
pub use unauthorized::Unauthorized;

use crate::config::Client;
use crate::scope::Scopes;
use crate::user_agent::UserAgent;

/// Logs in with `agent` in one call: prepare the agent, build the authorize URL, wait for the
/// callback, check it and exchange the code.
///
/// ```no_run
/// # async fn run(agent: &dyn withings_oauth::UserAgent) -> Result<(), Box<dyn std::error::Error>> {
/// use withings_oauth::{Client, Scope, Scopes, authorize};
///
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback")
///     .build()?;
/// // `agent`: any front end, chosen at run time (browser, webview, paste...).
/// let authorized = authorize(&client, Scopes::from(Scope::Metrics), agent).await?;
/// println!("logged in user {}", authorized.user_id());
/// # Ok(())
/// # }
/// ```
pub async fn authorize<A: UserAgent + ?Sized>(
    client: &Client,
    scopes: Scopes,
    agent: &A,
) -> Result<Authorized, Error> {
    login(Unauthorized::new(client, scopes), agent).await
}

/// Like [`authorize`], starting from a configured [`Unauthorized`] (demo mode, say).
///
/// The two differ only in where the login starts; both run the same steps.
pub async fn login<A: UserAgent + ?Sized>(
    unauthorized: Unauthorized,
    agent: &A,
) -> Result<Authorized, Error> {
    let prepared = agent.prepare(&unauthorized.redirect_uri).await?;
    let pending = unauthorized
        .with_redirect_uri(prepared.redirect_uri().clone())?
        .begin()?;
    let authorize_url = pending.authorize_url().clone();
    let callback = agent.run(prepared, &authorize_url).await?;
    pending.complete(&callback).await
}

#[cfg(test)]
mod tests;
