//! Tests of parked logins and the in-memory store: once, bound to the browser, expiring, and
//! restored logins that finish against the sandbox.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use url::Url;

use super::*;
use crate::binding::{BrowserBinding, StateHash};
use crate::config::Client;
use crate::login::{ParkedLogin, Unauthorized};
use crate::store::testing::ManualClock;

fn client(base: Option<Url>) -> Client {
    let mut builder = Client::builder()
        .client_id(withings_sandbox::DEFAULT_CLIENT_ID)
        .client_secret(withings_sandbox::DEFAULT_CLIENT_SECRET)
        .redirect_uri("http://127.0.0.1:8080/callback");
    if let Some(base) = base {
        builder = builder.base_url(base);
    }
    builder.build().unwrap()
}

fn park(client: &Client, owner: &str, browser: &BrowserBinding) -> (ParkedLogin, Url) {
    let pending = Unauthorized::new(client, "user.metrics".parse().unwrap())
        .begin()
        .unwrap();
    let authorize_url = pending.authorize_url().clone();
    (pending.park_revealing_state(owner, browser), authorize_url)
}

fn state_of(authorize_url: &Url) -> StateHash {
    let state = authorize_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let callback: Url = format!("http://127.0.0.1:8080/callback?code=c&state={state}")
        .parse()
        .unwrap();
    StateHash::of_callback(&callback).unwrap()
}

#[tokio::test]
async fn a_parked_login_is_taken_once_and_only_by_its_browser() {
    let store = MemoryPendingLogins::new();
    let browser = BrowserBinding::new_random().unwrap();
    let other = BrowserBinding::new_random().unwrap();
    let (parked, authorize_url) = park(&client(None), "alice", &browser);
    let state = state_of(&authorize_url);
    assert_eq!(parked.state_hash(), &state);
    store.put(parked).await.unwrap();

    assert!(matches!(
        store.take(&state, &other.hash()).await.unwrap_err(),
        PendingLoginError::OtherBrowser
    ));
    assert_eq!(store.len(), 1, "a wrong browser leaves the login in place");
    let taken = store.take(&state, &browser.hash()).await.unwrap();
    assert_eq!(taken.owner(), "alice");
    assert!(
        matches!(
            store.take(&state, &browser.hash()).await.unwrap_err(),
            PendingLoginError::Unknown
        ),
        "a second take finds nothing"
    );
}

#[tokio::test]
async fn expired_logins_are_refused_and_purged() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = MemoryPendingLogins::new().with_clock(clock.clone());
    let browser = BrowserBinding::new_random().unwrap();
    let (old, old_url) = park(&client(None), "alice", &browser);
    let (older, _) = park(&client(None), "bob", &browser);
    store.put(old).await.unwrap();
    store.put(older).await.unwrap();
    clock.advance(DEFAULT_PENDING_LOGIN_TTL + TimeDelta::seconds(1));
    assert!(matches!(
        store
            .take(&state_of(&old_url), &browser.hash())
            .await
            .unwrap_err(),
        PendingLoginError::Expired
    ));
    assert!(store.is_empty(), "both expired logins are purged");

    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = MemoryPendingLogins::new()
        .with_ttl(TimeDelta::minutes(15))
        .with_clock(clock.clone());
    let (fresh, fresh_url) = park(&client(None), "carol", &browser);
    store.put(fresh).await.unwrap();
    clock.advance(TimeDelta::minutes(14));
    assert!(
        store
            .take(&state_of(&fresh_url), &browser.hash())
            .await
            .is_ok(),
        "within its lifetime a login is taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_takers_exactly_one_gets_the_login() {
    for _ in 0..20 {
        let store = MemoryPendingLogins::new();
        let browser = BrowserBinding::new_random().unwrap();
        let (parked, url) = park(&client(None), "alice", &browser);
        store.put(parked).await.unwrap();
        let state = state_of(&url);
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let takers: Vec<_> = (0..32)
            .map(|_| {
                let (store, state, hash, barrier) = (
                    store.clone(),
                    state.clone(),
                    browser.hash(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take(&state, &hash).await.is_ok()
                })
            })
            .collect();
        let mut won = 0;
        for taker in takers {
            won += usize::from(taker.await.unwrap());
        }
        assert_eq!(won, 1);
    }
}

