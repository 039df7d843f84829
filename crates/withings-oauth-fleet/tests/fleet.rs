//! The fleet against the sandbox on 127.0.0.1: several fleets ("instances") share one
//! `MemoryStore`, as instances of a backend share one database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::future::join_all;
use withings_oauth::{
    Authorized, Client, ClientBuilder, Expected, MemoryStore, SessionError, TokenStore, UserId,
    testing,
};
use withings_oauth_fleet::{Fleet, FleetBuilder, FleetError, FleetEvent, RateLimit};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint, Fault, LOOPBACK_CALLBACK, Sandbox,
    SandboxConfig, TokenKind, User,
};

const HOUR: Duration = Duration::from_secs(3600);

/// A sandbox with `n` numbered users and no rate limit unless a test sets one.
async fn sandbox(n: u32) -> Sandbox {
    Sandbox::start(SandboxConfig::default().seed_users(n).rate_limit(None))
        .await
        .expect("the sandbox starts")
}

fn users(n: u32) -> Vec<UserId> {
    (1..=n)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect()
}

fn client(sandbox: &Sandbox) -> ClientBuilder {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.base_url())
}

/// A fleet over `store` against `sandbox` with no rate limit, to be configured further.
fn unlimited_builder(sandbox: &Sandbox, store: &Arc<MemoryStore>) -> FleetBuilder {
    Fleet::builder(client(sandbox), store.clone()).rate_limit(unlimited())
}

/// A fleet over `store` against `sandbox` with no rate limit and the default settings.
fn unlimited_fleet(sandbox: &Sandbox, store: &Arc<MemoryStore>) -> Fleet {
    unlimited_builder(sandbox, store).build().unwrap()
}

/// Stores a login for each user whose stored access token expires at `expires_at`.
async fn store_logins(
    sandbox: &Sandbox,
    store: &MemoryStore,
    users: &[UserId],
    expires_at: chrono::DateTime<Utc>,
) {
    for &user in users {
        let issued = sandbox
            .handle()
            .issue_tokens(user.get(), DEFAULT_CLIENT_ID, &["user.metrics"], HOUR)
            .expect("tokens for a seeded user");
        let login = testing::credentials(
            user,
            &issued.access_token,
            &issued.refresh_token,
            expires_at,
        );
        store
            .save(user, &login, Expected::Absent)
            .await
            .expect("saved");
    }
}

/// A limiter that never makes anyone wait in these tests.
fn unlimited() -> RateLimit {
    RateLimit::new(1_000_000, Duration::from_secs(1), 100_000)
}

