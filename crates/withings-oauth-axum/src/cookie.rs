//! The browser-binding cookie: read from `Cookie`, written with `Set-Cookie`.

use axum::http::header::{COOKIE, HeaderMap};
use withings_oauth::BrowserBinding;

/// The cookie's name: `__Host-` on https, which browsers accept only with `Secure`, `Path=/` and
/// no `Domain`, so a sibling subdomain can't plant its own binding.
pub(crate) fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-withings-login"
    } else {
        "withings-login"
    }
}

/// The binding the browser sent, if any well-formed one.
pub(crate) fn read_binding(headers: &HeaderMap, secure: bool) -> Option<BrowserBinding> {
    let name = cookie_name(secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .find_map(|(_, value)| BrowserBinding::from_cookie_value(value.trim()))
}

/// The `Set-Cookie` value for `binding`: a session cookie (the browser forgets it when it
/// quits), `HttpOnly`, `SameSite=Lax` (see [`BrowserBinding::COOKIE_ATTRIBUTES`] for why not
/// `Strict`), `Secure` on https.
pub(crate) fn set_cookie(binding: &BrowserBinding, secure: bool) -> String {
    format!(
        "{}={}; {}{}",
        cookie_name(secure),
        binding.reveal_cookie_value(),
        BrowserBinding::COOKIE_ATTRIBUTES,
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_round_trips_and_says_lax_httponly_and_secure_on_https() {
        let binding = BrowserBinding::new_random().unwrap();
        let set = set_cookie(&binding, true);
        assert!(set.starts_with("__Host-withings-login="), "{set}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set_cookie(&binding, false).contains("Secure"));

        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("theme=dark; withings-login=junk"),
        );
        let sent = format!("a=b; withings-login={}", binding.reveal_cookie_value());
        headers.append(COOKIE, HeaderValue::from_str(&sent).unwrap());
        let read = read_binding(&headers, false).expect("the well-formed cookie");
        assert_eq!(read.hash(), binding.hash());
        assert!(
            read_binding(&headers, true).is_none(),
            "the https name differs"
        );
        assert!(read_binding(&HeaderMap::new(), false).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_cookie_header_gives_a_well_formed_binding_or_none(header in ".{0,300}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("withings-login={header}")) {
                headers.insert(COOKIE, value);
            }
            if let Some(binding) = read_binding(&headers, false) {
                let value = binding.reveal_cookie_value();
                proptest::prop_assert_eq!(value.len(), 43);
                proptest::prop_assert!(header.contains(value));
            }
        }
    }
}
