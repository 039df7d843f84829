//! The pages the listener answers with.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

#[derive(Clone, Copy)]
pub(super) enum Page {
    Success,
    Denied,
    Failed,
    NotThisLogin,
    NotFound,
    Redirecting,
    StartUsed,
}

pub(super) fn page(status: StatusCode, which: Page) -> Response<Full<Bytes>> {
    let (title, text) = match which {
        Page::Success => (
            "Logged in",
            "Withings sent the login back to the application. You can close this window.",
        ),
        Page::Denied => (
            "Access denied",
            "Access to your Withings data was denied, so the application is not logged in. \
             You can close this window; start the login again to allow access.",
        ),
        Page::Failed => (
            "Login not finished",
            "Withings sent no authorization code. You can close this window and start the login again.",
        ),
        Page::NotThisLogin => (
            "Not this login",
            "This address is waiting for a different login. If you started a login, use the \
             browser window it opened.",
        ),
        Page::NotFound => ("Not found", "Nothing here."),
        Page::Redirecting => ("Redirecting", "Going to the Withings login."),
        Page::StartUsed => (
            "Link already used",
            "This login link is not valid or was already used. If no Withings login page \
             opened, close this window and start the login again.",
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}</style>\
         </head><body><h1 id=\"title\">{title}</h1><p id=\"message\">{text}</p></body></html>"
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The address bar holds the code: no page may learn it from a Referer.
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
