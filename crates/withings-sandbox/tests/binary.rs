//! The `withings-sandbox` binary: help text, flags, the printed base URL.

mod common;

use std::process::{Command, Stdio};

use common::child::Child;

const BIN: &str = env!("CARGO_BIN_EXE_withings-sandbox");

#[test]
fn help_describes_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--bind",
        "--app",
        "--user",
        "--auto-approve",
        "--access-token-lifetime",
        "--refresh-token-lifetime",
        "--code-lifetime",
        "--nonce-lifetime",
        "--old-refresh-grace",
        "--rate-limit",
        "--rate-limit-window",
        "--strict-rotation",
        "--page-size",
        "--data-through",
        "--loopback-notify",
        "--admin",
        "--users",
        "user1@example.com",
        "sandbox-client-id",
        "alice@example.com",
    ] {
        assert!(help.contains(flag), "{flag} not in help:\n{help}");
    }
}

#[test]
fn bad_flags_are_refused() {
    let out = Command::new(BIN)
        .args(["--app", "only-an-id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLIENT_ID:SECRET"));
}

#[test]
fn out_of_range_lifetimes_are_refused_with_the_range() {
    for value in ["0", "315360001", "18446744073709551615"] {
        let out = Command::new(BIN)
            .args(["--access-token-lifetime", value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--access-token-lifetime"), "{stderr}");
        assert!(stderr.contains("1..=315360000"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Starts the binary with `args` and returns it with the base URL it printed.
async fn spawn(args: &[&str]) -> (Child, url::Url) {
    let mut command = Command::new(BIN);
    command.args(args).stderr(Stdio::null());
    common::child::spawn(command).await
}

#[tokio::test]
async fn serves_the_configured_app_on_the_printed_url() {
    let (_child, base) = spawn(&[
        "--port",
        "0",
        "--app",
        "cli-app:cli-secret:https://cli.example/cb,http://127.0.0.1/cb",
        "--user",
        "bob@example.com:hunter2:4242",
        "--auto-approve",
        "--access-token-lifetime",
        "600",
        "--rate-limit",
        "0",
    ])
    .await;

    let http = common::http_client();
    let mut authorize = base.join("oauth2_user/authorize2").unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "cli-app")
        .append_pair("redirect_uri", "http://127.0.0.1:7000/cb")
        .append_pair("scope", "user.metrics")
        .append_pair("state", "s");
    let resp = http.get(authorize).send().await.unwrap();
    assert_eq!(resp.status(), 302, "auto-approve");
    let code = common::location_params(&resp)["code"].clone();
    let token_url = base.join("v2/oauth2").unwrap();
    let exchange = common::code_form("cli-app", "cli-secret", &code, "http://127.0.0.1:7000/cb");
    let answer = common::envelope(http.post(token_url.clone()).form(&exchange)).await;
    assert_eq!(answer["status"], 0, "{answer}");
    assert_eq!(answer["body"]["userid"], "4242");
    assert_eq!(answer["body"]["expires_in"], 600);
    // The default app is replaced by --app.
    let refresh = common::refresh_form(
        withings_sandbox::DEFAULT_CLIENT_ID,
        withings_sandbox::DEFAULT_CLIENT_SECRET,
        "x",
    );
    let default_app = common::envelope(http.post(token_url).form(&refresh)).await;
    assert_eq!(
        default_app["error"],
        withings_sandbox::error_text::INVALID_CLIENT
    );
}

#[tokio::test]
async fn numbered_users_log_in_and_the_rate_limit_flags_apply() {
    let (_child, base) = spawn(&[
        "--port",
        "0",
        "--users",
        "3",
        "--rate-limit",
        "2",
        "--rate-limit-window",
        "600",
    ])
    .await;
    let http = common::http_client();
    let redirect = common::REDIRECT;
    let mut form = common::auth_params(redirect);
    form.push(("email", "user3@example.com".into()));
    form.push(("password", "sandbox-password-3".into()));
    form.push(("decision", "allow".into()));
    let resp = http
        .post(base.join("oauth2_user/authorize2").unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let code = common::location_params(&resp)["code"].clone();
    let token_url = base.join("v2/oauth2").unwrap();
    let exchange = common::code_form(
        withings_sandbox::DEFAULT_CLIENT_ID,
        withings_sandbox::DEFAULT_CLIENT_SECRET,
        &code,
        redirect,
    );
    let answer = common::envelope(http.post(token_url.clone()).form(&exchange)).await;
    assert_eq!(answer["body"]["userid"], "1000003", "{answer}");
    let refresh = common::refresh_form(
        withings_sandbox::DEFAULT_CLIENT_ID,
        withings_sandbox::DEFAULT_CLIENT_SECRET,
        "x",
    );
    let second = common::envelope(http.post(token_url.clone()).form(&refresh)).await;
    assert_eq!(second["status"], 503, "{second}");
    let third = common::envelope(http.post(token_url).form(&refresh)).await;
    common::assert_error(&third, 601, withings_sandbox::error_text::TOO_MANY_REQUESTS);
}
