//! Many users at once: a numbered fleet, tokens minted without a login, refresh counters per
//! user, and a rate limit with a configurable window.

mod common;

use std::time::Duration;

use common::{REDIRECT, assert_error, auth_params, location_params, start, string};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEMO_USERID, IssueError, SEEDED_USERID, SandboxConfig, User, UserCounters,
    error_text,
};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_seeded_fleet_gets_working_tokens_without_a_browser() {
    let env = start(SandboxConfig::default().seed_users(200).rate_limit(None)).await;
    let mut fleet = Vec::new();
    for i in 1..=200 {
        let user = User::numbered(i);
        let tokens = env
            .handle
            .issue_tokens(
                user.userid,
                DEFAULT_CLIENT_ID,
                &["user.info", "user.metrics"],
                3 * HOUR,
            )
            .unwrap();
        assert_eq!(tokens.userid, 1_000_000 + u64::from(i));
        assert_eq!(tokens.expires_in, 10_800);
        assert_eq!(tokens.scopes, ["user.info", "user.metrics"]);
        fleet.push(tokens);
    }
    // Every pair is distinct and works like one from a code exchange.
    let mut access: Vec<&str> = fleet.iter().map(|t| t.access_token.as_str()).collect();
    access.sort_unstable();
    access.dedup();
    assert_eq!(access.len(), 200);
    for tokens in fleet.iter().step_by(20) {
        assert_eq!(env.measure(&tokens.access_token).await["status"], 0);
        let refreshed = env.refresh(&tokens.refresh_token).await;
        assert_eq!(refreshed["status"], 0, "{refreshed}");
        assert_eq!(refreshed["body"]["userid"], tokens.userid);
    }
    assert_eq!(env.handle.live_tokens().len(), 2 * 200 + 2 * 10);
    let c = env.handle.counters();
    assert_eq!(
        (c.token_code, c.authorize_allow),
        (0, 0),
        "no login happened"
    );

    // A fleet user can also log in on the consent page with its numbered credentials.
    let user = User::numbered(42);
    let mut form = auth_params(REDIRECT);
    form.push(("email", user.email.clone()));
    form.push(("password", user.password.clone()));
    form.push(("decision", "allow".into()));
    let resp = env.submit(&form).await;
    assert_eq!(resp.status(), 302);
    let code = &location_params(&resp)["code"];
    let answer = env.exchange(code, REDIRECT).await;
    assert_eq!(answer["body"]["userid"], user.userid.to_string());
}

#[tokio::test]
async fn issued_tokens_can_be_already_expired_and_then_need_a_refresh() {
    let env = start(SandboxConfig::default().seed_users(3)).await;
    let mut refreshed = Vec::new();
    for i in 1..=3 {
        let userid = User::numbered(i).userid;
        let tokens = env
            .handle
            .issue_tokens(userid, DEFAULT_CLIENT_ID, &["user.metrics"], Duration::ZERO)
            .unwrap();
        assert_eq!(tokens.expires_in, 0);
        assert_error(
            &env.measure(&tokens.access_token).await,
            401,
            error_text::INVALID_TOKEN,
        );
        let answer = env.refresh(&tokens.refresh_token).await;
        assert_eq!(answer["status"], 0, "{answer}");
        assert_eq!(answer["body"]["expires_in"], 10_800, "a normal pair again");
        refreshed.push(string(&answer["body"], "access_token"));
    }
    for access in &refreshed {
        assert_eq!(env.measure(access).await["status"], 0);
    }
    // Expired a while ago: the refresh token still outlives the access token.
    let userid = User::numbered(1).userid;
    let stale = env
        .handle
        .issue_tokens(userid, DEFAULT_CLIENT_ID, &["user.info"], HOUR)
        .unwrap();
    env.handle.advance_clock(2 * HOUR);
    assert_eq!(env.refresh(&stale.refresh_token).await["status"], 0);
}

#[tokio::test]
async fn issue_tokens_refuses_unknown_clients_users_and_scopes() {
    let env = start(SandboxConfig::default()).await;
    let h = &env.handle;
    let issue = |userid, client: &str, scopes: &[&str]| {
        h.issue_tokens(userid, client, scopes, HOUR)
            .map(|t| t.scopes)
    };
    assert_eq!(
        issue(SEEDED_USERID, "nope", &["user.info"]),
        Err(IssueError::UnknownClient)
    );
    assert_eq!(
        issue(1_000_001, DEFAULT_CLIENT_ID, &["user.info"]),
        Err(IssueError::UnknownUser)
    );
    assert_eq!(
        issue(SEEDED_USERID, DEFAULT_CLIENT_ID, &[]),
        Err(IssueError::InvalidScope)
    );
    assert_eq!(
        issue(SEEDED_USERID, DEFAULT_CLIENT_ID, &["user.info", "user.all"]),
        Err(IssueError::InvalidScope)
    );
    assert!(
        IssueError::UnknownUser
            .to_string()
            .contains("add it to the config")
    );
    assert!(h.live_tokens().is_empty());
    // The demo user always exists; duplicate scopes are dropped.
    assert_eq!(
        issue(
            DEMO_USERID,
            DEFAULT_CLIENT_ID,
            &["user.activity", "user.activity"]
        ),
        Ok(vec!["user.activity".to_owned()])
    );
}

