//! The checker fed hand-made histories: a clean one passes, and each kind of violation (a
//! forked chain, a lost login, an undone login, a version going back, a rate-limit excess, a
//! token or a secret in a log line, a token handed to the wrong user, a user never served
//! after healing) is caught and shown.

use std::collections::BTreeMap;

use withings_oauth_chaos::check::{FinalEntry, Report, Settings, check, names};
use withings_oauth_chaos::history::{Op, OpKind, Outcome, hash};
use withings_oauth_chaos::ledger::Event;

const USER: u64 = 1_000_001;
/// Raw tokens, in the sandbox's shape (40 hex digits).
const R0: &str = "00000000000000000000000000000000000000r0";
const R1: &str = "1111111111111111111111111111111111111111";
const A0: &str = "a000000000000000000000000000000000000000";
const A1: &str = "a111111111111111111111111111111111111111";
const R2: &str = "2222222222222222222222222222222222222222";
const A2: &str = "a222222222222222222222222222222222222222";

fn op(kind: OpKind, instance: &str, inv: u64, done: u64) -> Op {
    Op {
        op: kind,
        instance: instance.into(),
        inv,
        done: Some(done),
        outcome: Outcome::Ok,
        user: Some(USER),
        version: None,
        access: None,
        detail: None,
    }
}

fn read(inv: u64, done: u64, version: u64) -> Op {
    Op {
        version: Some(version),
        ..op(OpKind::Read, "fleet-1", inv, done)
    }
}

fn token(inv: u64, done: u64, access: &str) -> Op {
    Op {
        access: Some(hash(access)),
        ..op(OpKind::Token, "fleet-1", inv, done)
    }
}

fn issued(
    t: u64,
    chain: u64,
    access: &str,
    refresh: &str,
    parent: Option<&str>,
    agent: &str,
) -> Event {
    Event::Issued {
        t,
        user: USER,
        chain,
        access: hash(access),
        refresh: hash(refresh),
        parent: parent.map(hash),
        scope: "user.metrics".into(),
        agent: agent.into(),
    }
}

fn refresh(t: u64, token: &str, outcome: &str, agent: &str) -> Event {
    Event::Refresh {
        t,
        token: hash(token),
        user: Some(USER),
        outcome: outcome.into(),
        agent: agent.into(),
    }
}

fn settings() -> Settings {
    Settings {
        rate_limit: 3,
        rate_window_ms: 1_000,
        recovery_bound_ms: 500,
        in_flight_ms: 100,
        secrets: vec!["the-client-secret".into()],
    }
}

/// A clean run: a seeded login refreshed once by fleet-1, read twice, served after healing.
struct Run {
    ops: Vec<Op>,
    ledger: Vec<Event>,
    db: BTreeMap<u64, FinalEntry>,
    logs: Vec<(String, String)>,
}

fn clean() -> Run {
    let fleet = "withings-oauth-chaos/fleet-1";
    let mut healed = op(OpKind::Healed, "campaign", 3_000, 3_000);
    healed.user = None;
    Run {
        ops: vec![
            op(OpKind::Seed, "campaign", 1_000, 1_010),
            read(1_100, 1_110, 1),
            token(1_900, 2_010, A1),
            read(2_100, 2_110, 2),
            healed,
            token(3_100, 3_200, A1),
        ],
        ledger: vec![
            issued(1_005, 1, A0, R0, None, "minted"),
            Event::Rate {
                t: 2_000,
                allowed: true,
                agent: fleet.into(),
            },
            refresh(2_000, R0, "granted", fleet),
            issued(2_000, 1, A1, R1, Some(R0), fleet),
        ],
        db: BTreeMap::from([(USER, FinalEntry::Credentials { refresh: hash(R1) })]),
        logs: vec![("fleet-1.log".into(), "INFO refreshed user 1000001\n".into())],
    }
}

fn run(r: &Run) -> Report {
    let report = check(&r.ops, &r.ledger, &r.db, &r.logs, &settings());
    println!("{report}");
    report
}

fn violations(report: &Report, name: &str) -> u64 {
    report.property(name).unwrap().violations
}

