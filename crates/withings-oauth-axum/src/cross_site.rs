//! [`refuse_cross_site`]: the CSRF check of every state-changing route, from the request's
//! `Sec-Fetch-Site` and `Origin` headers.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::warn;
use url::Url;

use crate::error::LoginError;

/// Middleware that refuses, with the [`LoginError::CrossSite`] page (HTTP 403), every request
/// that may change state (any method but `GET`, `HEAD`, `OPTIONS` and `TRACE`) unless a browser
/// says it comes from the application's own pages. As the OWASP CSRF cheat sheet recommends
/// (Fetch Metadata, then the `Origin` header), in this order:
///
/// 1. `Sec-Fetch-Site` (sent by current browsers): `same-origin`, or `none` (the user typed or
///    bookmarked it), passes; `same-site` (a page of another port or subdomain, which
///    `SameSite=Lax` cookies don't stop) and `cross-site` are refused.
/// 2. Otherwise `Origin` (sent on every `POST` by browsers for years): it passes when its host
///    and port are the request's `Host`; `null` and anything else is refused.
/// 3. A request with neither is refused: it is not a form of this application in a browser.
///
/// No form token is needed besides: a browser sends one of the two headers on every `POST`,
/// and a page of another origin can't forge them. Your own state-changing routes should
/// still be `POST` (or other non-`GET` methods), since `GET` is let through.
///
/// The connect route of [`WithingsLogin::router`](crate::WithingsLogin::router) has it already;
/// add it to the rest of the application with [`axum::middleware::from_fn`]:
///
/// ```
/// use axum::Router;
/// use axum::routing::post;
/// use withings_oauth_axum::refuse_cross_site;
///
/// let app: Router = Router::new()
///     .route("/sign-out", post(|| async { "signed out" }))
///     .layer(axum::middleware::from_fn(refuse_cross_site));
/// ```
///
/// Behind a reverse proxy, keep the browser's `Host` header (nginx: `proxy_set_header Host
/// $host`), or browsers without `Sec-Fetch-Site` are refused.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    match cross_site(request.method(), request.headers()) {
        None => next.run(request).await,
        Some(reason) => {
            warn!(
                method = %request.method(),
                path = request.uri().path(),
                reason,
                "a request that may change state was refused: it does not come from this application's pages"
            );
            LoginError::CrossSite.page("/")
        }
    }
}

/// Why the request must be refused, if it must.
pub(crate) fn cross_site(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some("Sec-Fetch-Site is not same-origin"),
        };
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Some("neither Sec-Fetch-Site nor Origin");
    };
    let origin = origin.to_str().ok().and_then(|o| Url::parse(o).ok());
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) if authority(&origin).eq_ignore_ascii_case(host) => None,
        _ => Some("Origin is not the request's host"),
    }
}

/// `host[:port]` as a `Host` header writes it (no port when it is the scheme's default).
fn authority(origin: &Url) -> String {
    let host = origin.host_str().unwrap_or_default();
    match origin.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(method: Method, pairs: &[(&'static str, &'static str)]) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        cross_site(&method, &headers)
    }

    #[test]
    fn only_the_applications_own_pages_may_post() {
        let host = ("host", "app.example.com:8443");
        assert_eq!(
            check(Method::GET, &[("sec-fetch-site", "cross-site")]),
            None
        );
        assert_eq!(
            check(Method::POST, &[("sec-fetch-site", "same-origin")]),
            None
        );
        assert_eq!(check(Method::POST, &[("sec-fetch-site", "none")]), None);
        for site in ["same-site", "cross-site", "junk"] {
            let pairs = [
                ("sec-fetch-site", site),
                ("origin", "https://app.example.com:8443"),
                host,
            ];
            assert!(check(Method::POST, &pairs).is_some(), "{site}");
        }
        let same = [("origin", "https://app.example.com:8443"), host];
        assert_eq!(check(Method::POST, &same), None);
        assert_eq!(
            check(
                Method::DELETE,
                &[
                    ("origin", "https://app.example.com"),
                    ("host", "app.example.com")
                ]
            ),
            None
        );
        for origin in [
            "https://app.example.com:9000",
            "https://evil.example.com:8443",
            "null",
        ] {
            assert!(
                check(Method::POST, &[("origin", origin), host]).is_some(),
                "{origin}"
            );
        }
        assert!(check(Method::POST, &[host]).is_some(), "no header at all");
        assert!(check(Method::POST, &[("origin", "https://app.example.com:8443")]).is_some());
    }
}
