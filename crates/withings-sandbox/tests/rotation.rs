//! Strict rotation: a rotated refresh token presented again ends the whole grant.

mod common;

use common::{assert_error, start, start_default};
use withings_sandbox::{SEEDED_USERID, SandboxConfig, error_text};

#[tokio::test]
async fn strict_rotation_kills_the_chain_when_a_rotated_token_comes_back() {
    let env = start(SandboxConfig::default().strict_rotation(true)).await;
    let first = env.tokens().await;
    let r0 = common::string(&first, "refresh_token");
    let rotated = env.refresh(&r0).await;
    assert_eq!(rotated["status"], 0, "{rotated}");
    let r1 = common::string(&rotated["body"], "refresh_token");
    let a1 = common::string(&rotated["body"], "access_token");

    // r0 was already exchanged: refused, even well inside Withings' 8 h grace period...
    assert_error(
        &env.refresh(&r0).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    // ...and the chain it belongs to is gone: the newest refresh token and access token too.
    assert_error(
        &env.refresh(&r1).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_error(&env.measure(&a1).await, 401, error_text::INVALID_TOKEN);
    let a0 = common::string(&first, "access_token");
    assert_error(&env.measure(&a0).await, 401, error_text::INVALID_TOKEN);
    assert!(env.handle.live_tokens().is_empty());

    let c = env.handle.counters();
    assert_eq!((c.rotated_refresh_reused, c.chains_killed), (1, 1));
    assert_eq!(c.user(SEEDED_USERID).rotated_refresh_reused, 1);
    assert_eq!(c.user(SEEDED_USERID).chains_killed, 1);
    assert_eq!((c.refresh_granted, c.refresh_rejected), (1, 2));

    // A new login starts a new chain.
    let again = env.tokens().await;
    let answer = env.refresh(&common::string(&again, "refresh_token")).await;
    assert_eq!(answer["status"], 0, "{answer}");
}

#[tokio::test]
async fn without_strict_rotation_a_rotated_token_still_works_in_its_grace_period() {
    let env = start_default().await;
    let first = env.tokens().await;
    let r0 = common::string(&first, "refresh_token");
    let r1 = common::string(&env.refresh(&r0).await["body"], "refresh_token");

    let again = env.refresh(&r0).await;
    assert_eq!(again["status"], 0, "{again}");
    assert_eq!(env.refresh(&r1).await["status"], 0);

    let c = env.handle.counters();
    assert_eq!((c.refresh_granted, c.refresh_in_grace), (3, 1));
    assert_eq!((c.rotated_refresh_reused, c.chains_killed), (1, 0));
}

#[tokio::test]
async fn strict_rotation_can_be_switched_on_a_running_sandbox() {
    let env = start_default().await;
    let r0 = common::string(&env.tokens().await, "refresh_token");
    let r1 = common::string(&env.refresh(&r0).await["body"], "refresh_token");
    env.handle.set_strict_rotation(true);
    // A clean rotation is unaffected...
    let r2 = common::string(&env.refresh(&r1).await["body"], "refresh_token");
    // ...a reuse is not.
    assert_error(
        &env.refresh(&r1).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_error(
        &env.refresh(&r2).await,
        503,
        error_text::INVALID_REFRESH_TOKEN,
    );
    assert_eq!(env.handle.counters().chains_killed, 1);
}