#[test]
fn a_clean_history_passes_every_property() {
    let report = run(&clean());
    assert!(report.passed(), "{report}");
    for p in &report.properties {
        assert!(p.checks > 0, "{} was never checked", p.name);
    }
    assert_eq!(report.worst_recovery_ms, Some(200));
}

#[test]
fn a_forked_chain_is_caught() {
    let mut r = clean();
    // Another instance presents the rotated-away R0 again.
    r.ledger
        .push(refresh(2_500, R0, "reused", "withings-oauth-chaos/fleet-2"));
    let report = run(&r);
    assert_eq!(violations(&report, names::NO_FORK), 1);
    let excerpt = &report.property(names::NO_FORK).unwrap().excerpt;
    assert!(excerpt.iter().any(|l| l.contains("reused")), "{excerpt:?}");
    assert!(report.to_string().contains("VIOLATION"));
}

#[test]
fn a_reuse_after_the_exchanging_instance_was_killed_mid_flight_is_excused_not_hidden() {
    let mut r = clean();
    r.ledger
        .push(refresh(2_500, R0, "reused", "withings-oauth-chaos/fleet-2"));
    let mut kill = op(OpKind::Fault, "fleet-1", 2_001, 2_300);
    kill.detail = Some("kill".into());
    kill.user = None;
    r.ops.push(kill);
    let report = run(&r);
    let fork = report.property(names::NO_FORK).unwrap();
    assert_eq!((fork.violations, fork.excused), (0, 1));
}

#[test]
fn a_reuse_after_a_skewed_instance_was_restarted_with_the_exchange_in_flight_is_excused() {
    // The skew is healed by killing the skewed instance and starting it again without the
    // skew: that kill loses what is in flight too, as the one that began the fault.
    let skewed = |inv, done| {
        let mut r = clean();
        r.ledger
            .push(refresh(2_500, R0, "reused", "withings-oauth-chaos/fleet-2"));
        let mut skew = op(OpKind::Fault, "fleet-1", inv, done);
        skew.detail = Some("kill+skew -3 min".into());
        skew.user = None;
        r.ops.push(skew);
        let fork = run(&r).property(names::NO_FORK).unwrap().clone();
        (fork.violations, fork.excused)
    };
    assert_eq!(
        skewed(1_500, 2_050),
        (0, 1),
        "healed as the exchange was in flight"
    );
    assert_eq!(skewed(1_500, 1_800), (1, 0), "healed before the exchange");
}

#[test]
fn a_reuse_sent_by_an_instance_thawed_just_before_is_excused_but_not_one_sent_later() {
    // fleet-2 was stopped before fleet-1 exchanged R0 (its lease lapsed while it was frozen)
    // and sent R0 again right after it was thawed: the request was on its way.
    let mut r = clean();
    r.ledger
        .push(refresh(2_450, R0, "reused", "withings-oauth-chaos/fleet-2"));
    let mut stop = op(OpKind::Fault, "fleet-2", 1_800, 2_400);
    stop.detail = Some("stop".into());
    stop.user = None;
    r.ops.push(stop);
    let fork = run(&r).property(names::NO_FORK).unwrap().clone();
    assert_eq!((fork.violations, fork.excused), (0, 1));
    // Long after the thaw it is a fork.
    let mut r = clean();
    r.ledger
        .push(refresh(2_950, R0, "reused", "withings-oauth-chaos/fleet-2"));
    let mut stop = op(OpKind::Fault, "fleet-2", 1_800, 2_400);
    stop.detail = Some("stop".into());
    stop.user = None;
    r.ops.push(stop);
    assert_eq!(violations(&run(&r), names::NO_FORK), 1);
}

#[test]
fn a_first_exchange_sent_as_its_instance_thawed_is_excused_but_not_one_sent_later() {
    // fleet-1 was stopped with the refresh of R0 leaving; thawed at 1_990, the request went
    // at 2_000 with its timeout lapsed, which may drop the answer: fleet-1 never had the
    // pair, and presents R0 again later.
    let thawed_at = |thawed: u64| {
        let mut r = clean();
        r.ledger
            .push(refresh(9_000, R0, "reused", "withings-oauth-chaos/fleet-1"));
        let mut stop = op(OpKind::Fault, "fleet-1", 500, thawed);
        stop.detail = Some("stop".into());
        stop.user = None;
        r.ops.push(stop);
        run(&r).property(names::NO_FORK).unwrap().clone()
    };
    let fork = thawed_at(1_990);
    assert_eq!((fork.violations, fork.excused), (0, 1));
    // A refresh made well after the thaw had a live lease: a reuse after it is a fork.
    assert_eq!(thawed_at(900).violations, 1);
}

