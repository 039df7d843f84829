//! The client configuration: who the app is, where Withings is, how calls authenticate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::future::BoxFuture;
use crate::secret::ClientSecret;

/// A request's whole timeout unless [`ClientBuilder::timeouts`] sets another.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A hook awaited before every request the client sends to Withings' API host (token, nonce,
/// revoke and data calls), set with [`ClientBuilder::before_request`]: a rate limiter waits
/// there for its turn. Dropping the request's future (a caller giving up) drops the hook's
/// future too.
pub type BeforeRequest = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Which Withings cloud to talk to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cloud {
    /// The default (EU / world) cloud: `account.withings.com`, `wbsapi.withings.net`.
    #[default]
    Default,
    /// The US / HIPAA cloud: `account.us.withingsmed.com`, `wbsapi.us.withingsmed.net`.
    Us,
    /// Any base URLs, e.g. a local sandbox. Plain `http` is accepted for loopback hosts only.
    Custom {
        /// Base of `/oauth2_user/authorize2`.
        account: Url,
        /// Base of `/v2/oauth2`, `/v2/signature` and the data endpoints.
        api: Url,
    },
}

impl Cloud {
    fn urls(&self) -> Result<(Url, Url), ConfigError> {
        let parse = |s: &str| Url::parse(s).expect("built-in URL");
        match self {
            Cloud::Default => Ok((
                parse("https://account.withings.com/"),
                parse("https://wbsapi.withings.net/"),
            )),
            Cloud::Us => Ok((
                parse("https://account.us.withingsmed.com/"),
                parse("https://wbsapi.us.withingsmed.net/"),
            )),
            Cloud::Custom { account, api } => Ok((
                normalize_base("account", account)?,
                normalize_base("api", api)?,
            )),
        }
    }
}

fn normalize_base(which: &'static str, url: &Url) -> Result<Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidBaseUrl {
        which,
        reason: reason.to_owned(),
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => return Err(invalid("plain http is only allowed on a loopback address")),
        _ => return Err(invalid("use an https URL")),
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("it has no host"));
    }
    // The base URL is shown in `Debug` and logs: it must hold no password.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Whether the URL's host is 127.0.0.0/8, `::1` or `localhost`.
///
/// ```
/// use withings_oauth::is_loopback;
///
/// assert!(is_loopback(&"http://127.0.0.1:0/callback".parse().unwrap()));
/// assert!(is_loopback(&"http://localhost:8080/".parse().unwrap()));
/// assert!(!is_loopback(&"https://app.example.com/callback".parse().unwrap()));
/// ```
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// How calls to the token endpoint authenticate the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// Send `client_secret` in the form.
    #[default]
    ClientSecret,
    /// Get a nonce and send `nonce` + HMAC-SHA256 `signature`; the secret never leaves the app.
    Signature,
}

/// A configured Withings app. Cheap to clone (shared inside).
///
/// ```
/// use withings_oauth::{Client, Cloud};
///
/// let client = Client::builder()
///     .client_id("my-client-id")
///     .client_secret("my-client-secret")
///     .redirect_uri("https://app.example.com/withings/callback")
///     .cloud(Cloud::Us)
///     .build()
///     .unwrap();
/// assert_eq!(client.client_id(), "my-client-id");
/// // The secret is never printed.
/// assert!(!format!("{client:?}").contains("my-client-secret"));
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    client_secret: ClientSecret,
    redirect_uri: Url,
    cloud: Cloud,
    account_url: Url,
    api_url: Url,
    http: reqwest::Client,
    /// The request timeout given to the builder (30 s unless set): what a refresh under a
    /// lease is cut to fit in.
    timeout: Duration,
    auth: AuthMethod,
    before_request: Option<BeforeRequest>,
}

