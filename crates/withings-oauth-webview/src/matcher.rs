//! Recognising the navigation that carries the login's callback, and the ones that only look
//! like it.

use url::Url;
use withings_oauth::{is_redirect_target, screen_callback};

/// What a navigation of the login window is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Navigation {
    /// This login's callback (a code, or a denial, with this login's `state`): the window ends
    /// the login with it.
    Callback(Url),
    /// A navigation to the redirect URI that is not this login's callback (no `state`, another
    /// `state`, a repeated parameter): a page or another program trying to end or hijack the
    /// login. It is blocked and the window stays, as the loopback and paste agents keep waiting.
    Foreign,
    /// Anywhere else: the login pages load normally.
    Elsewhere,
}

/// Classifies `candidate`: the redirect target is the core's rule (same scheme, host, port and
/// path, any query), then the callback is screened against the login's authorize URL as the
/// flow will check it.
pub(crate) fn classify(candidate: &str, redirect_uri: &Url, authorize_url: &Url) -> Navigation {
    // WebKit hands over navigations as text; one that is not a URL is not the callback.
    let Ok(url) = Url::parse(candidate) else {
        return Navigation::Elsewhere;
    };
    if !is_redirect_target(&url, redirect_uri) {
        return Navigation::Elsewhere;
    }
    match screen_callback(authorize_url, &url) {
        Err(e) if e.is_foreign() => Navigation::Foreign,
        _ => Navigation::Callback(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// The authorize URL of a login with `state` = `s7a7e` and `redirect_uri`.
    fn authorize(redirect_uri: &Url) -> Url {
        let mut url = redirect("https://account.withings.com/oauth2_user/authorize2");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "id")
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("scope", "user.metrics")
            .append_pair("state", "s7a7e");
        url
    }

    fn is_callback(candidate: &str, r: &Url) -> bool {
        matches!(
            classify(candidate, r, &authorize(r)),
            Navigation::Callback(_)
        )
    }

    #[test]
    fn this_logins_callback_is_caught_with_its_query() {
        let r = redirect("https://app.example.com/withings/callback");
        for candidate in [
            "https://app.example.com/withings/callback?code=abc&state=s7a7e",
            "https://APP.example.com/withings/callback?error=access_denied&state=s7a7e",
            "https://app.example.com:443/withings/callback?state=s7a7e&code=c",
            "https://app.example.com/withings/callback?code=c&state=s7a7e#fragment",
        ] {
            assert!(is_callback(candidate, &r), "{candidate} should be caught");
        }
        let Navigation::Callback(caught) = classify(
            "https://app.example.com/withings/callback?code=abc&state=s7a7e",
            &r,
            &authorize(&r),
        ) else {
            panic!("not caught");
        };
        assert_eq!(caught.query(), Some("code=abc&state=s7a7e"));
    }

    #[test]
    fn a_navigation_to_the_redirect_uri_without_this_logins_state_is_blocked() {
        let r = redirect("https://app.example.com/withings/callback");
        for candidate in [
            "https://app.example.com/withings/callback?code=attacker&state=forged",
            "https://app.example.com/withings/callback?code=attacker",
            "https://app.example.com/withings/callback",
            "https://app.example.com/withings/callback?error=access_denied&state=forged",
            "https://app.example.com/withings/callback?code=a&state=s7a7e&state=s7a7e",
        ] {
            assert_eq!(
                classify(candidate, &r, &authorize(&r)),
                Navigation::Foreign,
                "{candidate}"
            );
        }
    }

    #[test]
    fn other_targets_load_normally() {
        let r = redirect("https://app.example.com/withings/callback");
        for candidate in [
            "http://app.example.com/withings/callback?code=abc&state=s7a7e",
            "https://evil.example.com/withings/callback?code=abc&state=s7a7e",
            "https://app.example.com.evil.test/withings/callback?code=abc&state=s7a7e",
            "https://app.example.com:8443/withings/callback?code=abc&state=s7a7e",
            "https://app.example.com/withings/callback/?code=abc&state=s7a7e",
            "https://app.example.com/withings/callbackx?code=abc&state=s7a7e",
            "https://app.example.com/withings?code=abc&state=s7a7e",
            "https://account.withings.com/oauth2_user/authorize2?redirect_uri=https://app.example.com/withings/callback",
            "about:blank",
            "not a url",
            "",
        ] {
            assert_eq!(
                classify(candidate, &r, &authorize(&r)),
                Navigation::Elsewhere,
                "{candidate} should load"
            );
        }
    }

    #[test]
    fn custom_schemes_and_loopback_ports_are_matched_exactly() {
        let custom = redirect("com.example.app://callback");
        assert!(is_callback(
            "com.example.app://callback?code=a&state=s7a7e",
            &custom
        ));
        assert!(!is_callback(
            "com.example.app://other?code=a&state=s7a7e",
            &custom
        ));
        assert!(!is_callback(
            "org.example.app://callback?code=a&state=s7a7e",
            &custom
        ));

        let loopback = redirect("http://127.0.0.1:8765/callback");
        assert!(is_callback(
            "http://127.0.0.1:8765/callback?code=a&state=s7a7e",
            &loopback
        ));
        assert!(!is_callback(
            "http://127.0.0.1:8766/callback?code=a&state=s7a7e",
            &loopback
        ));
        assert!(!is_callback(
            "http://localhost:8765/callback?code=a&state=s7a7e",
            &loopback
        ));
    }
}
