//! Logins, re-logins and logouts through the web instances, by an HTTP client that follows
//! the flow a browser would: sign in to the application, connect, post the sandbox's consent
//! form, follow the callback.

use std::time::Duration;

use reqwest::header::LOCATION;
use url::Url;

/// One application user, connected to one sandbox user.
#[derive(Clone, Debug)]
pub(crate) struct WebUser {
    /// The application's user name and password.
    pub(crate) name: String,
    pub(crate) password: String,
    /// The sandbox user's number (`userN@example.com`).
    pub(crate) number: u32,
}

impl WebUser {
    pub(crate) fn userid(&self) -> u64 {
        withings_sandbox::NUMBERED_USERID_BASE + u64::from(self.number)
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())
}

fn location(response: &reqwest::Response, base: &Url) -> Result<Url, String> {
    let status = response.status();
    if !status.is_redirection() {
        return Err(format!("status {status}"));
    }
    let to = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("a redirect without Location")?;
    base.join(to).map_err(|_| "a bad Location".to_owned())
}

async fn send(request: reqwest::RequestBuilder, step: &str) -> Result<reqwest::Response, String> {
    request.send().await.map_err(|e| {
        format!(
            "{step}: {}",
            if e.is_timeout() {
                "timeout"
            } else {
                "transport"
            }
        )
    })
}

async fn sign_in(http: &reqwest::Client, base: &Url, user: &WebUser) -> Result<(), String> {
    let response = send(
        http.post(base.join("/sign-in").map_err(|e| e.to_string())?)
            .header("Sec-Fetch-Site", "same-origin")
            .form(&[("name", &user.name), ("password", &user.password)]),
        "sign-in",
    )
    .await?;
    location(&response, base).map_err(|e| format!("sign-in: {e}"))?;
    Ok(())
}

/// A whole login of `user` through the instance at `base`, granting `scopes`: `Ok` once the
/// callback answered the redirect to the application's page, i.e. the user was told.
pub(crate) async fn login(base: &Url, user: &WebUser, scopes: &[&str]) -> Result<(), String> {
    let http = client()?;
    sign_in(&http, base, user).await?;
    let connect = send(
        http.post(base.join("/withings/connect").map_err(|e| e.to_string())?)
            .header("Sec-Fetch-Site", "same-origin"),
        "connect",
    )
    .await?;
    let authorize = location(&connect, base).map_err(|e| format!("connect: {e}"))?;
    let sandbox = withings_sandbox::User::numbered(user.number);
    // The consent form carries the authorization request in hidden fields, as the page's does.
    let request: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut form: Vec<(&str, &str)> = request
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.extend([
        ("email", sandbox.email.as_str()),
        ("password", sandbox.password.as_str()),
        ("decision", "allow"),
    ]);
    form.extend(scopes.iter().map(|s| ("grant_scope", *s)));
    let consent = send(http.post(authorize.clone()).form(&form), "consent").await?;
    let callback = location(&consent, &authorize).map_err(|e| format!("consent: {e}"))?;
    if callback.query_pairs().any(|(k, _)| k == "error") {
        return Err("consent: refused".into());
    }
    let done = send(http.get(callback), "callback").await?;
    let after = location(&done, base).map_err(|e| format!("callback: {e}"))?;
    if after.path() != "/" {
        return Err(format!("callback: redirected to {}", after.path()));
    }
    Ok(())
}

/// Disconnects `user` through the instance at `base`: `Ok` once the application answered
/// the redirect to its page.
pub(crate) async fn logout(base: &Url, user: &WebUser) -> Result<(), String> {
    let http = client()?;
    sign_in(&http, base, user).await?;
    let response = send(
        http.post(base.join("/disconnect").map_err(|e| e.to_string())?)
            .header("Sec-Fetch-Site", "same-origin"),
        "disconnect",
    )
    .await?;
    location(&response, base).map_err(|e| format!("disconnect: {e}"))?;
    Ok(())
}

/// The home page of a signed-in user, which shows the connection and reads the last weight
/// (a data call, and a refresh when the token is due, from the web instance).
pub(crate) async fn home(base: &Url, user: &WebUser) -> Result<(), String> {
    let http = client()?;
    sign_in(&http, base, user).await?;
    let response = send(http.get(base.clone()), "home").await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("home: status {}", response.status()))
    }
}