impl Client {
    /// Starts a builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub(crate) fn client_secret(&self) -> &ClientSecret {
        &self.inner.client_secret
    }

    /// The registered redirect URI.
    pub fn redirect_uri(&self) -> &Url {
        &self.inner.redirect_uri
    }

    /// The cloud.
    pub fn cloud(&self) -> &Cloud {
        &self.inner.cloud
    }

    /// Base URL of the authorization host (ends with `/`).
    pub fn account_url(&self) -> &Url {
        &self.inner.account_url
    }

    /// Base URL of the API host (ends with `/`).
    pub fn api_url(&self) -> &Url {
        &self.inner.api_url
    }

    /// How token calls authenticate.
    pub fn auth_method(&self) -> AuthMethod {
        self.inner.auth
    }

    /// The HTTP client in use.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The whole-request timeout set with [`ClientBuilder::timeouts`] (30 s by default, and
    /// with a client of one's own).
    pub fn request_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Waits for the [`BeforeRequest`] hook, if there is one.
    pub(crate) async fn before_request(&self) {
        if let Some(hook) = &self.inner.before_request {
            hook().await;
        }
    }

    pub(crate) fn api_endpoint(&self, path: &str) -> Url {
        self.inner
            .api_url
            .join(path)
            .expect("a relative path joins any base URL")
    }

    pub(crate) fn account_endpoint(&self, path: &str) -> Url {
        self.inner
            .account_url
            .join(path)
            .expect("a relative path joins any base URL")
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.inner.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uri", &self.inner.redirect_uri.as_str())
            .field("account_url", &self.inner.account_url.as_str())
            .field("api_url", &self.inner.api_url.as_str())
            .field("auth", &self.inner.auth)
            .field("before_request", &self.inner.before_request.is_some())
            .finish()
    }
}

/// Builds a [`Client`]. Client id, client secret and redirect URI are required.
#[derive(Default)]
pub struct ClientBuilder {
    client_id: Option<String>,
    client_secret: Option<ClientSecret>,
    redirect_uri: Option<String>,
    cloud: Cloud,
    http: Option<reqwest::Client>,
    auth: AuthMethod,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    before_request: Option<BeforeRequest>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("cloud", &self.cloud)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The app's client id, from the Withings developer dashboard.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The app's client secret.
    pub fn client_secret(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// The redirect URI, exactly as registered: absolute, without fragment; `http` only on a
    /// loopback host (`http://127.0.0.1:0/callback` lets a loopback agent pick a free port).
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(redirect_uri.into());
        self
    }

    /// The cloud (default: [`Cloud::Default`]).
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// Shorthand for [`Cloud::Custom`] with one base URL for both hosts (a sandbox).
    pub fn base_url(self, base: Url) -> Self {
        self.cloud(Cloud::Custom {
            account: base.clone(),
            api: base,
        })
    }

    /// A shared HTTP client. It should not follow redirects and should have timeouts.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// How token calls authenticate (default: client secret).
    pub fn auth_method(mut self, auth: AuthMethod) -> Self {
        self.auth = auth;
        self
    }

    /// Timeouts of the default HTTP client (default 10 s to connect, 30 s per request).
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = Some(connect);
        self.timeout = Some(request);
        self
    }

    /// A hook awaited before every request to Withings' API host: token calls (code exchange,
    /// refresh, revoke, demo access), nonces and data calls. An application-wide rate limiter
    /// goes here, so that every call of every session waits for its turn.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use withings_oauth::Client;
    ///
    /// let sent = Arc::new(AtomicUsize::new(0));
    /// let counter = sent.clone();
    /// let client = Client::builder()
    ///     .client_id("my-client-id")
    ///     .client_secret("my-client-secret")
    ///     .redirect_uri("https://app.example.com/withings/callback")
    ///     .before_request(Arc::new(move || {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///         Box::pin(async {})
    ///     }))
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn before_request(mut self, hook: BeforeRequest) -> Self {
        self.before_request = Some(hook);
        self
    }

    /// Checks everything and builds the client.
    pub fn build(self) -> Result<Client, ConfigError> {
        let client_id = self
            .client_id
            .ok_or(ConfigError::Missing("the client id"))?;
        if client_id.is_empty()
            || client_id.len() > 256
            || client_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::InvalidClientId);
        }
        let client_secret = self
            .client_secret
            .ok_or(ConfigError::Missing("the client secret"))?;
        // Withings would refuse it only after the user has logged in and the code is spent.
        let secret = client_secret.expose_secret();
        if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::InvalidClientSecret);
        }
        let redirect_uri = self
            .redirect_uri
            .ok_or(ConfigError::Missing("the redirect URI"))?;
        let redirect_uri = validate_redirect_uri(&redirect_uri)?;
        let (account_url, api_url) = self.cloud.urls()?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(10)))
                .timeout(self.timeout.unwrap_or(DEFAULT_TIMEOUT))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("withings-oauth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                client_id,
                client_secret,
                redirect_uri,
                cloud: self.cloud,
                account_url,
                api_url,
                http,
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                auth: self.auth,
                before_request: self.before_request,
            }),
        })
    }
}

