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

/// The SHA-256 of a token in lowercase hex, as the ledger writes it.
fn sha256(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[tokio::test]
async fn the_ledger_records_every_token_issued_and_presented_by_its_hash_only() {
    let path = std::env::temp_dir().join(format!("sandbox-ledger-{}.jsonl", std::process::id()));
    let env = start(SandboxConfig::default().strict_rotation(true).ledger(&path)).await;
    let first = env.tokens().await;
    let r0 = common::string(&first, "refresh_token");
    let rotated = env.refresh(&r0).await;
    let r1 = common::string(&rotated["body"], "refresh_token");
    env.refresh(&r0).await; // presented again: the chain dies
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    for token in [&r0, &r1] {
        assert!(!text.contains(token.as_str()), "a token in the ledger");
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["ev"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "rate",
            "issued",
            "rate",
            "issued",
            "refresh",
            "rate",
            "chain_killed",
            "refresh"
        ]
    );
    // What a presentation caused (a new pair, a revoked chain) comes just before its line. The
    // new pair names the token it rotated away; the second presentation is a reuse.
    assert_eq!(lines[1]["refresh"], sha256(&r0));
    assert_eq!(lines[3]["parent"], sha256(&r0));
    assert_eq!(lines[3]["refresh"], sha256(&r1));
    assert_eq!(lines[3]["chain"], lines[1]["chain"]);
    assert_eq!(lines[4]["outcome"], "granted");
    assert_eq!(lines[4]["token"], sha256(&r0));
    assert_eq!(lines[6]["chain"], lines[1]["chain"]);
    assert_eq!(lines[7]["outcome"], "reused");
    assert_eq!(lines[7]["user"], SEEDED_USERID);
    assert!(lines.iter().all(|l| l["t"].as_u64().unwrap() > 0));
}

#[tokio::test]
async fn a_ledger_that_cannot_be_written_stops_the_start() {
    let path = std::env::temp_dir()
        .join(format!("no-such-dir-{}", std::process::id()))
        .join("ledger.jsonl");
    let started = withings_sandbox::Sandbox::start(SandboxConfig::default().ledger(&path)).await;
    assert!(started.is_err(), "a sandbox started without its ledger");
}
