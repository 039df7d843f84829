//! Recognising the navigation that carries the login's callback.

use url::Url;
use withings_oauth::is_redirect_target;

/// Returns `candidate` parsed when it goes to `redirect_uri` (the core's rule: same scheme, host,
/// port and path, with any query). The query is not checked here: the flow checks `state` and
/// `code` when it completes the login, so a wrong callback still ends the window with a typed
/// error instead of leaving the user on a page that cannot load.
pub(crate) fn callback_url(candidate: &str, redirect_uri: &Url) -> Option<Url> {
    // WebKit hands over navigations as text; one that is not a URL is not the callback.
    let url = Url::parse(candidate).ok()?;
    is_redirect_target(&url, redirect_uri).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_registered_https_callback_is_caught_with_any_query() {
        let r = redirect("https://app.example.com/withings/callback");
        for candidate in [
            "https://app.example.com/withings/callback?code=abc&state=xyz",
            "https://app.example.com/withings/callback",
            "https://APP.example.com/withings/callback?error=access_denied&state=s",
            "https://app.example.com:443/withings/callback?code=c",
            "https://app.example.com/withings/callback?code=c#fragment",
        ] {
            let caught = callback_url(candidate, &r);
            assert!(caught.is_some(), "{candidate} should be caught");
        }
        let caught = callback_url(
            "https://app.example.com/withings/callback?code=abc&state=xyz",
            &r,
        )
        .unwrap();
        assert_eq!(caught.query(), Some("code=abc&state=xyz"));
    }

    #[test]
    fn other_targets_load_normally() {
        let r = redirect("https://app.example.com/withings/callback");
        for candidate in [
            "http://app.example.com/withings/callback?code=abc",
            "https://evil.example.com/withings/callback?code=abc",
            "https://app.example.com.evil.test/withings/callback?code=abc",
            "https://app.example.com:8443/withings/callback?code=abc",
            "https://app.example.com/withings/callback/?code=abc",
            "https://app.example.com/withings/callbackx?code=abc",
            "https://app.example.com/withings?code=abc",
            "https://account.withings.com/oauth2_user/authorize2?redirect_uri=https://app.example.com/withings/callback",
            "about:blank",
            "not a url",
            "",
        ] {
            assert!(
                callback_url(candidate, &r).is_none(),
                "{candidate} should not be caught"
            );
        }
    }

    #[test]
    fn custom_schemes_and_loopback_ports_are_matched_exactly() {
        let custom = redirect("com.example.app://callback");
        assert!(callback_url("com.example.app://callback?code=a&state=b", &custom).is_some());
        assert!(callback_url("com.example.app://other?code=a", &custom).is_none());
        assert!(callback_url("org.example.app://callback?code=a", &custom).is_none());

        let loopback = redirect("http://127.0.0.1:8765/callback");
        assert!(callback_url("http://127.0.0.1:8765/callback?code=a", &loopback).is_some());
        assert!(callback_url("http://127.0.0.1:8766/callback?code=a", &loopback).is_none());
        assert!(callback_url("http://localhost:8765/callback?code=a", &loopback).is_none());
    }
}
