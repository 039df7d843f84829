//! Tests of the typestate: the authorize URL and the redirect URI rules.

use super::authorize_request::authorize_url;
use super::*;
use crate::config::{Client, ConfigError};
use crate::scope::Scopes;
use proptest::prelude::*;
use url::Url;

fn client(redirect: &str) -> Client {
    Client::builder()
        .client_id("cid")
        .client_secret("csecret")
        .redirect_uri(redirect)
        .build()
        .unwrap()
}

#[test]
fn authorize_url_has_exactly_the_protocol_parameters() {
    let c = client("https://app.example.com/cb");
    let pending = Unauthorized::new(&c, "user.metrics,user.activity".parse().unwrap())
        .demo_mode()
        .begin()
        .unwrap();
    let url = pending.authorize_url();
    assert_eq!(
        url.origin().ascii_serialization(),
        "https://account.withings.com"
    );
    assert_eq!(url.path(), "/oauth2_user/authorize2");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "mode"
        ]
    );
    assert_eq!(pairs[0].1, "code");
    assert_eq!(pairs[2].1, "https://app.example.com/cb");
    assert_eq!(pairs[3].1, "user.metrics,user.activity");
    assert!(pairs[4].1.len() >= 22);
    assert_eq!(pairs[5].1, "demo");
    assert!(!format!("{pending:?}").contains(&pairs[4].1));
}

#[test]
fn empty_scopes_are_refused() {
    let c = client("https://app.example.com/cb");
    assert_eq!(
        Unauthorized::new(&c, Scopes::empty()).begin().unwrap_err(),
        ConfigError::NoScopes
    );
}

#[test]
fn only_a_free_loopback_port_may_change() {
    let c = client("http://127.0.0.1:0/cb");
    let ok = Unauthorized::new(&c, Scopes::all())
        .with_redirect_uri("http://127.0.0.1:4567/cb".parse().unwrap());
    assert!(ok.is_ok());
    let bad = Unauthorized::new(&c, Scopes::all())
        .with_redirect_uri("http://127.0.0.1:4567/other".parse().unwrap());
    assert!(bad.is_err());
    for fixed in [
        "http://127.0.0.1:8080/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:80/cb",
    ] {
        let bad = Unauthorized::new(&client(fixed), Scopes::all())
            .with_redirect_uri("http://127.0.0.1:4567/cb".parse().unwrap());
        assert!(bad.is_err(), "{fixed}");
    }
    let https = client("https://app.example.com/cb");
    let bad = Unauthorized::new(&https, Scopes::all())
        .with_redirect_uri("https://evil.example.com/cb".parse().unwrap());
    assert!(bad.is_err());
}

proptest! {
    #[test]
    fn authorize_url_round_trips(
        scopes in proptest::collection::vec("[a-z][a-z._-]{0,15}", 1..5),
        state in "\\PC{1,60}",
        host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5}){1,2}",
        path in "(/[a-zA-Z0-9 ._~%!$&'()*+,;=:@-]{0,12}){1,3}",
        query in proptest::option::of("[a-z]{1,5}=[a-zA-Z0-9 &=?/]{0,10}"),
        demo: bool,
    ) {
        let mut redirect = Url::parse(&format!("https://{host}")).unwrap();
        redirect.set_path(&path);
        if let Some(q) = &query { redirect.set_query(Some(q)); }
        let c = client(redirect.as_str());
        let scopes: Scopes = scopes.iter().map(|s| s.parse().unwrap()).collect();
        let url = authorize_url(&c, &scopes, c.redirect_uri(), &state, demo);
        let back: Vec<(String, String)> = Url::parse(url.as_str()).unwrap().query_pairs().into_owned().collect();
        let get = |k: &str| back.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        prop_assert_eq!(get("response_type"), vec!["code".to_owned()]);
        prop_assert_eq!(get("client_id"), vec!["cid".to_owned()]);
        prop_assert_eq!(get("redirect_uri"), vec![c.redirect_uri().to_string()]);
        prop_assert_eq!(get("state"), vec![state.clone()]);
        let got_scopes: Scopes = get("scope")[0].parse().unwrap();
        prop_assert_eq!(got_scopes, scopes);
        prop_assert_eq!(get("mode").len(), usize::from(demo));
    }
}