async fn stored_access_token(store: &MemoryStore, user: UserId) -> String {
    let entry = store.load(user).await.unwrap().expect("an entry");
    entry
        .credentials()
        .expect("credentials")
        .reveal_for_storage()
        .access_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_asking_for_300_expired_users_at_once_refresh_each_user_once() {
    let sandbox = sandbox(300).await;
    let users = users(300);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    let fleets: Vec<Fleet> = (0..4).map(|_| unlimited_fleet(&sandbox, &store)).collect();

    let asks = fleets
        .iter()
        .flat_map(|fleet| users.iter().map(move |&user| fleet.access_token(user)));
    let tokens = join_all(asks).await;
    assert!(
        tokens.iter().all(Result::is_ok),
        "{:?}",
        tokens.iter().find(|t| t.is_err())
    );

    let counters = sandbox.handle().counters();
    assert_eq!(counters.refresh_granted, 300);
    assert_eq!(counters.refresh_dead_token, 0);
    assert_eq!(counters.refresh_in_grace, 0);
    let live: Vec<String> = sandbox
        .handle()
        .live_tokens()
        .into_iter()
        .filter(|t| t.kind == TokenKind::Access)
        .map(|t| t.token)
        .collect();
    for &user in &users {
        let newest = stored_access_token(&store, user).await;
        assert!(
            live.contains(&newest),
            "user {user}: the stored pair is not live"
        );
        for fleet in &fleets {
            let token = fleet.access_token(user).await.unwrap();
            assert_eq!(token.expose_secret(), newest, "user {user}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_under_withings_limit_gets_no_601_during_a_burst() {
    let sandbox = sandbox(40).await;
    sandbox.handle().set_rate_limit(Some(20));
    sandbox
        .handle()
        .set_rate_limit_window(Duration::from_secs(1));
    let users = users(40);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    // 12 in any second, with a margin for requests that arrive later than they left (on a
    // busy machine, up to a second: the sandbox's window is Withings' minute shortened 60
    // times, and so is the margin a delay eats).
    let fleet = Fleet::builder(client(&sandbox), store.clone())
        .rate_limit(RateLimit::new(12, Duration::from_secs(1), 4))
        .build()
        .unwrap();

    let tokens = join_all(users.iter().map(|&user| fleet.access_token(user))).await;
    assert!(tokens.iter().all(Result::is_ok));
    let counters = sandbox.handle().counters();
    assert_eq!(counters.rate_limited, 0);
    assert_eq!(counters.refresh_granted, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_set_too_high_has_its_601s_absorbed_by_backoff() {
    let sandbox = sandbox(60).await;
    sandbox.handle().set_rate_limit(Some(20));
    sandbox
        .handle()
        .set_rate_limit_window(Duration::from_secs(1));
    let users = users(60);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    let fleet = unlimited_builder(&sandbox, &store)
        .backoff(Duration::from_millis(200), Duration::from_secs(2), 30)
        .build()
        .unwrap();
    let mut events = fleet.subscribe();

    let tokens = join_all(users.iter().map(|&user| fleet.access_token(user))).await;
    assert!(
        tokens.iter().all(Result::is_ok),
        "{:?}",
        tokens.iter().find(|t| t.is_err())
    );
    let counters = sandbox.handle().counters();
    assert!(counters.rate_limited > 0, "the limit was never reached");
    assert_eq!(counters.refresh_granted, 60);
    assert_eq!(counters.refresh_dead_token, 0);
    for &user in &users {
        let health = fleet.health(user).unwrap();
        assert!(!health.needs_reauthorization, "user {user}");
        assert!(health.retry_at.is_none(), "user {user}");
    }
    while let Ok(event) = events.try_recv() {
        assert!(matches!(event, FleetEvent::Refreshed { .. }), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_revoked_at_withings_fails_once_is_announced_and_never_retried() {
    let sandbox = sandbox(5).await;
    let users = users(5);
    let revoked = users[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    // The user revokes the app at Withings.
    let login = store
        .load(revoked)
        .await
        .unwrap()
        .unwrap()
        .credentials()
        .unwrap()
        .clone();
    let plain = client(&sandbox).build().unwrap();
    Authorized::from_credentials(&plain, login)
        .revoke()
        .await
        .expect("revoked at the sandbox");

    let fleet = unlimited_fleet(&sandbox, &store);
    let mut events = fleet.subscribe();
    let before = sandbox.handle().counters();
    let first = fleet.access_token(revoked).await.unwrap_err();
    assert!(first.needs_reauthorization(), "{first}");
    assert_eq!(
        events.recv().await.unwrap(),
        FleetEvent::NeedsReauthorization { user: revoked }
    );
    let after_first = sandbox.handle().counters();
    assert_eq!(after_first.refresh_rejected, before.refresh_rejected + 1);

    for _ in 0..5 {
        let again = fleet.access_token(revoked).await.unwrap_err();
        assert!(again.needs_reauthorization());
    }
    let later = sandbox.handle().counters();
    assert_eq!(later.token_refresh, after_first.token_refresh);
    assert!(events.try_recv().is_err(), "the event is sent once");
    assert!(fleet.health(revoked).unwrap().needs_reauthorization);

    for &user in &users[1..] {
        fleet
            .access_token(user)
            .await
            .expect("others are unaffected");
    }
    assert_eq!(sandbox.handle().counters().refresh_granted, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_cools_the_user_down_without_reaching_withings_again() {
    let sandbox = sandbox(2).await;
    let users = users(2);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    let fleet = unlimited_builder(&sandbox, &store)
        .cooldown(Duration::from_millis(800), Duration::from_secs(10))
        .build()
        .unwrap();
    sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Http500, 1);

    let first = fleet.access_token(users[0]).await.unwrap_err();
    assert!(matches!(first, FleetError::Session(_)), "{first}");
    let reached = sandbox.handle().counters();
    assert_eq!(reached.faults_applied, 1);

    let second = fleet.access_token(users[0]).await.unwrap_err();
    let FleetError::CoolingDown { retry_in, .. } = second else {
        panic!("expected a cooldown, got {second}");
    };
    assert!(retry_in <= Duration::from_millis(800));
    let third = fleet.access_token(users[0]).await.unwrap_err();
    assert!(third.retry_after().is_some(), "{third}");
    let after = sandbox.handle().counters();
    assert_eq!(after.token_refresh, reached.token_refresh);
    assert_eq!(after.faults_applied, reached.faults_applied);
    let health = fleet.health(users[0]).unwrap();
    assert_eq!(health.failures, 1);
    assert!(health.retry_at.is_some() && health.last_failure.is_some());

    // Another user is not held back, and the cooled-down user is served once it ends.
    fleet.access_token(users[1]).await.unwrap();
    tokio::time::sleep(retry_in + Duration::from_millis(50)).await;
    fleet.access_token(users[0]).await.unwrap();
    assert_eq!(fleet.health(users[0]).unwrap().failures, 0);
    assert_eq!(sandbox.handle().counters().refresh_granted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sweeping_at_once_renew_each_idle_login_once_and_leave_recent_ones() {
    let sandbox = sandbox(15).await;
    let users = users(15);
    let (idle, recent) = users.split_at(10);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, idle, Utc::now() - TimeDelta::days(40)).await;
    store_logins(&sandbox, &store, recent, Utc::now() + TimeDelta::hours(2)).await;
    let fleets: Vec<Fleet> = (0..2)
        .map(|_| {
            unlimited_builder(&sandbox, &store)
                .sweep_idle_after(Duration::from_secs(30 * 24 * 3600))
                .build()
                .unwrap()
        })
        .collect();

    let reports = join_all(fleets.iter().map(|f| f.sweep_once(100))).await;
    let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:?}");
    let counters = sandbox.handle().counters();
    assert_eq!(counters.refresh_granted, 10);
    assert_eq!(counters.refresh_in_grace, 0);
    for &user in recent {
        assert_eq!(counters.user(user.get()).refresh_granted, 0);
    }
    for &user in idle {
        assert_eq!(counters.user(user.get()).refresh_granted, 1);
    }
    // Swept users are not cached: the sweep does not crowd out the users in use.
    assert_eq!(fleets[0].cached_users(), 0);
    let again = fleets[1].sweep_once(100).await.unwrap();
    assert_eq!(again.due, 0);
}

#[tokio::test]
async fn a_sweep_renews_at_most_its_batch() {
    let sandbox = sandbox(6).await;
    let users = users(6);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now() - TimeDelta::days(40)).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    assert_eq!(fleet.sweep_once(4).await.unwrap().renewed, 4);
    assert_eq!(fleet.sweep_once(4).await.unwrap().renewed, 2);
    assert_eq!(sandbox.handle().counters().refresh_granted, 6);
}

#[tokio::test]
async fn data_calls_go_through_the_fleet_and_revoke_announces_itself() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &[user], Utc::now() + TimeDelta::hours(1)).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    let groups = fleet
        .get_meas(user, &withings_oauth::GetMeas::new())
        .await
        .unwrap();
    assert!(!groups.groups.is_empty());
    assert_eq!(sandbox.handle().counters().measure, 1);

    let mut events = fleet.subscribe();
    fleet.revoke(user).await.unwrap();
    assert_eq!(events.recv().await.unwrap(), FleetEvent::Revoked { user });
    assert!(store.load(user).await.unwrap().is_none());
    assert!(
        fleet
            .get_meas(user, &withings_oauth::GetMeas::new())
            .await
            .unwrap_err()
            .needs_reauthorization()
    );
}

#[tokio::test]
async fn no_secret_in_debug_or_errors() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &[user], Utc::now()).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    let token = fleet.access_token(user).await.unwrap();
    let shown = format!("{fleet:?} {:?}", fleet.health(user));
    assert!(!shown.contains(DEFAULT_CLIENT_SECRET));
    assert!(!shown.contains(token.expose_secret()));
    let refresh = store
        .load(user)
        .await
        .unwrap()
        .unwrap()
        .credentials()
        .unwrap()
        .reveal_for_storage()
        .refresh_token;
    assert!(!shown.contains(&refresh));
}

#[tokio::test]
async fn a_user_who_authorized_again_is_served_once_the_new_login_is_stored() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &[user], Utc::now()).await;
    let plain = client(&sandbox).build().unwrap();
    let login = store.load(user).await.unwrap().unwrap();
    Authorized::from_credentials(&plain, login.credentials().unwrap().clone())
        .revoke()
        .await
        .unwrap();
    // The store is looked at again after the longest cooldown.
    let fleet = unlimited_builder(&sandbox, &store)
        .cooldown(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(
        fleet
            .access_token(user)
            .await
            .unwrap_err()
            .needs_reauthorization()
    );

    // The user connects Withings again: a new login replaces the "login required" mark.
    let marked = store.load(user).await.unwrap().unwrap().version;
    let issued = sandbox
        .handle()
        .issue_tokens(user.get(), DEFAULT_CLIENT_ID, &["user.metrics"], HOUR)
        .unwrap();
    let new_login = testing::credentials(
        user,
        &issued.access_token,
        &issued.refresh_token,
        Utc::now() + TimeDelta::hours(1),
    );
    store
        .save(user, &new_login, Expected::Version(marked))
        .await
        .unwrap();
    assert!(
        fleet
            .access_token(user)
            .await
            .unwrap_err()
            .needs_reauthorization()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let token = fleet.access_token(user).await.unwrap();
    assert_eq!(token.expose_secret(), issued.access_token);
    assert!(!fleet.health(user).unwrap().needs_reauthorization);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_for_a_refresh_that_failed_are_told_to_wait_not_sent_to_withings() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &[user], Utc::now()).await;
    let fleet = unlimited_builder(&sandbox, &store)
        .backoff(Duration::from_millis(50), Duration::from_millis(100), 4)
        .build()
        .unwrap();
    sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Http500, 1);

    let results = join_all((0..10).map(|_| fleet.access_token(user))).await;
    let errors: Vec<FleetError> = results.into_iter().map(Result::unwrap_err).collect();
    let cooling = errors
        .iter()
        .filter(|e| matches!(e, FleetError::CoolingDown { .. }))
        .count();
    assert_eq!(cooling, 9, "{errors:?}");
    let counters = sandbox.handle().counters();
    assert_eq!(counters.faults_applied, 1);
    assert_eq!(counters.token_refresh, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_users_refresh_at_once_than_the_fleet_allows() {
    const USERS: u32 = 8;
    const SLOW: Duration = Duration::from_millis(150);
    let sandbox = sandbox(USERS).await;
    let users = users(USERS);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    // Every token answer takes SLOW: two at a time, eight take four times as long.
    sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Delay(SLOW), USERS);
    let fleet = unlimited_builder(&sandbox, &store)
        .concurrent_refreshes(2)
        .build()
        .unwrap();

    let start = std::time::Instant::now();
    let tokens = join_all(users.iter().map(|&user| fleet.access_token(user))).await;
    let elapsed = start.elapsed();
    assert!(tokens.iter().all(Result::is_ok));
    assert_eq!(
        sandbox.handle().counters().refresh_granted,
        u64::from(USERS)
    );
    assert!(
        elapsed >= SLOW * (USERS / 2),
        "{USERS} refreshes, 2 at a time, took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_of_one_busy_user_do_not_hold_up_another_users_refresh() {
    const SLOW: Duration = Duration::from_secs(3);
    let sandbox = sandbox(2).await;
    let users = users(2);
    let (busy, other) = (users[0], users[1]);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now()).await;
    // The busy user's refresh is slow; the other user's is not.
    sandbox
        .handle()
        .inject_fault(Endpoint::Token, Fault::Delay(SLOW), 1);
    let fleet = unlimited_builder(&sandbox, &store)
        .concurrent_refreshes(2)
        .build()
        .unwrap();

    // Eight callers ask for the busy user's due token: one refresh, in flight at the sandbox.
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.access_token(busy).await })
        })
        .collect();
    while sandbox.handle().counters().faults_applied == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two refreshes may run at once: the other user's gets the second permit, not a queue
    // behind the busy user's callers.
    fleet.access_token(other).await.unwrap();
    assert!(
        waiting.iter().all(|task| !task.is_finished()),
        "the other user was refreshed while the busy user's refresh was still under way"
    );
    for task in waiting {
        task.await.unwrap().unwrap();
    }
    let counters = sandbox.handle().counters();
    assert_eq!(counters.user(busy.get()).refresh_granted, 1);
    assert_eq!(counters.user(other.get()).refresh_granted, 1);
}

/// A fleet without a rate limit over `store`.
#[tokio::test]
async fn after_a_revoke_the_fleet_never_hands_out_the_revoked_token() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &[user], Utc::now() + TimeDelta::hours(1)).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    let token = fleet.access_token(user).await.unwrap();
    // The second call is served by the fresh path.
    let again = fleet.access_token(user).await.unwrap();
    assert_eq!(again.expose_secret(), token.expose_secret());

    fleet.revoke(user).await.unwrap();
    let live: Vec<String> = sandbox
        .handle()
        .live_tokens()
        .into_iter()
        .map(|t| t.token)
        .collect();
    assert!(!live.contains(&token.expose_secret().to_owned()));
    for _ in 0..3 {
        match fleet.access_token(user).await {
            Ok(handed) => panic!(
                "a token after the revoke (the revoked one: {})",
                handed.expose_secret() == token.expose_secret()
            ),
            Err(e) => assert!(e.needs_reauthorization(), "{e}"),
        }
    }
    assert_eq!(sandbox.handle().counters().token_refresh, 0);
}

