//! [`LoginError`]: why the connect or callback route could not log the user in, and the page
//! that says so.

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::error;
use withings_oauth::{ApiError, CallbackError, Error, PendingLoginError, SessionError};

/// Why a login could not be started or finished. Its message says what the user can do; none
/// holds a `state`, a code, a cookie or a token.
///
/// As a response ([`IntoResponse`], [`page`](Self::page)) it is an HTML page whose `<main>` has
/// the id `login-error` and a `data-kind` attribute set to [`LoginError::kind`], for tests and
/// for styling. The details of [`Withings`](Self::Withings), [`Server`](Self::Server) and
/// [`NotRecorded`](Self::NotRecorded) (a database's message, a key id, Withings' answer) are
/// for the operator, never the page: it shows what to do and a short reference, and the log
/// holds the details under that reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The connect route could not tell who the user is (the owner function returned `None`).
    #[error("you are not signed in to this application: sign in, then connect Withings")]
    NotSignedIn,
    /// The callback's login was started by another user of the application (the browser's
    /// user signed out and another signed in, or someone else's login was sent to this browser).
    #[error(
        "this login was started by another user of this application: sign in as that user to finish it, or start a new one"
    )]
    OtherUser,
    /// A request that may change state came from another site's page (see
    /// [`refuse_cross_site`](crate::refuse_cross_site)).
    #[error(
        "this request came from a page of another site, so it was refused: go back to the application and use its own buttons"
    )]
    CrossSite,
    /// The user (or Withings) refused access.
    #[error("access to Withings was not allowed: to connect, start again and choose Allow")]
    Denied,
    /// The callback's login is not waiting: it was already used, or never started here.
    #[error(
        "this link was already used, or the login it belongs to was not started here: start again"
    )]
    Unknown,
    /// The login was started in another browser.
    #[error(
        "this login was started in another browser: finish it there, or start a new one in this browser"
    )]
    OtherBrowser,
    /// The login waited too long for its callback.
    #[error("this login took too long and expired: start again")]
    Expired,
    /// Withings refused the code: it is valid 30 seconds, once.
    #[error(
        "Withings no longer accepts this login's code (it is valid for 30 seconds, once): start again"
    )]
    CodeExpired,
    /// The callback is malformed or not this login's.
    #[error("the address Withings sent you back to is not valid: start again")]
    BadCallback,
    /// Withings failed, or could not be reached. The reason is for the log.
    #[error("Withings could not finish the login ({0}): start again in a moment")]
    Withings(String),
    /// The application's stores or configuration failed. The reason is for the log.
    #[error("the application could not save the login ({0}): try again later")]
    Server(String),
    /// The login was saved, but the application's
    /// [`on_connected`](crate::WithingsLoginBuilder::on_connected) hook failed to record it.
    /// The reason is for the log.
    #[error(
        "your Withings account was connected, but the application could not record it ({0}): connect again in a moment"
    )]
    NotRecorded(String),
}

