//! The callback check every agent and `PendingCallback::complete` apply: a callback accepted
//! means this login's redirect target, one `state` equal to this login's, and one `code`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;
use withings_oauth::CallbackError;
use withings_oauth::{is_redirect_target, screen_callback};

const REDIRECT_URI: &str = "https://app.example.com/withings/callback";
const STATE: &str = "s7a7e-Zq93kP0xR2vLm8";

fn authorize_url() -> Url {
    let mut url = Url::parse("https://account.withings.com/oauth2_user/authorize2").unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "fuzz-client")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "user.metrics")
        .append_pair("state", STATE);
    url
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Half the inputs are a query on the right redirect URI, so the fuzzer reaches the state
    // and code checks without first guessing the URL.
    let candidate = if mode & 1 == 0 {
        format!("{REDIRECT_URI}?{text}")
    } else {
        text.into_owned()
    };
    let Ok(candidate) = Url::parse(&candidate) else {
        return;
    };
    let redirect_uri = Url::parse(REDIRECT_URI).unwrap();
    let result = screen_callback(&authorize_url(), &candidate);
    let params: Vec<(String, String)> = candidate.query_pairs().into_owned().collect();
    let values = |name: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    match &result {
        Ok(()) => {
            assert!(
                is_redirect_target(&candidate, &redirect_uri),
                "accepted a callback to elsewhere: {candidate}"
            );
            assert_eq!(
                values("state"),
                [STATE],
                "accepted a callback whose state is not this login's"
            );
            assert_eq!(
                values("code").len(),
                1,
                "accepted a callback without exactly one code"
            );
        }
        Err(CallbackError::Denied { .. }) => {
            assert!(
                is_redirect_target(&candidate, &redirect_uri),
                "a denial from elsewhere was believed"
            );
            assert_eq!(
                values("state"),
                [STATE],
                "a denial with a foreign state was believed"
            );
        }
        Err(e) => {
            // Messages never quote the state, whatever the callback holds.
            if !candidate.as_str().contains(STATE) {
                assert!(!e.to_string().contains(STATE));
            }
            assert!(!format!("{e:?}").contains(STATE) || candidate.as_str().contains(STATE));
            if e.is_foreign() {
                // A foreign callback leaves the login waiting: it must not also be the real one.
                let right_target = is_redirect_target(&candidate, &redirect_uri);
                let right_state = values("state") == [STATE];
                assert!(
                    !(right_target
                        && right_state
                        && values("code").len() == 1
                        && values("error").is_empty()
                        && !matches!(e, CallbackError::RepeatedParameter(_))),
                    "this login's callback was called foreign: {e}"
                );
            }
        }
    }
});
