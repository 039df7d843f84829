//! [`WithingsLogin`]: the configuration and shared state of the routes, and the sessions of the
//! users who connected.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use withings_oauth::chrono::TimeDelta;
use withings_oauth::{
    AccessToken, BoxFuture, Client, DEFAULT_PENDING_LOGIN_TTL, PendingLoginStore, Scope, Scopes,
    Session, SessionError, TokenStore, UserId,
};

use crate::cookie::{BindingCookie, CookieKey};
use crate::cross_site::refuse_cross_site;
use crate::owner::{LoginOwner, OwnerFn, owner_fn};
use crate::routes;

type ConnectedFn = dyn Fn(Connected) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A finished login, handed to the hook given to [`WithingsLoginBuilder::on_connected`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Connected {
    /// The application's user who started the login and finished it ([`LoginOwner::owner_id`]).
    pub owner: String,
    /// The Withings user the login is for.
    pub user_id: UserId,
    /// The scopes Withings granted (maybe fewer than asked).
    pub scopes: Scopes,
}

/// Withings logins for an axum application: the connect and callback routes
/// ([`router`](Self::router)), and fresh access tokens for users who connected
/// ([`access_token`](Self::access_token)).
///
/// Cheap to clone (clones share everything): keep one in the application's state. Several
/// instances of an application (behind a load balancer) each build their own, over one shared
/// [`PendingLoginStore`] and one shared [`TokenStore`]: a login started on one instance
/// finishes on any other.
#[derive(Clone)]
pub struct WithingsLogin {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) scopes: Scopes,
    pub(crate) pending: Arc<dyn PendingLoginStore>,
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) owner: Box<OwnerFn>,
    pub(crate) on_connected: Option<Box<ConnectedFn>>,
    pub(crate) after_login: String,
    pub(crate) connect_path: String,
    pub(crate) cookie: BindingCookie,
    pub(crate) pending_lifetime: TimeDelta,
    /// One session per user, so that a user's refreshes happen once (see [`Session`]).
    sessions: tokio::sync::Mutex<HashMap<UserId, Session>>,
}

impl fmt::Debug for WithingsLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithingsLogin")
            .field("client_id", &self.inner.client.client_id())
            .field("scopes", &self.inner.scopes.to_string())
            .field("connect_path", &self.inner.connect_path)
            .field("callback_path", &self.callback_path())
            .field("after_login", &self.inner.after_login)
            .finish_non_exhaustive()
    }
}

impl WithingsLogin {
    /// Starts the configuration: the Withings `client` (its redirect URI's path becomes the
    /// callback route), where pending logins wait, where credentials go, the server's
    /// `cookie_key` (the same on every instance), and, as the type `O`, who the signed-in user
    /// of a request is ([`LoginOwner`]).
    pub fn builder<O: LoginOwner>(
        client: Client,
        pending_logins: Arc<dyn PendingLoginStore>,
        tokens: Arc<dyn TokenStore>,
        cookie_key: &CookieKey,
    ) -> WithingsLoginBuilder {
        WithingsLoginBuilder {
            client,
            scopes: Scopes::from(Scope::Metrics),
            pending: pending_logins,
            tokens,
            owner: owner_fn::<O>(),
            cookie_key: cookie_key.clone(),
            on_connected: None,
            after_login: "/".to_owned(),
            connect_path: "/withings/connect".to_owned(),
            pending_lifetime: DEFAULT_PENDING_LOGIN_TTL,
        }
    }