impl LoginError {
    /// A short, stable name: `not-signed-in`, `other-user`, `cross-site`, `denied`, `unknown`,
    /// `other-browser`, `expired`, `code-expired`, `bad-callback`, `withings`, `server`,
    /// `not-recorded`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoginError::NotSignedIn => "not-signed-in",
            LoginError::OtherUser => "other-user",
            LoginError::CrossSite => "cross-site",
            LoginError::Denied => "denied",
            LoginError::Unknown => "unknown",
            LoginError::OtherBrowser => "other-browser",
            LoginError::Expired => "expired",
            LoginError::CodeExpired => "code-expired",
            LoginError::BadCallback => "bad-callback",
            LoginError::Withings(_) => "withings",
            LoginError::Server(_) => "server",
            LoginError::NotRecorded(_) => "not-recorded",
        }
    }

    /// The HTTP status of its page.
    pub fn status(&self) -> StatusCode {
        match self {
            LoginError::NotSignedIn => StatusCode::UNAUTHORIZED,
            LoginError::Denied
            | LoginError::OtherBrowser
            | LoginError::OtherUser
            | LoginError::CrossSite => StatusCode::FORBIDDEN,
            LoginError::Unknown
            | LoginError::Expired
            | LoginError::CodeExpired
            | LoginError::BadCallback => StatusCode::BAD_REQUEST,
            LoginError::Withings(_) => StatusCode::BAD_GATEWAY,
            LoginError::Server(_) | LoginError::NotRecorded(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            LoginError::NotSignedIn => "Sign in first",
            LoginError::OtherUser => "Another user's login",
            LoginError::CrossSite => "Request refused",
            LoginError::Denied => "Access not allowed",
            LoginError::Unknown => "Link already used",
            LoginError::OtherBrowser => "Wrong browser",
            LoginError::Expired | LoginError::CodeExpired => "Login expired",
            LoginError::BadCallback => "Invalid link",
            LoginError::Withings(_) => "Withings is not answering",
            LoginError::Server(_) | LoginError::NotRecorded(_) => "Something went wrong",
        }
    }

    /// What the page says: the message, without the reason of the errors whose reason is for
    /// the log.
    fn user_message(&self) -> String {
        match self {
            LoginError::Withings(_) => {
                "Withings could not finish the login: start again in a moment".to_owned()
            }
            LoginError::Server(_) => "The application could not save the login: try again later".to_owned(),
            LoginError::NotRecorded(_) => "Your Withings account was connected, but the application could not record it: connect again in a moment".to_owned(),
            other => other.to_string(),
        }
    }

    /// Whether its reason is for the log, with a reference on the page.
    fn is_internal(&self) -> bool {
        matches!(
            self,
            LoginError::Withings(_) | LoginError::Server(_) | LoginError::NotRecorded(_)
        )
    }

    /// Its page, with a link back to `back`.
    ///
    /// For [`Withings`](Self::Withings), [`Server`](Self::Server) and
    /// [`NotRecorded`](Self::NotRecorded), this logs the error (at `ERROR`) with a fresh
    /// reference, and the page shows that reference instead of the reason.
    pub fn page(&self, back: &str) -> Response {
        let reference = self.is_internal().then(|| {
            let reference = new_reference();
            error!(reference, kind = self.kind(), error = %self, "Withings login failed");
            reference
        });
        let mut html = String::from(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        );
        let _ = write!(
            html,
            "<title>{title}</title><style>{STYLE}</style></head><body>\
             <main id=\"login-error\" data-kind=\"{kind}\"><h1>{title}</h1>\
             <p id=\"message\">{message}</p>{reference}\
             <p><a id=\"back\" href=\"{back}\">Back</a></p></main></body></html>",
            title = self.title(),
            kind = self.kind(),
            message = escape(&sentence(&self.user_message())),
            reference = reference
                .map(|r| format!(
                    "<p id=\"reference\">If it happens again, tell the application's support \
                     this reference: <code>{r}</code>.</p>"
                ))
                .unwrap_or_default(),
            back = escape(back),
        );
        (
            self.status(),
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response()
    }

    /// The error for a failed take from the pending-login store.
    pub(crate) fn from_take(error: PendingLoginError) -> Self {
        match error {
            PendingLoginError::OtherBrowser => LoginError::OtherBrowser,
            PendingLoginError::Expired => LoginError::Expired,
            PendingLoginError::Unknown => LoginError::Unknown,
            other => LoginError::Server(other.to_string()),
        }
    }

    /// The error for a failed completion.
    pub(crate) fn from_login(error: Error) -> Self {
        match error {
            Error::Callback(CallbackError::Denied { .. }) => LoginError::Denied,
            Error::Callback(_) => LoginError::BadCallback,
            Error::Api(ApiError::InvalidCode) => LoginError::CodeExpired,
            Error::Api(e) => LoginError::Withings(e.to_string()),
            other => LoginError::Server(other.to_string()),
        }
    }

    /// The error for a session that could not start.
    pub(crate) fn from_session(error: SessionError) -> Self {
        LoginError::Server(error.to_string())
    }
}

impl IntoResponse for LoginError {
    /// The page, with a link back to `/`.
    fn into_response(self) -> Response {
        self.page("/")
    }
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;background:#f4f6f8;color:#1d2430;margin:0}\
main{max-width:34rem;margin:4rem auto;background:#fff;border-radius:12px;padding:2rem 2.5rem;\
box-shadow:0 2px 12px rgba(0,0,0,.08)}h1{margin-top:0;font-size:1.5rem;color:#b3261e}\
a{color:#0b63ce}";

/// A short random reference for a failure: the page shows it, the log has it with the details.
pub(crate) fn new_reference() -> String {
    let mut bytes = [0u8; 4];
    // Without the OS's random source, the time tells failures apart well enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The message as a sentence: capitalized, with a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}.", first.unwrap_or_default(), chars.as_str())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_typed_and_say_what_to_do() {
        let page = LoginError::OtherBrowser.page("/home");
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            LoginError::from_take(PendingLoginError::Expired).kind(),
            "expired"
        );
        assert_eq!(
            LoginError::from_login(Error::Api(ApiError::InvalidCode)).kind(),
            "code-expired"
        );
        assert!(LoginError::CodeExpired.to_string().contains("start again"));
        assert_eq!(
            LoginError::CrossSite.page("/").status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(new_reference().len(), 8);
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