#[test]
fn a_lost_login_is_caught() {
    let mut r = clean();
    r.db.clear();
    let report = run(&r);
    assert_eq!(violations(&report, names::NO_LOST_LOGIN), 1);
    let mut r = clean();
    r.db.insert(USER, FinalEntry::LoginRequired);
    assert_eq!(violations(&run(&r), names::NO_LOST_LOGIN), 1);
}

#[test]
fn an_undone_login_is_caught() {
    // A web login acknowledged at 2 700, whose code exchange started chain 2; the database
    // still holds chain 1 (an older save overwrote it).
    let mut r = clean();
    r.ops.push(op(OpKind::Login, "web-0", 2_600, 2_700));
    r.ledger
        .push(issued(2_650, 2, A2, R2, None, "withings-oauth/0.1.0"));
    let report = run(&r);
    assert_eq!(violations(&report, names::NO_LOST_LOGIN), 1);
    // With chain 2 stored, it passes.
    r.db.insert(USER, FinalEntry::Credentials { refresh: hash(R2) });
    assert_eq!(violations(&run(&r), names::NO_LOST_LOGIN), 0);
}

#[test]
fn a_version_going_back_is_caught_but_not_across_a_logout() {
    let mut r = clean();
    r.ops.push(read(2_200, 2_210, 1));
    let report = run(&r);
    assert_eq!(violations(&report, names::MONOTONIC), 1);
    // A logout between the reads: the entry was deleted, its next life starts at 1 again.
    let mut r = clean();
    r.ops.push(op(OpKind::Logout, "web-0", 2_150, 2_180));
    r.ops.push(read(2_200, 2_210, 1));
    assert_eq!(violations(&run(&r), names::MONOTONIC), 0);
}

#[test]
fn a_rate_limit_excess_is_caught() {
    let mut r = clean();
    for t in [2_100, 2_200, 2_300] {
        r.ledger.push(Event::Rate {
            t,
            allowed: true,
            agent: String::new(),
        });
    }
    // 4 requests within 1 000 ms, the limit is 3.
    let report = run(&r);
    assert_eq!(violations(&report, names::RATE), 1);
    // Spread out, they pass.
    let mut r = clean();
    for t in [3_100, 4_200, 5_300] {
        r.ledger.push(Event::Rate {
            t,
            allowed: true,
            agent: String::new(),
        });
    }
    assert_eq!(violations(&run(&r), names::RATE), 0);
}

#[test]
fn a_token_or_a_secret_in_a_log_line_is_caught_without_being_shown() {
    let mut r = clean();
    r.logs.push((
        "web-0.log".into(),
        format!("DEBUG refresh_token={R1} done\n"),
    ));
    r.logs.push((
        "web-1.log".into(),
        "client_secret=the-client-secret\n".into(),
    ));
    let report = run(&r);
    assert_eq!(violations(&report, names::NO_SECRET), 2);
    assert!(!report.to_string().contains(R1));
    assert!(!report.to_string().contains("the-client-secret"));
}

#[test]
fn a_token_handed_to_another_user_is_caught() {
    let mut r = clean();
    let mut other = token(2_400, 2_410, A1);
    other.user = Some(USER + 1);
    r.ops.push(other);
    assert_eq!(violations(&run(&r), names::OWN_TOKEN), 1);
}

#[test]
fn a_live_grant_never_served_after_healing_is_caught() {
    let mut r = clean();
    r.ops.retain(|o| !(o.op == OpKind::Token && o.inv >= 3_000));
    assert_eq!(violations(&run(&r), names::RECOVERY), 1);
    // Served, but later than the bound.
    r.ops.push(token(3_100, 3_900, A1));
    assert_eq!(violations(&run(&r), names::RECOVERY), 1);
}