#[tokio::test]
async fn after_a_data_call_refreshed_a_refused_token_the_fleet_hands_out_the_new_one() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    // The store says two hours; the sandbox issued the access token for one.
    store_logins(&sandbox, &store, &[user], Utc::now() + TimeDelta::hours(2)).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    let old = fleet.access_token(user).await.unwrap();
    assert_eq!(
        fleet.access_token(user).await.unwrap().expose_secret(),
        old.expose_secret()
    );

    // An hour and a minute later for Withings: the access token is refused, the session
    // refreshes once and the call goes through.
    sandbox
        .handle()
        .advance_clock(HOUR + Duration::from_secs(60));
    fleet
        .get_meas(user, &withings_oauth::GetMeas::new())
        .await
        .unwrap();
    let counters = sandbox.handle().counters();
    assert_eq!(counters.refresh_granted, 1);
    assert_eq!(counters.measure, 2);

    let new = stored_access_token(&store, user).await;
    assert_ne!(new, old.expose_secret());
    for _ in 0..3 {
        assert_eq!(fleet.access_token(user).await.unwrap().expose_secret(), new);
    }
    assert_eq!(sandbox.handle().counters().refresh_granted, 1);
}

#[tokio::test]
async fn a_user_found_to_need_reauthorization_by_a_data_call_gets_no_token() {
    let sandbox = sandbox(2).await;
    let users = users(2);
    let (revoked, other) = (users[0], users[1]);
    let store = Arc::new(MemoryStore::new());
    store_logins(&sandbox, &store, &users, Utc::now() + TimeDelta::hours(1)).await;
    let fleet = unlimited_fleet(&sandbox, &store);
    let mut events = fleet.subscribe();
    let token = fleet.access_token(revoked).await.unwrap();
    fleet.access_token(other).await.unwrap();

    // The user revokes the app at Withings: the next data call is refused, and so is the
    // refresh it makes.
    let login = store.load(revoked).await.unwrap().unwrap();
    let plain = client(&sandbox).build().unwrap();
    Authorized::from_credentials(&plain, login.credentials().unwrap().clone())
        .revoke()
        .await
        .unwrap();
    let refused = fleet
        .get_meas(revoked, &withings_oauth::GetMeas::new())
        .await
        .unwrap_err();
    assert!(refused.needs_reauthorization(), "{refused}");
    assert_eq!(
        events.recv().await.unwrap(),
        FleetEvent::NeedsReauthorization { user: revoked }
    );
    assert!(fleet.health(revoked).unwrap().needs_reauthorization);

    for _ in 0..3 {
        match fleet.access_token(revoked).await {
            Ok(handed) => panic!(
                "a token for a user who must authorize again (the revoked one: {})",
                handed.expose_secret() == token.expose_secret()
            ),
            Err(e) => assert!(e.needs_reauthorization(), "{e}"),
        }
    }
    // The other user is still served from the fresh path.
    fleet.access_token(other).await.unwrap();
    assert_eq!(sandbox.handle().counters().token_refresh, 1);
}

