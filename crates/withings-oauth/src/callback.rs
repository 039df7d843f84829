//! Checking a callback URL against the login that is waiting for it.

use secrecy::SecretString;
use url::Url;

use crate::error::CallbackError;
use crate::state::same_state;

/// Longest `error` / `error_description` kept from a denial.
const MAX_DENIAL_TEXT: usize = 200;

/// Checks `callback` and returns its code.
///
/// Order matters: the redirect target and `state` are checked before anything else is believed,
/// so a forged callback can't pass for a denial.
pub(crate) fn check_callback(
    callback: &Url,
    redirect_uri: &Url,
    expected_state: &str,
) -> Result<SecretString, CallbackError> {
    if !same_target(callback, redirect_uri) {
        return Err(CallbackError::RedirectMismatch {
            expected: target(redirect_uri),
            got: target(callback),
        });
    }
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (key, value) in callback.query_pairs() {
        let (slot, name) = match key.as_ref() {
            "code" => (&mut code, "code"),
            "state" => (&mut state, "state"),
            "error" => (&mut error, "error"),
            "error_description" => (&mut description, "error_description"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(CallbackError::RepeatedParameter(name));
        }
        *slot = Some(value.into_owned());
    }
    let state = state.ok_or(CallbackError::MissingState)?;
    if !same_state(expected_state, &state) {
        return Err(CallbackError::StateMismatch);
    }
    if let Some(error) = error {
        return Err(CallbackError::Denied {
            error: printable(&error),
            description: description.map(|d| printable(&d)),
        });
    }
    match code {
        Some(code) if !code.is_empty() => Ok(SecretString::from(code)),
        _ => Err(CallbackError::MissingCode),
    }
}

/// Scheme, host, port and path, which must match the redirect URI.
pub(crate) fn same_target(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

fn target(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DENIAL_TEXT)
        .collect()
}

/// The `state` and `redirect_uri` an authorize URL carries.
pub(crate) fn authorize_url_parts(authorize_url: &Url) -> Option<(String, Url)> {
    let mut state = None;
    let mut redirect = None;
    for (k, v) in authorize_url.query_pairs() {
        match k.as_ref() {
            "state" => state = Some(v.into_owned()),
            "redirect_uri" => redirect = Url::parse(&v).ok(),
            _ => {}
        }
    }
    Some((state?, redirect?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    fn redirect() -> Url {
        "https://app.example.com/cb".parse().unwrap()
    }

    fn check(s: &str) -> Result<String, CallbackError> {
        let url = Url::parse(s).map_err(|_| CallbackError::NotAUrl)?;
        check_callback(&url, &redirect(), "S1").map(|c| c.expose_secret().to_owned())
    }

    #[test]
    fn accepts_the_right_callback() {
        assert_eq!(
            check("https://app.example.com/cb?code=C&state=S1").unwrap(),
            "C"
        );
        assert_eq!(
            check("https://APP.example.com:443/cb?state=S1&code=C&x=1").unwrap(),
            "C"
        );
    }

    #[test]
    fn refuses_the_wrong_ones() {
        use CallbackError::*;
        assert!(matches!(
            check("https://evil.example.com/cb?code=C&state=S1"),
            Err(RedirectMismatch { .. })
        ));
        assert!(matches!(
            check("https://app.example.com/other?code=C&state=S1"),
            Err(RedirectMismatch { .. })
        ));
        assert!(matches!(
            check("http://app.example.com/cb?code=C&state=S1"),
            Err(RedirectMismatch { .. })
        ));
        assert!(matches!(
            check("https://app.example.com:8443/cb?code=C&state=S1"),
            Err(RedirectMismatch { .. })
        ));
        assert_eq!(
            check("https://app.example.com/cb?code=C"),
            Err(MissingState)
        );
        assert_eq!(
            check("https://app.example.com/cb?code=C&state=S2"),
            Err(StateMismatch)
        );
        assert_eq!(
            check("https://app.example.com/cb?state=S1"),
            Err(MissingCode)
        );
        assert_eq!(
            check("https://app.example.com/cb?state=S1&code="),
            Err(MissingCode)
        );
        assert_eq!(
            check("https://app.example.com/cb?code=C&code=D&state=S1"),
            Err(RepeatedParameter("code"))
        );
        assert_eq!(
            check("https://app.example.com/cb?code=C&state=S1&state=S1"),
            Err(RepeatedParameter("state"))
        );
    }

    #[test]
    fn denial_is_typed_only_with_the_right_state() {
        let err = check("https://app.example.com/cb?error=access_denied&error_description=User+said+no&state=S1").unwrap_err();
        assert_eq!(
            err,
            CallbackError::Denied {
                error: "access_denied".into(),
                description: Some("User said no".into())
            }
        );
        assert_eq!(
            check("https://app.example.com/cb?error=access_denied&state=XX"),
            Err(CallbackError::StateMismatch)
        );
    }

    #[test]
    fn mismatch_message_never_shows_the_query() {
        let err = check("https://evil.example.com/cb?code=SECRETCODE&state=S1").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRETCODE"));
    }

    proptest! {
        #[test]
        fn never_panics_and_never_accepts_a_wrong_state(query in ".*", state in "[A-Za-z0-9_-]{0,50}") {
            let mut url = redirect();
            url.set_query(Some(&query));
            if let Ok(code) = check_callback(&url, &redirect(), "expected-state") {
                let states: Vec<_> = url.query_pairs().filter(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).collect();
                prop_assert_eq!(states, vec!["expected-state".to_owned()]);
                prop_assert!(!code.expose_secret().is_empty());
            }
            url.query_pairs_mut().clear().append_pair("code", "c").append_pair("state", &state);
            let accepted = check_callback(&url, &redirect(), "expected-state").is_ok();
            prop_assert_eq!(accepted, state == "expected-state");
        }
    }
}
