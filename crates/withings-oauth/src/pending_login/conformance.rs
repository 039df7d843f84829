//! The checks every [`PendingLoginStore`] must pass (feature `test-util`): each login taken
//! once and only by its browser, every field kept, expiry on an injected clock, the cap per
//! owner, and one winner among concurrent takers.
//!
//! ```
//! use std::sync::Arc;
//! use withings_oauth::{MemoryPendingLogins, PendingLoginStore, testing::pending_conformance};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! pending_conformance::run(|setup| async move {
//!     Arc::new(
//!         MemoryPendingLogins::new()
//!             .with_ttl(setup.ttl)
//!             .with_max_per_owner(setup.per_owner)
//!             .with_clock(setup.clock.clone()),
//!     ) as Arc<dyn PendingLoginStore>
//! })
//! .await;
//! # }
//! ```

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use url::Url;

use super::contract::{PendingLoginError, PendingLoginStore};
use crate::binding::{BindingHash, BrowserBinding, StateHash};
use crate::login::ParkedLogin;
use crate::scope::Scopes;
use crate::secret::CsrfState;
use crate::store::testing::ManualClock;
use crate::time::Clock;

/// How to configure the store a check runs on.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The clock the store must read (the checks move it).
    pub clock: Arc<ManualClock>,
    /// The lifetime of a parked login.
    pub ttl: TimeDelta,
    /// The cap per owner.
    pub per_owner: usize,
}