#[tokio::test]
async fn refreshes_and_dead_refresh_tokens_are_counted_per_user() {
    let env = start(SandboxConfig::default().seed_users(3)).await;
    let [a, b, c] = [1, 2, 3].map(|i| User::numbered(i).userid);
    let issue = |userid| {
        env.handle
            .issue_tokens(userid, DEFAULT_CLIENT_ID, &["user.metrics"], HOUR)
            .unwrap()
            .refresh_token
    };

    // a refreshes twice along its chain.
    let first = env.refresh(&issue(a)).await;
    let second = env.refresh(&string(&first["body"], "refresh_token")).await;
    assert_eq!(second["status"], 0);

    // b refreshes, uses the new access token, then retries with the old refresh token, which
    // died at that use: the client failed to store the rotated pair.
    let old = issue(b);
    let new = env.refresh(&old).await;
    assert_eq!(
        env.measure(&string(&new["body"], "access_token")).await["status"],
        0
    );
    assert_error(
        &env.refresh(&old).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );

    // c refreshes twice with the same token: the second is inside the grace period...
    let old = issue(c);
    assert_eq!(env.refresh(&old).await["status"], 0);
    assert_eq!(env.refresh(&old).await["status"], 0);
    // ...and once the grace period is over, the token is dead, also after the sandbox forgot
    // it as a live token.
    env.handle.advance_clock(9 * HOUR);
    assert_error(
        &env.refresh(&old).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_error(
        &env.refresh(&old).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    // A token that never existed is rejected but belongs to nobody.
    assert_error(
        &env.refresh("0000").await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );

    let counters = env.handle.counters();
    let user = |refresh_granted, refresh_in_grace, refresh_dead_token| UserCounters {
        refresh_granted,
        refresh_in_grace,
        refresh_dead_token,
        // Without strict rotation, every reuse is either granted in grace or refused dead.
        rotated_refresh_reused: refresh_in_grace + refresh_dead_token,
        ..UserCounters::default()
    };
    assert_eq!(counters.user(a), user(2, 0, 0));
    // b also made the data call with its new access token.
    assert_eq!(
        counters.user(b),
        UserCounters {
            data_served: 1,
            ..user(1, 0, 1)
        }
    );
    assert_eq!(counters.user(c), user(2, 1, 2));
    assert_eq!(counters.user(SEEDED_USERID), UserCounters::default());
    assert_eq!(counters.users.len(), 3);
    assert_eq!(
        (
            counters.refresh_granted,
            counters.refresh_in_grace,
            counters.refresh_dead_token
        ),
        (5, 1, 3)
    );
    assert_eq!((counters.token_refresh, counters.refresh_rejected), (9, 4));

    env.handle.reset_counters();
    assert!(env.handle.counters().users.is_empty());
}

#[tokio::test]
async fn rate_limit_window_and_limit_change_at_runtime_and_601s_are_counted() {
    let env = start(
        SandboxConfig::default()
            .rate_limit(Some(2))
            .rate_limit_window(Duration::from_secs(10)),
    )
    .await;
    let too_many = |answer: &serde_json::Value| {
        assert_error(answer, 601, error_text::TOO_MANY_REQUESTS);
    };
    env.nonce().await;
    env.nonce().await;
    too_many(&env.refresh("x").await);
    env.handle.advance_clock(Duration::from_secs(11));
    assert_eq!(env.nonce().await.len(), 40, "a 10 s window has passed");

    // A longer window at runtime: the two requests of the last two minutes fill it.
    env.handle.set_rate_limit_window(Duration::from_secs(120));
    env.nonce().await;
    env.handle.advance_clock(Duration::from_secs(60));
    too_many(&env.refresh("x").await);
    env.handle.set_rate_limit(Some(5));
    assert_error(
        &env.refresh("x").await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    env.handle.set_rate_limit(None);
    for _ in 0..10 {
        env.nonce().await;
    }
    assert_eq!(env.handle.counters().rate_limited, 2);
}