#[test]
fn a_parked_login_never_shows_its_state() {
    let browser = BrowserBinding::new_random().unwrap();
    let (parked, authorize_url) = park(&client(None), "alice", &browser);
    let state = authorize_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let shown = format!("{parked:?}");
    assert!(!shown.contains(&state), "{shown}");
    assert!(!shown.contains(parked.state_hash().as_str()), "{shown}");
    assert!(!shown.contains(browser.reveal_cookie_value()), "{shown}");
    assert!(!shown.contains("alice"), "{shown}");
    assert_eq!(parked.reveal_state().expose_secret(), state);
}

#[test]
fn restoring_rebuilds_the_same_login_and_keeps_the_demo_flag() {
    let c = client(None);
    let browser = BrowserBinding::new_random().unwrap();
    let pending = Unauthorized::new(&c, "user.metrics".parse().unwrap())
        .demo_mode()
        .begin()
        .unwrap();
    let authorize_url = pending.authorize_url().clone();
    let parked = pending.park_revealing_state("alice", &browser);
    assert!(parked.is_demo());
    let restored = parked.restore(&c).unwrap();
    assert_eq!(restored.authorize_url(), &authorize_url);

    let (parked, _) = park(&c, "alice", &browser);
    let elsewhere = Client::builder()
        .client_id("cid")
        .client_secret("s")
        .redirect_uri("https://other.example.com/cb")
        .build()
        .unwrap();
    assert!(parked.restore(&elsewhere).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_login_completes_once_against_the_sandbox() {
    let sandbox = withings_sandbox::Sandbox::start(
        withings_sandbox::SandboxConfig::default().auto_approve(true),
    )
    .await
    .unwrap();
    let c = client(Some(sandbox.base_url()));
    let browser = BrowserBinding::new_random().unwrap();
    let (parked, authorize_url) = park(&c, "alice", &browser);
    let store: Arc<dyn PendingLoginStore> = Arc::new(MemoryPendingLogins::new());
    store.put(parked).await.unwrap();

    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(authorize_url)
        .send()
        .await
        .unwrap();
    let callback: Url = response.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let state = StateHash::of_callback(&callback).unwrap();
    let pending = store
        .take(&state, &browser.hash())
        .await
        .unwrap()
        .restore(&c)
        .unwrap();
    let authorized = pending.complete(&callback).await.unwrap();
    assert_eq!(authorized.user_id().get(), withings_sandbox::SEEDED_USERID);
    assert!(matches!(
        store.take(&state, &browser.hash()).await.unwrap_err(),
        PendingLoginError::Unknown
    ));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_passes_the_conformance_checks() {
    conformance::run(|setup| async move {
        Arc::new(
            MemoryPendingLogins::new()
                .with_ttl(setup.ttl)
                .with_max_per_owner(setup.per_owner)
                .with_clock(setup.clock.clone()),
        ) as Arc<dyn PendingLoginStore>
    })
    .await;
}

#[tokio::test]
async fn by_default_an_owner_keeps_five_logins() {
    let store = MemoryPendingLogins::new();
    let browser = BrowserBinding::new_random().unwrap();
    let start = Utc::now();
    let mut hashes = Vec::new();
    for i in 0..DEFAULT_PENDING_LOGINS_PER_OWNER + 1 {
        let (login, hash) = conformance::parked(
            "alice",
            &browser.hash(),
            start + TimeDelta::seconds(i as i64),
        );
        store.put(login).await.unwrap();
        hashes.push(hash);
    }
    assert_eq!(store.len(), DEFAULT_PENDING_LOGINS_PER_OWNER);
    assert!(
        matches!(
            store.take(&hashes[0], &browser.hash()).await.unwrap_err(),
            PendingLoginError::Unknown
        ),
        "the first click's login was dropped"
    );
    assert!(
        store.take(&hashes[5], &browser.hash()).await.is_ok(),
        "the last click's login is kept"
    );
}
