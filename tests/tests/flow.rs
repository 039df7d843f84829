//! The core client against the sandbox: every transition of the flow, secret and signed, with
//! Withings' rotation rules enforced by a server that shares no code with the client.

use std::time::Duration;

use withings_oauth::{
    ApiError, AuthMethod, Authorized, Client, Credentials, Error, Scope, Scopes, Unauthorized,
    authorize, login,
};
use withings_oauth_e2e::{getmeas_status, scripted_browser as browser};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, HTTPS_CALLBACK, SEEDED_USERID,
    Sandbox, SandboxConfig,
};

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .expect("sandbox starts")
}

fn client(sandbox: &Sandbox, auth: AuthMethod) -> Client {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(HTTPS_CALLBACK)
        .base_url(sandbox.base_url())
        .auth_method(auth)
        .build()
        .expect("valid config")
}

/// Status of a `getmeas` call with the login's access token.
async fn measure_status(sandbox: &Sandbox, authorized: &Authorized) -> i64 {
    getmeas_status(sandbox, authorized.access_token()).await
}

fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

#[tokio::test]
async fn login_refresh_revoke_with_the_client_secret() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::ClientSecret);
    let authorized = authorize(&client, scopes(), &browser(None)).await.unwrap();
    assert_eq!(authorized.user_id().get(), SEEDED_USERID);
    assert!(authorized.scopes().same_set(&scopes()));
    assert_eq!(measure_status(&sandbox, &authorized).await, 0);

    let old_access = authorized.access_token().expose_secret().to_owned();
    let refreshed = authorized.refresh().await.unwrap();
    assert_ne!(refreshed.access_token().expose_secret(), old_access);
    assert_eq!(
        refreshed.user_id().get(),
        SEEDED_USERID,
        "userid arrives as a number on refresh"
    );
    assert_eq!(measure_status(&sandbox, &refreshed).await, 0);

    let stored = refreshed.credentials().reveal_for_storage();
    refreshed.revoke().await.unwrap();
    let revoked = Authorized::from_credentials(&client, Credentials::from_stored(stored).unwrap());
    assert_eq!(measure_status(&sandbox, &revoked).await, 401);
    let err = revoked.refresh().await.unwrap_err();
    assert!(err.login_required(), "{err}");
    let counters = sandbox.handle().counters();
    assert_eq!(
        (counters.token_code, counters.token_refresh, counters.revoke),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn signed_calls_never_send_the_secret_and_still_work() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::Signature);
    let authorized = authorize(&client, scopes(), &browser(None)).await.unwrap();
    let refreshed = authorized.refresh().await.unwrap();
    assert_eq!(measure_status(&sandbox, &refreshed).await, 0);
    // One nonce for the exchange, one for the refresh.
    assert_eq!(sandbox.handle().counters().getnonce, 2);
}

#[tokio::test]
async fn demo_access_and_demo_mode() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::ClientSecret);
    let demo = Unauthorized::new(&client, scopes())
        .demo_access()
        .await
        .unwrap();
    assert_eq!(measure_status(&sandbox, &demo).await, 0);

    let via_page = login(
        Unauthorized::new(&client, scopes()).demo_mode(),
        &browser(None),
    )
    .await
    .unwrap();
    assert_eq!(via_page.user_id().get(), withings_sandbox::DEMO_USERID);
}

#[tokio::test]
async fn a_code_older_than_30_seconds_is_refused() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::ClientSecret);
    let slow = browser(Some((sandbox.handle(), Duration::from_secs(31))));
    let err = authorize(&client, scopes(), &slow).await.unwrap_err();
    assert!(matches!(err, Error::Api(ApiError::InvalidCode)), "{err}");
}

#[tokio::test]
async fn a_rotated_refresh_token_dies_once_the_new_access_token_is_used() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::ClientSecret);
    let first = authorize(&client, scopes(), &browser(None)).await.unwrap();
    let first_stored = first.credentials().reveal_for_storage();
    let second = first.refresh().await.unwrap();
    assert_eq!(measure_status(&sandbox, &second).await, 0);

    // Someone kept the old pair and refreshes it: Withings has killed it.
    let stale =
        Authorized::from_credentials(&client, Credentials::from_stored(first_stored).unwrap());
    let err = stale.refresh().await.unwrap_err();
    assert!(err.login_required());
    assert!(
        err.into_login().is_none(),
        "a dead login is not handed back"
    );
}

#[tokio::test]
async fn failed_refreshes_hand_back_a_login_that_still_works() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, AuthMethod::ClientSecret);
    let mut authorized = authorize(&client, scopes(), &browser(None)).await.unwrap();
    let handle = sandbox.handle();
    for fault in [Fault::Http500, Fault::MalformedBody, Fault::DropConnection] {
        handle.inject_fault(Endpoint::Token, fault, 1);
        let err = authorized.refresh().await.unwrap_err();
        assert!(!err.login_required(), "{err}");
        authorized = err.into_login().expect("handed back");
    }
    // The handed-back refresh token is still good.
    let refreshed = authorized.refresh().await.unwrap();
    assert_eq!(measure_status(&sandbox, &refreshed).await, 0);
}

#[tokio::test]
async fn a_response_lost_after_the_server_rotated_keeps_the_old_pair_usable() {
    let sandbox = sandbox().await;
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(HTTPS_CALLBACK)
        .base_url(sandbox.base_url())
        .timeouts(Duration::from_secs(2), Duration::from_millis(500))
        .build()
        .unwrap();
    let authorized = authorize(&client, scopes(), &browser(None)).await.unwrap();
    // The server rotates, then holds the answer back past the client's timeout.
    sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Delay(Duration::from_secs(3)), 1);
    let err = authorized.refresh().await.unwrap_err();
    assert!(
        matches!(
            err.error(),
            ApiError::Transport {
                kind: withings_oauth::TransportKind::Timeout,
                ..
            }
        ),
        "{err}"
    );
    let old = err.into_login().unwrap();
    let refreshed = old
        .refresh()
        .await
        .expect("the old refresh token is still honoured");
    assert_eq!(measure_status(&sandbox, &refreshed).await, 0);
}
