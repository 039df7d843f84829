//! The login and consent page, its errors, and the redirects back to the app.

mod common;

use common::{REDIRECT, SCOPE, auth_params, location_params, start, start_default};
use withings_sandbox::{
    DEMO_USERID, HTTPS_CALLBACK, SEEDED_EMAIL, SEEDED_PASSWORD, SEEDED_USERID, SandboxConfig,
};

fn with(
    params: &[(&'static str, String)],
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut p: Vec<_> = params.iter().filter(|(k, _)| *k != key).cloned().collect();
    p.push((key, value.to_owned()));
    p
}

fn without(params: &[(&'static str, String)], key: &str) -> Vec<(&'static str, String)> {
    params.iter().filter(|(k, _)| *k != key).cloned().collect()
}

/// The authorize page for `redirect_uri`, the other parameters valid.
async fn page_for(env: &common::Env, redirect_uri: &str) -> reqwest::Response {
    env.get_page(&with(&auth_params(REDIRECT), "redirect_uri", redirect_uri))
        .await
}

/// A `redirect_uri` that matches no callback gets the error page, never a redirect.
async fn assert_redirect_uri_refused(env: &common::Env, redirect_uri: &str) {
    let resp = page_for(env, redirect_uri).await;
    assert_eq!(resp.status(), 400, "{redirect_uri}");
    assert!(resp.headers().get("location").is_none(), "{redirect_uri}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("redirect_uri does not match"), "{html}");
}

#[tokio::test]
async fn page_renders_with_stable_ids_and_hidden_parameters() {
    let env = start_default().await;
    let resp = env.get_page(&auth_params(REDIRECT)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    for needle in [
        r#"<form id="consent-form" method="post" action="/oauth2_user/authorize2">"#,
        r#"<input id="email" name="email""#,
        r#"<input id="password" name="password" type="password""#,
        r#"<button id="allow" name="decision" value="allow""#,
        r#"<button id="deny" name="decision" value="deny""#,
        r#"<input type="hidden" name="state" value="st4te">"#,
        r#"<input type="hidden" name="redirect_uri" value="http://127.0.0.1:8765/callback">"#,
    ] {
        assert!(html.contains(needle), "missing {needle} in {html}");
    }
    assert!(!html.contains(r#"id="error""#));
    assert_eq!(env.handle.counters().authorize_page, 1);
}

#[tokio::test]
async fn page_shows_the_test_account_and_each_permission_beside_its_checkbox() {
    let env = start_default().await;
    let all = "user.info,user.metrics,user.activity,user.sleepevents";
    let html = env
        .get_page(&with(&auth_params(REDIRECT), "scope", all))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!(
            "<p id=\"hint\"><strong>Sandbox test account:</strong> \
             <code>{SEEDED_EMAIL}</code> / <code>{SEEDED_PASSWORD}</code></p>"
        )),
        "{html}"
    );
    assert!(
        html.contains(r#"<p id="app">The application <strong>sandbox-client-id</strong>"#),
        "{html}"
    );
    // Each checkbox sits in the same label as its scope's name and description, so they
    // render on one line and clicking the name toggles the box.
    for (scope, words) in [
        ("user.info", "Your profile"),
        ("user.metrics", "weight"),
        ("user.activity", "steps"),
        ("user.sleepevents", "bed"),
    ] {
        let id = scope.replace('.', "-");
        let start = html
            .find(&format!(
                r#"<label class="scope"><input type="checkbox" id="scope-{id}""#
            ))
            .unwrap_or_else(|| panic!("no checkbox for {scope} in {html}"));
        let label = &html[start..start + html[start..].find("</label>").unwrap()];
        assert!(label.contains(&format!("<code>{scope}</code>")), "{label}");
        assert!(label.contains(words), "{label}");
    }
    // Everything is inline: the page works with only the sandbox reachable.
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "{external} in {html}");
    }
}

#[tokio::test]
async fn test_account_hint_names_the_first_user_and_is_absent_without_users() {
    let bob = withings_sandbox::User::new(7, "bob@example.com", "b0b's <pw>");
    let env = start(SandboxConfig::default().without_users().with_user(bob)).await;
    let html = env
        .get_page(&auth_params(REDIRECT))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<code>bob@example.com</code> / <code>b0b&#39;s &lt;pw&gt;</code>"),
        "{html}"
    );
    assert!(!html.contains(SEEDED_EMAIL));

    let env = start(SandboxConfig::default().without_users()).await;
    let html = env
        .get_page(&auth_params(REDIRECT))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(r#"id="hint""#), "{html}");
    let demo = env
        .get_page(&with(&auth_params(REDIRECT), "mode", "demo"))
        .await
        .text()
        .await
        .unwrap();
    assert!(demo.contains(r#"<p id="demo">"#), "{demo}");
    assert!(!demo.contains(r#"id="hint""#), "{demo}");
}

#[tokio::test]
async fn unknown_client_is_an_error_page_without_redirect() {
    let env = start_default().await;
    let resp = env
        .get_page(&with(&auth_params(REDIRECT), "client_id", "nope"))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(r#"<p id="error">Invalid client_id"#),
        "{html}"
    );
}

#[tokio::test]
async fn mismatched_redirect_uri_is_an_error_page_without_redirect() {
    let env = start_default().await;
    for bad in [
        "https://evil.example/callback",
        "https://app.example.com/withings/callback/extra",
        "http://127.0.0.1:8765/other",
        "https://127.0.0.1:8765/callback",
    ] {
        assert_redirect_uri_refused(&env, bad).await;
    }
    // A POST with a tampered hidden field is refused the same way.
    let mut form = with(
        &auth_params(REDIRECT),
        "redirect_uri",
        "https://evil.example/cb",
    );
    form.push(("email", SEEDED_EMAIL.into()));
    form.push(("password", SEEDED_PASSWORD.into()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    assert!(env.handle.live_codes().is_empty());
}

#[tokio::test]
async fn loopback_callback_accepts_any_port_and_loopback_host() {
    let env = start_default().await;
    for ok in [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:1/callback",
        "http://[::1]:40000/callback",
        "http://localhost:5555/callback",
        HTTPS_CALLBACK,
    ] {
        assert_eq!(page_for(&env, ok).await.status(), 200, "{ok}");
    }
}

#[tokio::test]
async fn exact_redirect_uris_turn_the_loopback_leniency_off() {
    let env = start(SandboxConfig::default().exact_redirect_uris(true)).await;
    for refused in [
        "http://127.0.0.1:1/callback",
        "http://[::1]:40000/callback",
        "http://localhost/callback",
    ] {
        assert_redirect_uri_refused(&env, refused).await;
    }
    // The registered callbacks themselves still work, letter for letter.
    for ok in ["http://127.0.0.1/callback", HTTPS_CALLBACK] {
        assert_eq!(page_for(&env, ok).await.status(), 200, "{ok}");
    }
    env.handle.register_callback(
        withings_sandbox::DEFAULT_CLIENT_ID,
        "http://127.0.0.1:8765/callback",
    );
    assert_eq!(env.code_for(REDIRECT).await.len(), 40);
}

#[tokio::test]
async fn bad_response_type_scope_or_missing_state_are_error_pages() {
    let env = start_default().await;
    let base = auth_params(REDIRECT);
    let cases = [
        (with(&base, "response_type", "token"), "response_type"),
        (without(&base, "response_type"), "response_type"),
        (
            with(&base, "scope", "user.info user.metrics"),
            "Invalid scope",
        ),
        (
            with(&base, "scope", "user.info,user.everything"),
            "Invalid scope",
        ),
        (without(&base, "scope"), "Invalid scope"),
        (without(&base, "state"), "state parameter is required"),
    ];
    for (params, text) in cases {
        let resp = env.get_page(&params).await;
        assert_eq!(resp.status(), 400, "{params:?}");
        assert!(resp.headers().get("location").is_none());
        let html = resp.text().await.unwrap();
        assert!(
            html.contains(r#"<p id="error">"#) && html.contains(text),
            "{html}"
        );
    }
}

#[tokio::test]
async fn allow_redirects_with_code_and_state_preserving_the_callback_query() {
    let env = start_default().await;
    let redirect = "http://127.0.0.1:9999/callback";
    let code = env.code_for(redirect).await;
    let codes = env.handle.live_codes();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].code, code);
    assert_eq!(codes[0].userid, SEEDED_USERID);
    assert_eq!(codes[0].redirect_uri, redirect);
    assert_eq!(codes[0].scopes, ["user.info", "user.metrics"]);

    // A registered callback with its own query keeps it.
    let with_query = "https://partner.example/cb?tenant=42";
    env.handle
        .register_callback(withings_sandbox::DEFAULT_CLIENT_ID, with_query);
    let mut form = auth_params(with_query);
    form.push(("email", SEEDED_EMAIL.into()));
    form.push(("password", SEEDED_PASSWORD.into()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://partner.example/cb?tenant=42&code="),
        "{location}"
    );
    let params = location_params(&resp);
    assert_eq!(params["state"], "st4te");
    assert_eq!(params["tenant"], "42");
    assert_eq!(env.handle.counters().authorize_allow, 2);
}

#[tokio::test]
async fn unchecked_scopes_are_not_granted() {
    let env = start_default().await;
    let mut form = auth_params(REDIRECT);
    form.push(("email", SEEDED_EMAIL.into()));
    form.push(("password", SEEDED_PASSWORD.into()));
    form.push(("scopes_chosen", "1".into()));
    form.push(("grant_scope", "user.metrics".into()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 302);
    let code = location_params(&resp)["code"].clone();
    let answer = env.exchange(&code, REDIRECT).await;
    assert_eq!(answer["body"]["scope"], "user.metrics");
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let env = start_default().await;
    let mut form = auth_params(REDIRECT);
    form.push(("decision", "deny".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 302);
    let params = location_params(&resp);
    assert_eq!(params["error"], "access_denied");
    assert!(!params["error_description"].is_empty());
    assert_eq!(params["state"], "st4te");
    assert!(!params.contains_key("code"));
    assert!(env.handle.live_codes().is_empty());
    assert_eq!(env.handle.counters().authorize_deny, 1);
}

#[tokio::test]
async fn wrong_password_shows_the_page_again_with_an_error() {
    let env = start_default().await;
    let mut form = auth_params(REDIRECT);
    form.push(("email", SEEDED_EMAIL.into()));
    form.push(("password", "wrong".into()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(r#"<p id="error">Wrong email or password.</p>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="consent-form""#));
    assert!(html.contains(r#"value="alice@example.com""#), "email kept");
    assert!(env.handle.live_codes().is_empty());
}

#[tokio::test]
async fn demo_mode_logs_in_the_demo_user_without_password() {
    let env = start_default().await;
    let params = with(&auth_params(REDIRECT), "mode", "demo");
    let html = env.get_page(&params).await.text().await.unwrap();
    assert!(html.contains(r#"<input type="hidden" name="mode" value="demo">"#));
    let mut form = params.clone();
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 302);
    let code = location_params(&resp)["code"].clone();
    let answer = env.exchange(&code, REDIRECT).await;
    assert_eq!(answer["body"]["userid"], DEMO_USERID.to_string());
}

#[tokio::test]
async fn auto_approve_redirects_at_once_and_can_be_switched() {
    let env = start(SandboxConfig::default().auto_approve(true)).await;
    let resp = env.get_page(&auth_params(REDIRECT)).await;
    assert_eq!(resp.status(), 302);
    let code = location_params(&resp)["code"].clone();
    assert_eq!(env.handle.live_codes()[0].userid, SEEDED_USERID);
    assert_eq!(env.handle.live_codes()[0].code, code);

    let resp = env
        .get_page(&with(&auth_params(REDIRECT), "mode", "demo"))
        .await;
    assert_eq!(resp.status(), 302);
    let demo_code = location_params(&resp)["code"].clone();
    let answer = env.exchange(&demo_code, REDIRECT).await;
    assert_eq!(answer["body"]["userid"], DEMO_USERID.to_string());
    assert_eq!(answer["body"]["scope"], SCOPE);

    // Errors are still pages, never redirects.
    let resp = env
        .get_page(&with(
            &auth_params(REDIRECT),
            "redirect_uri",
            "https://evil.example/",
        ))
        .await;
    assert_eq!(resp.status(), 400);

    env.handle.set_auto_approve(false);
    let resp = env.get_page(&auth_params(REDIRECT)).await;
    assert_eq!(resp.status(), 200);
    let counters = env.handle.counters();
    assert_eq!((counters.authorize_page, counters.authorize_allow), (4, 2));
}