#[tokio::test]
async fn the_fleet_refreshes_a_token_when_the_margin_is_reached_not_later() {
    let sandbox = sandbox(1).await;
    let user = users(1)[0];
    let store = Arc::new(MemoryStore::new());
    let margin = TimeDelta::minutes(10);
    // Fresh for one more second and a half with a 10-minute margin.
    store_logins(
        &sandbox,
        &store,
        &[user],
        Utc::now() + margin + TimeDelta::milliseconds(1_500),
    )
    .await;
    let fleet = unlimited_builder(&sandbox, &store)
        .margin(margin)
        .build()
        .unwrap();
    let old = fleet.access_token(user).await.unwrap();
    assert_eq!(
        fleet.access_token(user).await.unwrap().expose_secret(),
        old.expose_secret()
    );
    assert_eq!(sandbox.handle().counters().token_refresh, 0);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let new = fleet.access_token(user).await.unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret());
    assert_eq!(new.expose_secret(), stored_access_token(&store, user).await);
    assert_eq!(
        fleet.access_token(user).await.unwrap().expose_secret(),
        new.expose_secret()
    );
    assert_eq!(sandbox.handle().counters().refresh_granted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_fails_to_save_one_refresh_goes_not_one_per_user() {
    let sandbox = sandbox(3).await;
    let users = users(3);
    let store = Arc::new(testing::FlakyStore::default());
    store_logins(&sandbox, store.inner(), &users, Utc::now()).await;
    let fleet = Fleet::builder(client(&sandbox), store.clone())
        .rate_limit(unlimited())
        .build()
        .unwrap();
    // The disk is full: every pair Withings issues now can't be kept.
    store.fail_next_saves(u32::MAX);
    let first = fleet.access_token(users[0]).await.unwrap_err();
    assert!(
        matches!(first, FleetError::Session(SessionError::TokensNotSaved(_))),
        "{first:?}"
    );
    for &user in &users[1..] {
        let err = fleet.access_token(user).await.unwrap_err();
        assert!(matches!(err, FleetError::StoreNotSaving { .. }), "{err:?}");
        assert!(
            err.retry_after()
                .is_some_and(|d| d <= Duration::from_secs(2))
        );
        assert!(err.to_string().contains("check the store"), "{err}");
    }
    assert_eq!(
        sandbox.handle().counters().refresh_granted,
        1,
        "one pair spent while the store failed, not one per user"
    );

    // The disk recovers: the first user's pair is saved in the background, and after the
    // pause one refresh tries and the others follow.
    store.fail_next_saves(0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for &user in &users {
        fleet.access_token(user).await.unwrap();
    }
    let counters = sandbox.handle().counters();
    assert_eq!(
        counters.refresh_granted, 3,
        "the first user's unsaved pair was saved, not refreshed again"
    );
    assert_eq!(counters.refresh_dead_token, 0);
}