/// Parses and checks a redirect URI.
pub(crate) fn validate_redirect_uri(s: &str) -> Result<Url, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidRedirectUri(reason.to_owned());
    let url = Url::parse(s.trim()).map_err(|e| {
        bad(&format!(
            "{e}: give an absolute URL such as https://app.example.com/callback"
        ))
    })?;
    if url.cannot_be_a_base() {
        return Err(bad(
            "it must be an absolute URL with a path, such as https://app.example.com/callback",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("it must not contain a fragment (#...)"));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(bad(
            "plain http is only allowed on 127.0.0.1, [::1] or localhost: register an https callback",
        ));
    }
    if matches!(url.scheme(), "http" | "https") && url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if url.as_str().len() > 2048 {
        return Err(bad("it is longer than 2048 characters"));
    }
    Ok(url)
}

/// A client configuration that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("{0} is not set: pass it to the client builder")]
    Missing(&'static str),
    /// The client id is empty or holds spaces or control characters.
    #[error("the client id is not valid: copy it from the Withings developer dashboard")]
    InvalidClientId,
    /// The client secret is empty or holds spaces or control characters.
    #[error(
        "the client secret is empty or holds spaces or line breaks: copy it from the Withings developer dashboard"
    )]
    InvalidClientSecret,
    /// The redirect URI is not usable.
    #[error("the redirect URI is not valid: {0}")]
    InvalidRedirectUri(String),
    /// A base URL is not usable.
    #[error("the {which} base URL is not valid: {reason}")]
    InvalidBaseUrl {
        /// `account` or `api`.
        which: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No scope was asked for.
    #[error("no scope was requested: ask for at least one, e.g. user.metrics")]
    NoScopes,
    /// The default HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ClientBuilder {
        Client::builder()
            .client_id("id")
            .client_secret("secret")
            .redirect_uri("https://app.example.com/cb")
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(builder().build().is_ok());
        for bad in [
            "/relative/path",
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "mailto:someone@example.com",
        ] {
            let err = builder().redirect_uri(bad).build().unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidRedirectUri(_)),
                "{bad}: {err}"
            );
        }
        assert!(
            builder()
                .redirect_uri("http://127.0.0.1:0/cb")
                .build()
                .is_ok()
        );
        assert!(
            builder()
                .redirect_uri("http://[::1]:8080/cb")
                .build()
                .is_ok()
        );
        assert!(
            builder()
                .redirect_uri("com.example.app://callback")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        let err = Client::builder().build().unwrap_err();
        assert_eq!(err, ConfigError::Missing("the client id"));
        let err = builder().client_id("has space").build().unwrap_err();
        assert_eq!(err, ConfigError::InvalidClientId);
    }

    #[test]
    fn custom_bases_get_a_trailing_slash_and_refuse_plain_http_off_loopback() {
        let c = builder()
            .base_url("http://127.0.0.1:9999/prefix".parse().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            c.api_endpoint("v2/oauth2").as_str(),
            "http://127.0.0.1:9999/prefix/v2/oauth2"
        );
        let err = builder()
            .base_url("http://example.com/".parse().unwrap())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidBaseUrl { .. }));
    }
}
