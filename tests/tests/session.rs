//! Sessions against the sandbox: single-flight refresh, persist before use, dead refresh tokens,
//! 401 retries, and two processes sharing one `FileStore`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use withings_oauth::chrono::{DateTime, TimeDelta, Utc};
use withings_oauth::testing::FlakyStore;
use withings_oauth::{Authorized, Client, Unauthorized, UserId};
use withings_oauth::{Clock, GetMeas, Session, SessionError, measure_type};
use withings_oauth::{MemoryStore, StoredEntry, TokenStore};
use withings_oauth_store::FileStore;
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LOOPBACK_CALLBACK, SEEDED_USERID, Sandbox,
    SandboxConfig,
};

const USER: UserId = UserId::new(SEEDED_USERID);

/// Past the 3-hour lifetime of the sandbox's access tokens.
const EXPIRED: Duration = Duration::from_secs(3 * 3600 + 60);

/// The system clock moved forward, as the sandbox's clock is after `advance_clock`.
struct OffsetClock(TimeDelta);

impl OffsetClock {
    fn expired() -> Arc<Self> {
        Arc::new(Self(TimeDelta::from_std(EXPIRED).unwrap()))
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn client_for(base: url::Url) -> Client {
    Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(LOOPBACK_CALLBACK)
        .base_url(base)
        .build()
        .unwrap()
}

async fn sandbox() -> (Sandbox, Client) {
    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(true))
        .await
        .unwrap();
    let client = client_for(sandbox.base_url());
    (sandbox, client)
}

/// Logs the seeded user in through the auto-approving authorize page.
async fn login(client: &Client) -> Authorized {
    let pending = Unauthorized::new(client, "user.metrics".parse().unwrap())
        .begin()
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .get(pending.authorize_url().clone())
        .send()
        .await
        .unwrap();
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    pending.complete(&location).await.unwrap()
}

async fn stored(store: &dyn TokenStore) -> Option<StoredEntry> {
    store.load(USER).await.unwrap().map(|e| e.entry)
}

fn stored_access_token(entry: Option<StoredEntry>) -> String {
    match entry {
        Some(StoredEntry::Credentials(c)) => c.access_token().expose_secret().to_owned(),
        other => panic!("expected credentials in the store, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_on_an_expired_session_cause_one_refresh() {
    let (sandbox, client) = sandbox().await;
    let handle = sandbox.handle();
    let authorized = login(&client).await;
    let old_token = authorized.access_token().expose_secret().to_owned();
    let store = Arc::new(MemoryStore::new());
    let session = Session::start(authorized, store.clone())
        .await
        .unwrap()
        .with_clock(OffsetClock::expired());
    handle.advance_clock(EXPIRED);

    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    let mut tokens = Vec::with_capacity(tasks.len());
    for task in tasks {
        tokens.push(task.await.unwrap().unwrap().expose_secret().to_owned());
    }

    let counters = handle.counters();
    assert_eq!(counters.token_refresh, 1, "one refresh for 1000 callers");
    assert_eq!(counters.refresh_rejected, 0);
    let new_token = &tokens[0];
    assert_ne!(new_token, &old_token);
    assert!(
        tokens.iter().all(|t| t == new_token),
        "every caller got the same token"
    );
    assert_eq!(
        &stored_access_token(stored(store.as_ref()).await),
        new_token
    );

    // The token they got is the one Withings accepts.
    let groups = session
        .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
        .await
        .unwrap();
    assert!(!groups.groups.is_empty());
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        new_token
    );
    let counters = handle.counters();
    assert_eq!(counters.measure_rejected, 0);
    assert_eq!(counters.token_refresh, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_reported_and_the_next_call_saves_and_uses_the_new_pair() {
    let (sandbox, client) = sandbox().await;
    let handle = sandbox.handle();
    let store = Arc::new(FlakyStore::default());
    let session = Session::start(login(&client).await, store.clone())
        .await
        .unwrap()
        .with_clock(OffsetClock::expired());
    let old_token = stored_access_token(stored(store.as_ref()).await);
    handle.advance_clock(EXPIRED);
    store.fail_next_saves(1);

    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, SessionError::TokensNotSaved(_)), "{err:?}");
    assert!(err.to_string().contains("the disk is full"), "{err}");
    assert_eq!(stored_access_token(stored(store.as_ref()).await), old_token);

    let token = session.access_token().await.unwrap();
    assert_ne!(token.expose_secret(), old_token);
    assert_eq!(
        stored_access_token(stored(store.as_ref()).await),
        token.expose_secret(),
        "the store holds the newest pair"
    );
    session.get_meas(&GetMeas::new()).await.unwrap();
    let counters = handle.counters();
    assert_eq!(
        counters.token_refresh, 1,
        "the pair was kept, not fetched again"
    );
    assert_eq!(counters.measure_rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_rotated_away_requires_login_and_the_store_records_it() {
    let (sandbox, client) = sandbox().await;
    let handle = sandbox.handle();
    let authorized = login(&client).await;
    // A second copy of the same login, refreshed elsewhere, and its new access token used:
    // Withings then kills the refresh token the session holds.
    let twin = Authorized::from_credentials(&client, authorized.credentials().clone());
    let store = Arc::new(MemoryStore::new());
    let session = Session::start(authorized, store.clone())
        .await
        .unwrap()
        .with_clock(OffsetClock::expired());
    let elsewhere = Session::start(twin.refresh().await.unwrap(), Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    elsewhere.get_meas(&GetMeas::new()).await.unwrap();

    let err = session.access_token().await.unwrap_err();
    assert!(
        matches!(err, SessionError::LoginRequired { user } if user == USER),
        "{err:?}"
    );
    assert!(matches!(
        stored(store.as_ref()).await,
        Some(StoredEntry::LoginRequired)
    ));
    assert!(session.status().login_required);
    assert!(
        session
            .get_meas(&GetMeas::new())
            .await
            .unwrap_err()
            .login_required()
    );
    let restored = Session::restore(&client, store, USER).await.unwrap_err();
    assert!(restored.login_required());
    let counters = handle.counters();
    assert_eq!(counters.refresh_rejected, 1, "a dead login is not retried");
    assert_eq!(counters.token_refresh, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_rejected_by_a_data_call_is_refreshed_once_and_the_call_retried() {
    let (sandbox, client) = sandbox().await;
    let handle = sandbox.handle();
    let store = Arc::new(MemoryStore::new());
    // The session's clock says the token is fresh; Withings' says it expired.
    let session = Session::start(login(&client).await, store.clone())
        .await
        .unwrap();
    let old_token = session.access_token().await.unwrap();
    handle.advance_clock(EXPIRED);

    let groups = session
        .call("measure", &[("action", "getmeas")])
        .await
        .unwrap();
    let page = groups["measuregrps"].as_array().unwrap();
    assert!(
        !page.is_empty(),
        "the retried call returned no measure group"
    );
    let counters = handle.counters();
    assert_eq!(counters.measure_rejected, 1);
    assert_eq!(counters.token_refresh, 1);
    assert_eq!(counters.measure, 2);
    let token = session.access_token().await.unwrap();
    assert_ne!(token.expose_secret(), old_token.expose_secret());
    assert_eq!(
        stored_access_token(stored(store.as_ref()).await),
        token.expose_secret()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_kills_the_tokens_and_forgets_the_user() {
    let (sandbox, client) = sandbox().await;
    let store = Arc::new(MemoryStore::new());
    let session = Session::start(login(&client).await, store.clone())
        .await
        .unwrap();
    let survivor = session.clone();
    session.revoke().await.unwrap();
    assert!(stored(store.as_ref()).await.is_none());
    assert!(survivor.status().login_required);
    assert!(survivor.access_token().await.unwrap_err().login_required());
    assert_eq!(sandbox.handle().counters().revoke, 1);
}

const CHILD_TEST: &str = "child_process_refreshes_through_the_shared_store";

/// Waits until `path` exists.
fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_a_file_store_refresh_once() {
    let (sandbox, client) = sandbox().await;
    let handle = sandbox.handle();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store/tokens.json");
    let barrier = dir.path().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::open(&store_path).unwrap());
    Session::start(login(&client).await, store.clone())
        .await
        .unwrap();
    handle.advance_clock(EXPIRED);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--ignored"])
        .env("WITHINGS_E2E_SANDBOX_URL", sandbox.base_url().as_str())
        .env("WITHINGS_E2E_STORE", &store_path)
        .env("WITHINGS_E2E_USER", USER.to_string())
        .env("WITHINGS_E2E_BARRIER", &barrier)
        .spawn()
        .unwrap();
    let session = Session::restore(&client, store.clone(), USER)
        .await
        .unwrap()
        .with_clock(OffsetClock::expired());
    let ready = barrier.join("child-ready");
    tokio::task::spawn_blocking(move || wait_for(&ready, Duration::from_secs(60)))
        .await
        .unwrap();
    std::fs::write(barrier.join("go"), b"").unwrap();
    let token = session.access_token().await.unwrap();

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the child process failed: {status}");
    let child_token = std::fs::read_to_string(barrier.join("child-token")).unwrap();
    let counters = handle.counters();
    assert_eq!(counters.token_refresh, 1, "one refresh for two processes");
    assert_eq!(counters.refresh_rejected, 0);
    assert_eq!(
        child_token,
        token.expose_secret(),
        "both use the same new pair"
    );
    assert_eq!(
        stored_access_token(stored(store.as_ref()).await),
        token.expose_secret()
    );
    session.get_meas(&GetMeas::new()).await.unwrap();
    assert_eq!(handle.counters().measure_rejected, 0);
}

/// The other process of `two_processes_sharing_a_file_store_refresh_once`, which runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by two_processes_sharing_a_file_store_refresh_once"]
async fn child_process_refreshes_through_the_shared_store() {
    let Ok(url) = std::env::var("WITHINGS_E2E_SANDBOX_URL") else {
        eprintln!("{CHILD_TEST} only does something when started by its parent test");
        return;
    };
    let store_path = PathBuf::from(std::env::var_os("WITHINGS_E2E_STORE").unwrap());
    let barrier = PathBuf::from(std::env::var_os("WITHINGS_E2E_BARRIER").unwrap());
    let user: UserId = std::env::var("WITHINGS_E2E_USER").unwrap().parse().unwrap();
    let client = client_for(url.parse().unwrap());
    let store = Arc::new(FileStore::open(store_path).unwrap());
    let session = Session::restore(&client, store, user)
        .await
        .unwrap()
        .with_clock(OffsetClock::expired());
    std::fs::write(barrier.join("child-ready"), b"").unwrap();
    let go = barrier.join("go");
    tokio::task::spawn_blocking(move || wait_for(&go, Duration::from_secs(60)))
        .await
        .unwrap();
    let token = session.access_token().await.unwrap();
    session.get_meas(&GetMeas::new()).await.unwrap();
    std::fs::write(barrier.join("child-token"), token.expose_secret()).unwrap();
}