    /// A router with the connect route (`POST`, [`WithingsLoginBuilder::connect_path`], behind
    /// [`refuse_cross_site`]) and the callback route (`GET`, the path of the client's redirect
    /// URI). Merge it into the application's router.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route(
                &self.inner.connect_path,
                post(routes::connect).layer(axum::middleware::from_fn(refuse_cross_site)),
            )
            .route(self.callback_path(), get(routes::callback))
            .with_state(self.clone())
    }

    /// The path of the connect route.
    pub fn connect_path(&self) -> &str {
        &self.inner.connect_path
    }

    /// The path of the callback route: the client's redirect URI's.
    pub fn callback_path(&self) -> &str {
        self.inner.client.redirect_uri().path()
    }

    /// The Withings client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The session of `user`: the one this value already holds, or one restored from the
    /// token store (a user who connected through another instance, or before a restart).
    ///
    /// [`SessionError::LoginRequired`] if the user never connected or must connect again.
    pub async fn session(&self, user: UserId) -> Result<Session, SessionError> {
        // The map's lock is held across the restore: two requests for a user not yet cached
        // must not make two sessions, whose refreshes would race within this process.
        let mut sessions = self.inner.sessions.lock().await;
        if let Some(session) = sessions.get(&user) {
            return Ok(session.clone());
        }
        let session = Session::restore(&self.inner.client, self.inner.tokens.clone(), user).await?;
        sessions.insert(user, session.clone());
        Ok(session)
    }

    /// A valid access token for `user`, refreshed first if it is about to expire.
    pub async fn access_token(&self, user: UserId) -> Result<AccessToken, SessionError> {
        self.session(user).await?.access_token().await
    }

    /// Disconnects `user`: revokes the application's access at Withings and deletes the user's
    /// credentials. On failure nothing changes.
    pub async fn disconnect(&self, user: UserId) -> Result<(), SessionError> {
        let session = self.session(user).await?;
        session.revoke().await?;
        self.inner.sessions.lock().await.remove(&user);
        Ok(())
    }

    /// Keeps the session of a user who just connected, replacing an older one.
    pub(crate) async fn keep_session(&self, session: Session) {
        self.inner
            .sessions
            .lock()
            .await
            .insert(session.user_id(), session);
    }
}

/// The configuration of a [`WithingsLogin`], from [`WithingsLogin::builder`].
pub struct WithingsLoginBuilder {
    client: Client,
    scopes: Scopes,
    pending: Arc<dyn PendingLoginStore>,
    tokens: Arc<dyn TokenStore>,
    owner: Box<OwnerFn>,
    cookie_key: CookieKey,
    on_connected: Option<Box<ConnectedFn>>,
    after_login: String,
    connect_path: String,
    pending_lifetime: TimeDelta,
}

impl fmt::Debug for WithingsLoginBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithingsLoginBuilder")
            .field("client_id", &self.client.client_id())
            .finish_non_exhaustive()
    }
}

impl WithingsLoginBuilder {
    /// The scopes to ask for (default `user.metrics`).
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Where the browser goes after a login (default `/`); error pages link back there too.
    pub fn after_login(mut self, path: impl Into<String>) -> Self {
        self.after_login = path.into();
        self
    }

    /// The path of the connect route (default `/withings/connect`).
    pub fn connect_path(mut self, path: impl Into<String>) -> Self {
        self.connect_path = path.into();
        self
    }

    /// How long a started login may wait for its callback (default
    /// [`DEFAULT_PENDING_LOGIN_TTL`], 10 minutes): the binding cookie is honoured that long
    /// after the last connect. Give the pending-login store the same lifetime.
    pub fn pending_login_lifetime(mut self, lifetime: TimeDelta) -> Self {
        self.pending_lifetime = lifetime;
        self
    }

    /// Called after each login, once its credentials are saved and before the browser is
    /// redirected: record which Withings user the owner connected (the application keeps that
    /// mapping, to call [`WithingsLogin::access_token`] later).
    ///
    /// When the hook fails (its database is down, say), the browser gets the
    /// [`LoginError::NotRecorded`](crate::LoginError::NotRecorded) page, which asks the user
    /// to connect again, instead of a page saying all went well while the application does
    /// not know the account. The hook's error is shown on that page: keep secrets out of it.
    pub fn on_connected<F, Fut, E>(mut self, hook: F) -> Self
    where
        F: Fn(Connected) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.on_connected = Some(Box::new(move |connected| {
            let recorded = hook(connected);
            Box::pin(async move { recorded.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// The configured [`WithingsLogin`].
    pub fn build(self) -> WithingsLogin {
        let secure = self.client.redirect_uri().scheme() == "https";
        WithingsLogin {
            inner: Arc::new(Inner {
                client: self.client,
                scopes: self.scopes,
                pending: self.pending,
                tokens: self.tokens,
                owner: self.owner,
                on_connected: self.on_connected,
                after_login: self.after_login,
                connect_path: self.connect_path,
                cookie: BindingCookie::new(&self.cookie_key, secure),
                pending_lifetime: self.pending_lifetime,
                sessions: tokio::sync::Mutex::default(),
            }),
        }
    }
}