impl Setup {
    /// A clock at a whole second of the present, a lifetime of 10 minutes, 3 logins per owner.
    pub fn new() -> Self {
        let now = Utc::now();
        let whole_second = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        Self {
            clock: Arc::new(ManualClock::new(whole_second)),
            ttl: TimeDelta::minutes(10),
            per_owner: 3,
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs every check, each on a fresh, empty store that `fresh` makes for its [`Setup`].
/// Needs a multi-threaded runtime.
pub async fn run<F, Fut>(mut fresh: F)
where
    F: FnMut(Setup) -> Fut,
    Fut: Future<Output = Arc<dyn PendingLoginStore>>,
{
    macro_rules! check {
        ($check:ident) => {{
            let setup = Setup::new();
            let store = fresh(setup.clone()).await;
            $check(&store, &setup).await;
        }};
    }
    check!(every_field_round_trips_and_a_login_is_taken_once);
    check!(another_browser_is_refused_and_the_login_stays);
    check!(expired_logins_are_refused_and_purged);
    let setup = Setup {
        ttl: TimeDelta::minutes(-5),
        ..Setup::new()
    };
    let store = fresh(setup.clone()).await;
    a_lifetime_of_zero_or_less_is_a_millisecond(&store, &setup).await;
    check!(each_owner_keeps_only_its_newest_logins);
    check!(of_concurrent_takers_exactly_one_wins);
}

/// A parked login of `owner`, started by `browser` at `created_at`, asking for `user.metrics`
/// with redirect URI `https://app.example.com/callback`; and the hash it is stored under.
pub fn parked(
    owner: &str,
    browser: &BindingHash,
    created_at: DateTime<Utc>,
) -> (ParkedLogin, StateHash) {
    let state = BrowserBinding::new_random().expect("the operating system's random generator");
    let login = ParkedLogin::from_stored(
        CsrfState::new(state.reveal_cookie_value()),
        browser.clone(),
        owner.to_owned(),
        created_at,
        "https://app.example.com/callback"
            .parse()
            .expect("a valid URL"),
        "user.metrics".parse().expect("valid scopes"),
        false,
    );
    let hash = login.state_hash().clone();
    (login, hash)
}

fn browser() -> BrowserBinding {
    BrowserBinding::new_random().expect("the operating system's random generator")
}

/// Every field comes back as parked (the creation time to the millisecond); a second take
/// finds nothing.
pub async fn every_field_round_trips_and_a_login_is_taken_once(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "every_field_round_trips_and_a_login_is_taken_once";
    let browser = browser();
    let state = CsrfState::new("state-Zx9_-~.1234567890abcdefghijklmnopqrstuvwxyzABCDEF");
    let created_at = setup.clock.now() + TimeDelta::milliseconds(123);
    let redirect: Url = "https://app.example.com/withings/callback?tenant=7"
        .parse()
        .expect("a valid URL");
    let scopes: Scopes = "user.info,user.metrics,user.activity,custom.scope"
        .parse()
        .expect("valid scopes");
    let owner = "tenant-7/Zoë \"the\" user";
    let login = ParkedLogin::from_stored(
        CsrfState::new(state.expose_secret()),
        browser.hash(),
        owner.to_owned(),
        created_at,
        redirect.clone(),
        scopes.clone(),
        true,
    );
    let hash = login.state_hash().clone();
    store.put(login).await.expect(CHECK);
    let taken = store.take(&hash, &browser.hash()).await.expect(CHECK);
    assert_eq!(
        taken.reveal_state().expose_secret(),
        state.expose_secret(),
        "{CHECK}: state"
    );
    assert_eq!(taken.state_hash(), &hash, "{CHECK}: state hash");
    assert_eq!(taken.browser(), &browser.hash(), "{CHECK}: browser");
    assert_eq!(taken.owner(), owner, "{CHECK}: owner");
    assert_eq!(taken.created_at(), created_at, "{CHECK}: created_at");
    assert_eq!(taken.redirect_uri(), &redirect, "{CHECK}: redirect URI");
    assert_eq!(taken.scopes(), &scopes, "{CHECK}: scopes");
    assert!(taken.is_demo(), "{CHECK}: demo flag");
    assert!(
        matches!(
            store.take(&hash, &browser.hash()).await.unwrap_err(),
            PendingLoginError::Unknown
        ),
        "{CHECK}: a second take finds nothing"
    );
    let (never_parked, _) = parked("alice", &browser.hash(), setup.clock.now());
    assert!(
        matches!(
            store
                .take(never_parked.state_hash(), &browser.hash())
                .await
                .unwrap_err(),
            PendingLoginError::Unknown
        ),
        "{CHECK}: a login never parked is unknown"
    );
}

/// A take by another browser is refused and leaves the login for the browser that started it.
pub async fn another_browser_is_refused_and_the_login_stays(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "another_browser_is_refused_and_the_login_stays";
    let (mine, other) = (browser(), browser());
    let (login, hash) = parked("alice", &mine.hash(), setup.clock.now());
    store.put(login).await.expect(CHECK);
    for _ in 0..2 {
        assert!(
            matches!(
                store.take(&hash, &other.hash()).await.unwrap_err(),
                PendingLoginError::OtherBrowser
            ),
            "{CHECK}"
        );
    }
    let taken = store.take(&hash, &mine.hash()).await.expect(CHECK);
    assert_eq!(taken.owner(), "alice", "{CHECK}");
}

/// A login within its lifetime is taken; past it, it is refused as expired and purged (a
/// second take finds nothing); a put purges the expired logins of every owner.
pub async fn expired_logins_are_refused_and_purged(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "expired_logins_are_refused_and_purged";
    let b = browser();
    let (young, young_hash) = parked("alice", &b.hash(), setup.clock.now());
    store.put(young).await.expect(CHECK);
    setup.clock.advance(setup.ttl - TimeDelta::seconds(1));
    store
        .take(&young_hash, &b.hash())
        .await
        .unwrap_or_else(|e| panic!("{CHECK}: a login within its lifetime is taken: {e}"));

    let (old, old_hash) = parked("alice", &b.hash(), setup.clock.now());
    let (purged, purged_hash) = parked("bob", &b.hash(), setup.clock.now());
    store.put(old).await.expect(CHECK);
    store.put(purged).await.expect(CHECK);
    setup.clock.advance(setup.ttl + TimeDelta::seconds(1));
    assert!(
        matches!(
            store.take(&old_hash, &b.hash()).await.unwrap_err(),
            PendingLoginError::Expired
        ),
        "{CHECK}: past its lifetime"
    );
    assert!(
        matches!(
            store.take(&old_hash, &b.hash()).await.unwrap_err(),
            PendingLoginError::Unknown
        ),
        "{CHECK}: an expired login is purged when it is refused"
    );
    let (fresh, fresh_hash) = parked("carol", &b.hash(), setup.clock.now());
    store.put(fresh).await.expect(CHECK);
    assert!(
        matches!(
            store.take(&purged_hash, &b.hash()).await.unwrap_err(),
            PendingLoginError::Unknown
        ),
        "{CHECK}: a put purges expired logins"
    );
    store.take(&fresh_hash, &b.hash()).await.expect(CHECK);
}

/// A store given a lifetime of zero or less (a configuration mistake) keeps logins a
/// millisecond: a login taken at the moment it was parked is taken, one a moment later is
/// expired. Run with a [`Setup`] whose `ttl` is negative.
pub async fn a_lifetime_of_zero_or_less_is_a_millisecond(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "a_lifetime_of_zero_or_less_is_a_millisecond";
    let b = browser();
    let (now, now_hash) = parked("alice", &b.hash(), setup.clock.now());
    store.put(now).await.expect(CHECK);
    store
        .take(&now_hash, &b.hash())
        .await
        .unwrap_or_else(|e| panic!("{CHECK}: a login taken as it was parked: {e}"));
    let (later, later_hash) = parked("alice", &b.hash(), setup.clock.now());
    store.put(later).await.expect(CHECK);
    setup.clock.advance(TimeDelta::milliseconds(2));
    assert!(
        matches!(
            store.take(&later_hash, &b.hash()).await.unwrap_err(),
            PendingLoginError::Expired
        ),
        "{CHECK}: a login two milliseconds old"
    );
}

/// Parking one more login than the cap drops that owner's oldest, and only that owner's.
pub async fn each_owner_keeps_only_its_newest_logins(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "each_owner_keeps_only_its_newest_logins";
    let b = browser();
    let (bobs, bobs_hash) = parked("bob", &b.hash(), setup.clock.now());
    store.put(bobs).await.expect(CHECK);
    let mut alices = Vec::new();
    for _ in 0..setup.per_owner + 2 {
        setup.clock.advance(TimeDelta::seconds(1));
        let (login, hash) = parked("alice", &b.hash(), setup.clock.now());
        store.put(login).await.expect(CHECK);
        alices.push(hash);
    }
    let (dropped, kept) = alices.split_at(2);
    for hash in dropped {
        assert!(
            matches!(
                store.take(hash, &b.hash()).await.unwrap_err(),
                PendingLoginError::Unknown
            ),
            "{CHECK}: the owner's oldest logins are dropped"
        );
    }
    for hash in kept {
        store
            .take(hash, &b.hash())
            .await
            .unwrap_or_else(|e| panic!("{CHECK}: the owner's newest logins are kept: {e}"));
    }
    store
        .take(&bobs_hash, &b.hash())
        .await
        .unwrap_or_else(|e| panic!("{CHECK}: another owner's login is kept: {e}"));
}

/// Of 16 tasks taking the same login at the same moment, exactly one gets it; the others find
/// nothing.
pub async fn of_concurrent_takers_exactly_one_wins(
    store: &Arc<dyn PendingLoginStore>,
    setup: &Setup,
) {
    const CHECK: &str = "of_concurrent_takers_exactly_one_wins";
    const TAKERS: usize = 16;
    let b = browser();
    let (login, hash) = parked("alice", &b.hash(), setup.clock.now());
    store.put(login).await.expect(CHECK);
    let barrier = Arc::new(tokio::sync::Barrier::new(TAKERS));
    let takers: Vec<_> = (0..TAKERS)
        .map(|_| {
            let (store, hash, browser, barrier) =
                (store.clone(), hash.clone(), b.hash(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.take(&hash, &browser).await.map(|_| ())
            })
        })
        .collect();
    let mut won = 0;
    for taker in takers {
        match taker.await.expect(CHECK) {
            Ok(()) => won += 1,
            Err(PendingLoginError::Unknown) => {}
            Err(other) => panic!("{CHECK}: a losing taker finds nothing, not {other:?}"),
        }
    }
    assert_eq!(won, 1, "{CHECK}");
}
