//! The sandbox's request parsing: form bodies and query strings, and scope lists.
//!
//! Properties: the value an endpoint reads is the first one sent, body before query, and an
//! empty one counts as absent;
//! a parsed scope list is non-empty, known scopes only, without duplicates, and reads back the
//! same when joined again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use url::form_urlencoded;
use withings_sandbox::KNOWN_SCOPES;
use withings_sandbox::fuzzing::{all, param, scopes};

const NAMES: [&str; 6] = [
    "action",
    "grant_type",
    "code",
    "state",
    "scope",
    "client_id",
];

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // One input: a form body, and optionally a query string after a 0xff separator.
    let (body, query) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (
            &rest[..at],
            Some(String::from_utf8_lossy(&rest[at + 1..]).into_owned()),
        ),
        None => (rest, None),
    };
    let query = query.as_deref();
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    if let Some(q) = query {
        pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let name = NAMES[usize::from(split) % NAMES.len()];
    // The first value sent; an empty one counts as absent, as a missing parameter.
    let expected = pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    let got = param(query, body, name);
    let every = all(query, body, name);
    assert!(
        got.as_ref().is_none_or(|v| !v.is_empty()),
        "an empty value was read as given"
    );
    assert!(got.as_ref().is_none_or(|v| every.contains(v)));
    assert_eq!(every.len(), pairs.iter().filter(|(k, _)| k == name).count());
    // The endpoint reads a value only where one was sent, and the first one sent.
    assert_eq!(
        got.is_some(),
        expected.is_some(),
        "{name}: present and absent disagree"
    );
    if let (Some(g), Some(e)) = (&got, &expected) {
        assert_eq!(g, e, "{name}: not the first value sent");
    }

    let raw = String::from_utf8_lossy(rest);
    if let Some(list) = scopes(&raw) {
        assert!(!list.is_empty());
        for (i, s) in list.iter().enumerate() {
            assert!(
                KNOWN_SCOPES.contains(&s.as_str()),
                "unknown scope {s:?} accepted"
            );
            assert!(!list[..i].contains(s), "duplicate scope {s:?}");
        }
        assert_eq!(
            scopes(&list.join(",")).as_ref(),
            Some(&list),
            "a scope list does not read back"
        );
    }
});
