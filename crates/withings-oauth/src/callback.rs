//! Checking a callback URL against the login that is waiting for it: the redirect target, one
//! `state` and one `code`, `state` before anything else.

use url::Url;

use crate::csrf::same_state;
use crate::secret::AuthorizationCode;

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
) -> Result<AuthorizationCode, CallbackError> {
    if !is_redirect_target(callback, redirect_uri) {
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
        Some(code) if !code.is_empty() => Ok(AuthorizationCode::new(code)),
        _ => Err(CallbackError::MissingCode),
    }
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

/// Checks a candidate callback against the login whose authorize URL is `authorize_url`, without
/// consuming anything: the same checks as
/// [`PendingCallback::complete`](crate::PendingCallback::complete) makes before exchanging the
/// code (redirect target, single `state` and `code`, `state` compared in constant time, denial).
///
/// Agents that can keep waiting use it to ignore callbacks that are not this login's
/// ([`CallbackError::is_foreign`]).
pub fn screen_callback(authorize_url: &Url, candidate: &Url) -> Result<(), CallbackError> {
    let (state, redirect_uri) =
        authorize_url_parts(authorize_url).ok_or(CallbackError::MissingState)?;
    check_callback(candidate, &redirect_uri, &state).map(drop)
}

/// Whether `candidate` goes to `redirect_uri`: same scheme, host (compared case-insensitively),
/// port (an omitted port counts as the scheme's default) and path; query, fragment and user info
/// are not looked at.
///
/// This is the rule [`PendingCallback::complete`](crate::PendingCallback::complete) applies to a
/// callback before believing anything in it. An agent that watches navigations (an embedded
/// webview, say) uses it to recognise the one that carries the callback; it then hands the whole
/// URL to the flow, which checks `state` and `code`.
///
/// ```
/// use url::Url;
/// use withings_oauth::is_redirect_target;
///
/// let redirect_uri = Url::parse("https://app.example.com/withings/callback")?;
/// let caught = Url::parse("https://APP.example.com:443/withings/callback?code=c&state=s")?;
/// assert!(is_redirect_target(&caught, &redirect_uri));
///
/// let elsewhere = Url::parse("https://app.example.com/withings/callback/?code=c")?;
/// assert!(!is_redirect_target(&elsewhere, &redirect_uri));
/// let other_port = Url::parse("https://app.example.com:8443/withings/callback")?;
/// assert!(!is_redirect_target(&other_port, &redirect_uri));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn is_redirect_target(candidate: &Url, redirect_uri: &Url) -> bool {
    candidate.scheme() == redirect_uri.scheme()
        && candidate.host_str().map(str::to_ascii_lowercase)
            == redirect_uri.host_str().map(str::to_ascii_lowercase)
        && candidate.port_or_known_default() == redirect_uri.port_or_known_default()
        && candidate.path() == redirect_uri.path()
}

/// A callback URL that can't be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Not a URL at all.
    #[error("the callback is not a URL: paste the whole address from the browser's address bar")]
    NotAUrl,
    /// Scheme, host, port or path differ from the redirect URI.
    #[error(
        "the callback went to {got}, not to the redirect URI {expected}: it does not belong to this login"
    )]
    RedirectMismatch {
        /// The redirect URI (without query).
        expected: String,
        /// Where the callback went (scheme, host, port and path only).
        got: String,
    },
    /// The user (or Withings) refused access.
    #[error("authorization was denied ({error}{}): the user must allow access to continue", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        /// The `error` parameter, e.g. `access_denied`.
        error: String,
        /// The `error_description` parameter, if any.
        description: Option<String>,
    },
    /// No `state` parameter.
    #[error("the callback has no state parameter: it did not come from this login")]
    MissingState,
    /// `state` differs from the one this login sent.
    #[error(
        "the callback's state does not match this login's: it belongs to another login or was forged"
    )]
    StateMismatch,
    /// No `code` parameter (and no `error`).
    #[error("the callback has no authorization code: the login did not finish; start it again")]
    MissingCode,
    /// A parameter given more than once.
    #[error("the callback repeats the {0} parameter: it was tampered with")]
    RepeatedParameter(&'static str),
}

impl CallbackError {
    /// Whether this callback might be a forgery or belong to another login, rather than the end of
    /// this one: an agent that can keep waiting (a loopback listener) should ignore it.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            CallbackError::RedirectMismatch { .. }
                | CallbackError::MissingState
                | CallbackError::StateMismatch
                | CallbackError::RepeatedParameter(_)
                | CallbackError::NotAUrl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
