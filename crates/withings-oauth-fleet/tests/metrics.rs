//! What a fleet records through the `metrics` facade: the limiter's grants and waits, the cache's
//! size, sweeps with their renewals and the users by state, refreshes held back while the store
//! fails to save; nothing on the fresh path; never a user id as a label.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use withings_oauth::{Client, Expected, MemoryStore, TokenStore, UserId, testing};
use withings_oauth_fleet::{Fleet, FleetBuilder, RateLimit};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, Sandbox, SandboxConfig, User,
};

/// A fleet over `store` against `sandbox`, with a limiter that never makes anyone wait.
fn fleet_builder(sandbox: &Sandbox, store: Arc<dyn TokenStore>) -> FleetBuilder {
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(sandbox.base_url());
    Fleet::builder(client, store).rate_limit(RateLimit::new(1_000, Duration::from_secs(1), 100))
}

#[test]
fn a_call_and_a_sweep_record_the_limiter_the_cache_the_sweep_and_the_users_by_state() {
    let ids: Vec<UserId> = (1..=3)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect();
    let recorded = testing::record_metrics(|| async {
        let sandbox = Sandbox::start(SandboxConfig::default().seed_users(3).rate_limit(None))
            .await
            .unwrap();
        let store = Arc::new(MemoryStore::new());
        // Two logins unused for two days; the third must log in again.
        for &user in &ids[..2] {
            let login = common::issued_login(&sandbox, user, Utc::now() - TimeDelta::days(2));
            store.save(user, &login, Expected::Absent).await.unwrap();
        }
        store
            .mark_login_required(ids[2], Expected::Absent)
            .await
            .unwrap();
        let fleet = fleet_builder(&sandbox, store.clone())
            .sweep_idle_after(Duration::from_secs(3600))
            .build()
            .unwrap();

        fleet.access_token(ids[0]).await.unwrap();
        // Fresh now: the fast path records nothing more.
        for _ in 0..10 {
            fleet.access_token(ids[0]).await.unwrap();
        }
        let report = fleet.sweep_once(10).await.unwrap();
        assert_eq!(report.renewed, 1, "{report:?}");
        assert_eq!(sandbox.handle().counters().refresh_granted, 2);
    });
    assert_eq!(
        recorded.value("withings_oauth_refreshes_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        recorded.value("withings_oauth_rate_limiter_grants_total", &[]),
        2.0
    );
    assert_eq!(
        recorded.value("withings_oauth_rate_limiter_wait_seconds", &[]),
        2.0
    );
    assert_eq!(
        recorded.value("withings_oauth_fleet_cached_users", &[]),
        1.0
    );
    assert_eq!(
        recorded.value("withings_oauth_fleet_sweeps_total", &[]),
        1.0
    );
    let renewals = "withings_oauth_fleet_sweep_renewals_total";
    assert_eq!(recorded.value(renewals, &[("outcome", "renewed")]), 1.0);
    assert_eq!(recorded.value(renewals, &[("outcome", "failed")]), 0.0);
    let users = "withings_oauth_fleet_users";
    assert_eq!(recorded.value(users, &[("state", "fresh")]), 2.0);
    assert_eq!(recorded.value(users, &[("state", "due")]), 0.0);
    assert_eq!(recorded.value(users, &[("state", "login_required")]), 1.0);
    // No label names a user.
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    recorded.assert_no_label_holds(&ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_refresh_held_back_while_the_store_fails_to_save_is_counted() {
    let ids: Vec<UserId> = (1..=2)
        .map(|i| UserId::new(User::numbered(i).userid))
        .collect();
    let recorded = testing::record_metrics(|| async {
        let sandbox = Sandbox::start(SandboxConfig::default().seed_users(2).rate_limit(None))
            .await
            .unwrap();
        let store = Arc::new(testing::FlakyStore::default());
        for &user in &ids {
            let login = common::issued_login(&sandbox, user, Utc::now());
            store
                .inner()
                .save(user, &login, Expected::Absent)
                .await
                .unwrap();
        }
        let fleet = fleet_builder(&sandbox, store.clone()).build().unwrap();
        store.fail_next_saves(u32::MAX);
        fleet.access_token(ids[0]).await.unwrap_err();
        fleet.access_token(ids[1]).await.unwrap_err();
    });
    let refreshes = "withings_oauth_refreshes_total";
    // The refresh whose save failed (and any background save tried before the end).
    assert!(recorded.value(refreshes, &[("outcome", "store_error")]) >= 1.0);
    assert_eq!(
        recorded.value(refreshes, &[("outcome", "store_not_saving")]),
        1.0
    );
}
