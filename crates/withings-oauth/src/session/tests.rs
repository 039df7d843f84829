//! Tests of the session: single flight, persist-before-use, adoption and data calls.

use super::*;
use crate::api::error::ApiError;
use crate::api::measure::{GetMeas, Measure, MeasureGroups, measure_type};
use crate::store::MemoryStore;
use crate::store::testing::{FlakyStore, ManualClock};
use crate::store::{Expected, Version};
use crate::time::Clock;
use std::time::Duration;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: UserId = UserId::new(1001);

fn client(server: &MockServer) -> Client {
    Client::builder()
        .client_id("cid")
        .client_secret("csecret")
        .redirect_uri("https://app.example.com/cb")
        .base_url(server.uri().parse().unwrap())
        .build()
        .unwrap()
}

fn credentials(access: &str, refresh: &str, expires_at: DateTime<Utc>) -> Credentials {
    crate::store::testing::credentials(USER, access, refresh, expires_at)
}

fn token_answer(access: &str, refresh: &str) -> ResponseTemplate {
    token_answer_lasting(access, refresh, 10_800)
}

/// A token answer whose access token is issued for `expires_in` seconds.
fn token_answer_lasting(access: &str, refresh: &str, expires_in: u32) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(format!(
        r#"{{"status":0,"body":{{"userid":1001,"access_token":"{access}","refresh_token":"{refresh}","expires_in":{expires_in},"scope":"user.metrics","token_type":"Bearer"}}}}"#
    ))
}

fn refresh_with(refresh: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v2/oauth2"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={refresh}")))
}

async fn session(
    server: &MockServer,
    store: Arc<dyn TokenStore>,
    expires_in: TimeDelta,
) -> Session {
    let authorized = Authorized::from_credentials(
        &client(server),
        credentials("old-access", "old-refresh", Utc::now() + expires_in),
    );
    Session::start(authorized, store).await.unwrap()
}

async fn stored_refresh_token(store: &dyn TokenStore) -> Option<String> {
    let entry = store.load(USER).await.unwrap()?;
    entry
        .credentials()
        .map(|c| c.refresh_token.expose_secret().to_owned())
}

/// Saves `credentials` over whatever is stored, as another program would (a login, or its own
/// refresh).
async fn save_elsewhere(store: &dyn TokenStore, credentials: &Credentials) -> Version {
    let expected = store
        .load(USER)
        .await
        .unwrap()
        .map_or(Expected::Absent, |e| Expected::Version(e.version));
    store.save(USER, credentials, expected).await.unwrap()
}

/// Whether the store says the user must log in again.
async fn stored_login_required(store: &dyn TokenStore) -> bool {
    matches!(
        store.load(USER).await.unwrap().map(|e| e.entry),
        Some(StoredEntry::LoginRequired)
    )
}

#[tokio::test]
async fn a_fresh_token_is_served_without_any_request() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth2"))
        .respond_with(token_answer("x", "y"))
        .expect(0)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    for _ in 0..10 {
        assert_eq!(
            session.access_token().await.unwrap().expose_secret(),
            "old-access"
        );
    }
    server.verify().await;
}

#[tokio::test]
async fn the_margin_decides_on_the_system_clock_too() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    // Six minutes left: fresh with the default 5-minute margin, due with a 7-minute one.
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(6)).await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "old-access"
    );
    let eager = session.clone().with_margin(TimeDelta::minutes(7));
    assert_eq!(
        eager.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
    server.verify().await;
}

#[tokio::test]
async fn a_token_entering_the_margin_is_refreshed_once_and_saved_before_it_is_returned() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let session = session(&server, store.clone(), TimeDelta::hours(3))
        .await
        .with_clock(clock.clone());
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "old-access"
    );
    // 2 h 56 min later the token has 4 minutes left: inside the 5-minute margin.
    clock.advance(TimeDelta::minutes(176));
    let token = session.access_token().await.unwrap();
    assert_eq!(token.expose_secret(), "new-access");
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("new-refresh")
    );
    // The new expiry is on the session's clock: no second refresh.
    assert!(session.status().expires_at > clock.now() + TimeDelta::hours(2));
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
    server.verify().await;
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(
            token_answer("new-access", "new-refresh").set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().expose_secret(), "new-access");
    }
    server.verify().await;
}

/// A store whose refresh lock panics after a while, as a buggy custom store might.
struct PanickyStore(MemoryStore);

impl TokenStore for PanickyStore {
    fn load<'a>(
        &'a self,
        user: UserId,
    ) -> crate::store::StoreFuture<'a, Option<crate::store::VersionedEntry>> {
        self.0.load(user)
    }
    fn save<'a>(
        &'a self,
        user: UserId,
        credentials: &'a Credentials,
        expected: Expected,
    ) -> crate::store::StoreFuture<'a, Version> {
        self.0.save(user, credentials, expected)
    }
    fn delete<'a>(&'a self, user: UserId, expected: Expected) -> crate::store::StoreFuture<'a, ()> {
        self.0.delete(user, expected)
    }
    fn mark_login_required<'a>(
        &'a self,
        user: UserId,
        expected: Expected,
    ) -> crate::store::StoreFuture<'a, Version> {
        self.0.mark_login_required(user, expected)
    }
    fn users<'a>(&'a self) -> crate::store::StoreFuture<'a, Vec<UserId>> {
        self.0.users()
    }
    fn lease<'a>(
        &'a self,
        _user: UserId,
        _ttl: Duration,
    ) -> crate::store::StoreFuture<'a, crate::store::Lease> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!("a buggy store");
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_for_a_refresh_that_panicked_do_not_hang() {
    let server = MockServer::start().await;
    let store: Arc<dyn TokenStore> = Arc::new(PanickyStore(MemoryStore::new()));
    let session = session(&server, store, TimeDelta::minutes(1)).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    let (mut panicked, mut shared) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a waiting caller hung after the refresh panicked")
        {
            Err(e) if e.is_panic() => panicked += 1,
            Ok(Err(SessionError::ConcurrentRefreshFailed { message })) => {
                assert!(message.contains("stopped unexpectedly"), "{message}");
                shared += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(panicked, 1, "the caller that refreshed sees the panic");
    assert_eq!(shared, 19, "the waiters get an error instead of hanging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_for_a_failed_refresh_get_its_error_without_retrying() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(ResponseTemplate::new(502).set_delay(Duration::from_millis(200)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.access_token().await })
        })
        .collect();
    let mut direct = 0;
    for task in tasks {
        match task.await.unwrap().unwrap_err() {
            SessionError::Api(ApiError::HttpStatus { status: 502 }) => direct += 1,
            SessionError::ConcurrentRefreshFailed { message } => {
                assert!(message.contains("HTTP 502"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        direct, 1,
        "one caller refreshed; the others shared its failure"
    );
    server.verify().await;

    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .mount(&server)
        .await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access",
        "the next call tries again with the kept refresh token"
    );
}

/// A session whose stored `old-refresh` Withings refreshes once to `{ours}-access` /
/// `{ours}-refresh`, and whose store fails the next `failures` saves: the refresh's own save
/// fails, and the caller is told.
async fn refresh_left_unsaved(
    server: &MockServer,
    ours: &str,
    failures: u32,
) -> (Session, Arc<FlakyStore>) {
    refresh_with("old-refresh")
        .respond_with(token_answer(
            &format!("{ours}-access"),
            &format!("{ours}-refresh"),
        ))
        .expect(1)
        .mount(server)
        .await;
    let store = Arc::new(FlakyStore::default());
    let session = session(server, store.clone(), TimeDelta::minutes(1)).await;
    store.fail_next_saves(failures);
    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, SessionError::TokensNotSaved(_)), "{err:?}");
    assert!(err.to_string().contains("kept in memory"), "{err}");
    (session, store)
}

#[tokio::test]
async fn a_failed_save_keeps_the_new_pair_unpublished_and_the_next_call_saves_it() {
    let server = MockServer::start().await;
    let (session, store) = refresh_left_unsaved(&server, "new", 1).await;
    // Not published: nobody can have used the new access token yet.
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("old-refresh")
    );
    assert!(session.status().expires_at < Utc::now() + TimeDelta::minutes(2));

    let token = session.access_token().await.unwrap();
    assert_eq!(token.expose_secret(), "new-access");
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("new-refresh")
    );
    server.verify().await;
}

#[tokio::test]
async fn a_pair_whose_save_failed_is_saved_in_the_background_though_nobody_calls_again() {
    let server = MockServer::start().await;
    // The refresh's own save and the first two saves in the background fail.
    let (session, store) = refresh_left_unsaved(&server, "new", 3).await;
    // Nobody calls again, and the last clone is gone: Withings rotated the stored refresh
    // token, so only the pair in memory can carry the login on.
    drop(session);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stored_refresh_token(store.as_ref()).await.as_deref() != Some("new-refresh") {
        assert!(
            std::time::Instant::now() < deadline,
            "the refreshed pair was never saved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.verify().await;
}

/// A session whose refresh of `old-refresh` to `ours-*` failed to save, after which
/// another program refreshed the same stored pair and saved `theirs-*`, expiring in
/// `theirs_expire_in`.
async fn unsaved_pair_and_a_newer_stored_one(
    server: &MockServer,
    theirs_expire_in: TimeDelta,
) -> (Session, Arc<FlakyStore>) {
    let (session, store) = refresh_left_unsaved(server, "ours", 1).await;
    save_elsewhere(
        store.inner(),
        &credentials(
            "theirs-access",
            "theirs-refresh",
            Utc::now() + theirs_expire_in,
        ),
    )
    .await;
    (session, store)
}

#[tokio::test]
async fn an_unsaved_pair_does_not_overwrite_a_newer_pair_another_program_stored() {
    let server = MockServer::start().await;
    let (session, store) = unsaved_pair_and_a_newer_stored_one(&server, TimeDelta::hours(3)).await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "theirs-access"
    );
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("theirs-refresh")
    );
    server.verify().await;
}

#[tokio::test]
async fn an_unsaved_pair_gives_way_to_a_newer_stored_one_that_is_then_refreshed() {
    let server = MockServer::start().await;
    refresh_with("theirs-refresh")
        .respond_with(token_answer("next-access", "next-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    let (session, store) =
        unsaved_pair_and_a_newer_stored_one(&server, TimeDelta::minutes(1)).await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "next-access"
    );
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("next-refresh")
    );
    server.verify().await;
}

#[tokio::test]
async fn a_transient_refresh_failure_keeps_the_old_pair_for_the_next_call() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
    let err = session.access_token().await.unwrap_err();
    assert!(
        matches!(err, SessionError::Api(ApiError::HttpStatus { status: 502 })),
        "{err:?}"
    );
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
}

#[tokio::test]
async fn a_rejected_refresh_token_requires_login_and_is_recorded() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
    let err = session.access_token().await.unwrap_err();
    assert!(err.login_required(), "{err:?}");
    assert!(stored_login_required(store.as_ref()).await);
    assert!(session.status().login_required);
    // Known dead: no second request.
    assert!(session.access_token().await.unwrap_err().login_required());
    let restored = Session::restore(&client(&server), store, USER).await;
    assert!(restored.unwrap_err().login_required());
    server.verify().await;
}

#[test]
fn the_fast_path_reads_the_wall_clock() {
    let before = Utc::now().timestamp_micros();
    let fast = system_micros();
    let after = Utc::now().timestamp_micros();
    // Never ahead, and lagging by a few ticks at most (a virtual machine under load may
    // deliver a tick late): a counter from some other epoch, or one that stops during a
    // suspend, would be far off. A lag of milliseconds is nothing against the margin.
    assert!(fast <= after, "{fast} > {after}");
    assert!(
        fast >= before - system_resolution_micros() - 250_000,
        "{fast} lags {before} by more than a quarter of a second"
    );
}

#[tokio::test]
async fn a_token_is_refreshed_as_soon_as_the_system_clock_reaches_the_margin() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    let session = session(
        &server,
        Arc::new(MemoryStore::new()),
        DEFAULT_MARGIN + TimeDelta::milliseconds(500),
    )
    .await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "old-access"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
    server.verify().await;
}

#[tokio::test]
async fn a_logout_by_another_program_is_not_undone_by_a_refresh() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth2"))
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(0)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let session = session(&server, store.clone(), TimeDelta::hours(3)).await;
    // `withings-oauth logout` in another process.
    store.force_delete(USER).await.unwrap();

    let err = session.refresh().await.unwrap_err();
    assert!(err.login_required(), "{err:?}");
    assert!(
        store.load(USER).await.unwrap().is_none(),
        "still logged out"
    );
    assert!(session.status().login_required);
    // Known logged out: later calls neither refresh nor save.
    assert!(session.access_token().await.unwrap_err().login_required());
    assert!(store.users().await.unwrap().is_empty());
    server.verify().await;
}

#[tokio::test]
async fn an_invalid_token_answer_refreshes_once_and_retries_once() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/measure"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":401,"body":{},"error":"XRequestID: Not provided invalid_token: The access token provided is invalid"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/measure"))
        .and(header("authorization", "Bearer new-access"))
        .and(body_string_contains("action=getmeas"))
        .and(body_string_contains("meastype=1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":0,"body":{"updatetime":1700000100,"timezone":"Europe/Paris","more":0,"offset":0,
               "measuregrps":[{"grpid":7,"attrib":0,"date":1700000000,"created":1700000060,"category":1,
               "deviceid":null,"measures":[{"value":72345,"type":1,"unit":-3,"algo":3}]}]}}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    let groups = session
        .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
        .await
        .unwrap();
    let weight = groups.groups[0].measure(measure_type::WEIGHT).unwrap();
    assert_eq!(weight.real_value(), 72.345);
    assert!(!groups.more);
    assert_eq!(
        groups.groups[0].taken_at().unwrap().timestamp(),
        1_700_000_000
    );
    server.verify().await;
}

#[tokio::test]
async fn a_second_invalid_token_answer_is_returned_not_retried_again() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/measure"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":401,"body":{},"error":"invalid_token: The access token provided is invalid"}"#,
        ))
        .expect(2)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    let err = session
        .call("measure", &[("action", "getmeas")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::Api(ApiError::InvalidAccessToken)),
        "{err:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn a_session_adopts_fresh_tokens_another_program_stored() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth2"))
        .respond_with(token_answer("x", "y"))
        .expect(0)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
    // Another program refreshed and saved the newer pair.
    save_elsewhere(
        store.as_ref(),
        &credentials(
            "their-access",
            "their-refresh",
            Utc::now() + TimeDelta::hours(3),
        ),
    )
    .await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "their-access"
    );
    server.verify().await;
}

#[tokio::test]
async fn the_bearer_token_never_leaves_the_api_host() {
    let server = MockServer::start().await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    for bad in [
        "https://evil.example.com/measure",
        "//evil.example.com/measure",
        "",
        "measure?x=1",
        "\\\\evil",
    ] {
        let err = session.call(bad, &[]).await.unwrap_err();
        assert!(
            matches!(err, SessionError::InvalidPath { .. }),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn start_hands_the_login_back_when_the_store_fails() {
    let server = MockServer::start().await;
    let store = Arc::new(FlakyStore::default());
    store.fail_next_saves(1);
    let authorized = Authorized::from_credentials(
        &client(&server),
        credentials("a", "r", Utc::now() + TimeDelta::hours(3)),
    );
    let err = Session::start(authorized, store.clone()).await.unwrap_err();
    assert!(err.store_error().is_some());
    let authorized = err.into_login().expect("the login comes back");
    assert!(Session::start(authorized, store).await.is_ok());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let token = AccessToken::new("s3cret-token");
    assert!(!format!("{token:?}").contains("s3cret"));
}

#[test]
fn getmeas_sends_several_types_as_meastypes() {
    let query = GetMeas::new()
        .meastype(measure_type::WEIGHT)
        .meastype(measure_type::FAT_RATIO)
        .category(1)
        .offset(3);
    assert_eq!(
        query.params(),
        [
            ("meastypes", "1,6".to_owned()),
            ("category", "1".to_owned()),
            ("offset", "3".to_owned())
        ]
    );
}

proptest::proptest! {
    #[test]
    fn any_measure_has_a_real_value(value: i64, unit: i32) {
        let real = Measure { value, kind: 1, unit }.real_value();
        proptest::prop_assert!(!real.is_nan());
        if (-12..=12).contains(&unit) && value.unsigned_abs() < 1 << 40 {
            let expected: f64 = format!("{value}e{unit}").parse().unwrap();
            proptest::prop_assert!((real - expected).abs() <= expected.abs() * 1e-12, "{real} vs {expected}");
        }
    }

    #[test]
    fn measure_groups_parse_whatever_the_types_of_more(more in proptest::option::of(proptest::prop_oneof![
        proptest::prelude::Just("0".to_owned()),
        proptest::prelude::Just("1".to_owned()),
        proptest::prelude::Just("true".to_owned()),
        proptest::prelude::Just("false".to_owned()),
        proptest::prelude::Just("null".to_owned()),
    ])) {
        let body = match &more {
            Some(m) => format!(r#"{{"measuregrps":[],"more":{m}}}"#),
            None => r#"{"measuregrps":[]}"#.to_owned(),
        };
        let groups: MeasureGroups = serde_json::from_str(&body).unwrap();
        proptest::prop_assert_eq!(groups.more, matches!(more.as_deref(), Some("1" | "true")));
    }
}

#[test]
fn real_values_scale_by_powers_of_ten() {
    let m = |value, unit| {
        Measure {
            value,
            kind: 1,
            unit,
        }
        .real_value()
    };
    assert_eq!(m(72345, -3), 72.345);
    assert_eq!(m(2150, -2), 21.5);
    assert_eq!(m(80, 0), 80.0);
    assert_eq!(m(12, 3), 12000.0);
    assert!(m(1, i32::MIN).is_finite());
    assert!(m(i64::MAX, i32::MAX).is_infinite());
}

// Races with other writers of the store: each of these lost the newest login before the store
// contract had versions and compare-and-swap.

fn invalid_refresh_token() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(
        r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
    )
}

/// A login made in another program.
async fn login_elsewhere(
    client: Client,
    store: Arc<MemoryStore>,
    access: &str,
    refresh: &str,
    scopes: &str,
) {
    let mut creds = credentials(access, refresh, Utc::now() + TimeDelta::hours(3));
    creds.scopes = scopes.parse().unwrap();
    let login = Authorized::from_credentials(&client, creds);
    Session::start(login, store).await.unwrap();
}

/// A session whose token is due, and a call that refreshes it while Withings takes a second to
/// give `answer`; `meanwhile` (another program's write) runs as soon as the refresh request has
/// reached Withings. Returns the call's outcome, the session and the store.
async fn refresh_racing<F, Fut>(
    server: &MockServer,
    answer: ResponseTemplate,
    meanwhile: F,
) -> (Result<AccessToken, SessionError>, Session, Arc<MemoryStore>)
where
    F: FnOnce(Client, Arc<MemoryStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    refresh_with("old-refresh")
        .respond_with(answer.set_delay(Duration::from_secs(1)))
        .expect(1)
        .mount(server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let session = session(server, store.clone(), TimeDelta::minutes(1)).await;
    let refreshing = tokio::spawn({
        let session = session.clone();
        async move { session.access_token().await }
    });
    // Not a fixed pause: on a loaded machine the refresh may not have read the store yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never reached Withings"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    meanwhile(client(server), store.clone()).await;
    (refreshing.await.unwrap(), session, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_saved_during_a_refresh_that_fails_is_kept_and_adopted() {
    let server = MockServer::start().await;
    let (outcome, session, store) =
        refresh_racing(&server, invalid_refresh_token(), |client, store| {
            login_elsewhere(
                client,
                store,
                "login-access",
                "login-refresh",
                "user.metrics",
            )
        })
        .await;
    let token = outcome.expect("the new login is adopted");
    assert_eq!(token.expose_secret(), "login-access");
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("login-refresh"),
        "the fresh login survives the failed refresh"
    );
    assert!(!session.status().login_required);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_refresh_is_not_undone() {
    let server = MockServer::start().await;
    let answer = token_answer("new-access", "new-refresh");
    let (outcome, _, store) = refresh_racing(&server, answer, |_, store| async move {
        // `withings-oauth logout` in another process.
        let stored = store.load(USER).await.unwrap().unwrap();
        store
            .delete(USER, Expected::Version(stored.version))
            .await
            .unwrap();
    })
    .await;
    let err = outcome.unwrap_err();
    assert!(err.login_required(), "{err:?}");
    assert!(
        store.load(USER).await.unwrap().is_none(),
        "the refresh did not save the user back"
    );
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_more_scopes_saved_during_a_refresh_is_not_replaced() {
    let server = MockServer::start().await;
    let answer = token_answer("refreshed-access", "refreshed-refresh");
    let (outcome, session, store) = refresh_racing(&server, answer, |client, store| {
        login_elsewhere(
            client,
            store,
            "wider-access",
            "wider-refresh",
            "user.metrics,user.activity",
        )
    })
    .await;
    let token = outcome.unwrap();
    assert_eq!(
        token.expose_secret(),
        "wider-access",
        "the refreshed pair was dropped unused"
    );
    assert_eq!(
        stored_refresh_token(store.as_ref()).await.as_deref(),
        Some("wider-refresh")
    );
    assert!(session.status().scopes.contains(&crate::Scope::Activity));
    server.verify().await;
}

#[tokio::test]
async fn a_stale_read_never_makes_the_session_go_back_to_an_older_pair() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("access-2", "refresh-2"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    // Withings' answer to the rotated-away token, had the session gone back to it.
    refresh_with("old-refresh")
        .respond_with(invalid_refresh_token())
        .expect(0)
        .mount(&server)
        .await;
    refresh_with("refresh-2")
        .respond_with(token_answer("access-3", "refresh-3"))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(crate::store::testing::StaleReads::new(MemoryStore::new()));
    let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "access-2"
    );

    // A cache or a lagging replica serves the entry before that refresh, once.
    store.serve_stale_once(USER);
    session.refresh().await.unwrap();
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "access-3"
    );
    assert_eq!(
        stored_refresh_token(store.inner()).await.as_deref(),
        Some("refresh-3"),
        "the newest pair is stored, not \"login required\""
    );
    server.verify().await;
}

#[test]
fn a_refresh_stopped_by_its_runtime_shutting_down_does_not_leave_the_session_stuck() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, store, session) = main.block_on(async {
        let server = MockServer::start().await;
        refresh_with("old-refresh")
            .respond_with(
                token_answer("new-access", "new-refresh").set_delay(Duration::from_millis(800)),
            )
            .mount(&server)
            .await;
        let store = Arc::new(MemoryStore::new());
        let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
        (server, store, session)
    });

    // A second runtime starts the refresh and shuts down while Withings' answer is on its way:
    // the refresh task is dropped after the login left the slot.
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = session.clone();
    other.block_on(async move {
        let _ = tokio::time::timeout(Duration::from_millis(200), started.access_token()).await;
    });
    drop(other);

    main.block_on(async {
        assert!(!session.status().login_required);
        let token = session
            .access_token()
            .await
            .expect("the session recovers from the store");
        assert_eq!(token.expose_secret(), "new-access");
        assert_eq!(
            stored_refresh_token(store.as_ref()).await.as_deref(),
            Some("new-refresh")
        );
        drop(server);
    });
}

#[tokio::test]
async fn a_token_issued_with_no_lifetime_is_not_refreshed_on_every_call() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer_lasting("brief-access", "brief-refresh", 0))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryStore::new());
    let session = session(&server, store.clone(), TimeDelta::minutes(1)).await;
    for _ in 0..10 {
        let token = session.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), "brief-access");
    }
    let lifetime = session.status().expires_at - Utc::now();
    assert!(
        lifetime > TimeDelta::seconds(50) && lifetime <= TimeDelta::seconds(60),
        "used for the minimum lifetime: {lifetime}"
    );
    server.verify().await;
}

#[tokio::test]
async fn fresh_token_answers_without_a_request_and_says_none_when_a_refresh_is_due() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth2"))
        .respond_with(token_answer("x", "y"))
        .expect(0)
        .mount(&server)
        .await;
    let fresh = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    assert_eq!(fresh.fresh_token().unwrap().expose_secret(), "old-access");
    let due = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
    assert!(due.fresh_token().is_none());
    server.verify().await;
}

#[tokio::test]
async fn fresh_token_until_hands_out_the_token_until_the_moment_the_session_refreshes() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    // On the system clock: the margin and the cheap clock's tick before the expiry.
    let system = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3)).await;
    let (token, from) = system.fresh_token_until().unwrap();
    assert_eq!(token.expose_secret(), "old-access");
    let expires = system.status().expires_at.timestamp_micros();
    let margin = DEFAULT_MARGIN.num_microseconds().unwrap();
    assert_eq!(
        from.timestamp_micros(),
        expires - margin - system_resolution_micros()
    );

    // On a clock of its own: fresh up to the microsecond before, due from it on, as
    // `access_token` decides.
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::hours(3))
        .await
        .with_clock(clock.clone());
    // (In whole microseconds: the session compares those.)
    let due_at =
        |session: &Session| (session.status().expires_at - DEFAULT_MARGIN).timestamp_micros();
    let (_, from) = session.fresh_token_until().unwrap();
    assert_eq!(from.timestamp_micros(), due_at(&session));
    clock.advance(from - clock.now() - TimeDelta::microseconds(1));
    assert_eq!(
        session.fresh_token_until().unwrap().0.expose_secret(),
        "old-access"
    );
    clock.advance(TimeDelta::microseconds(1));
    assert!(session.fresh_token_until().is_none());
    assert!(session.fresh_token().is_none());
    assert_eq!(
        session.access_token().await.unwrap().expose_secret(),
        "new-access"
    );
    let (token, from) = session.fresh_token_until().unwrap();
    assert_eq!(token.expose_secret(), "new-access");
    assert_eq!(from.timestamp_micros(), due_at(&session));
    server.verify().await;
}

#[tokio::test]
async fn fresh_token_until_says_none_once_the_login_is_dead_and_halves_a_short_life() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer_lasting("brief-access", "brief-refresh", 0))
        .expect(1)
        .mount(&server)
        .await;
    refresh_with("brief-refresh")
        .respond_with(invalid_refresh_token())
        .expect(1)
        .mount(&server)
        .await;
    let session = session(&server, Arc::new(MemoryStore::new()), TimeDelta::minutes(1)).await;
    assert!(session.fresh_token_until().is_none());
    session.access_token().await.unwrap();
    // A token issued to live a minute is due at half its life, not 5 minutes before its end.
    let (token, from) = session.fresh_token_until().unwrap();
    assert_eq!(token.expose_secret(), "brief-access");
    let left = session.status().expires_at - from;
    assert!(
        left > TimeDelta::seconds(25) && left <= TimeDelta::seconds(30),
        "due {left} before the end"
    );
    session.refresh().await.unwrap_err();
    assert!(session.status().login_required);
    assert!(session.fresh_token_until().is_none());
    server.verify().await;
}

#[tokio::test]
async fn the_before_request_hook_runs_before_every_token_and_data_call() {
    let server = MockServer::start().await;
    refresh_with("old-refresh")
        .respond_with(token_answer("new-access", "new-refresh"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/measure"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":0,"body":{"updatetime":1700000100,"timezone":"Europe/Paris","more":0,"offset":0,"measuregrps":[]}}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let passed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hook: crate::config::BeforeRequest = {
        let (gate, passed) = (gate.clone(), passed.clone());
        Arc::new(move || {
            let (gate, passed) = (gate.clone(), passed.clone());
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
    };
    let client = Client::builder()
        .client_id("cid")
        .client_secret("csecret")
        .redirect_uri("https://app.example.com/cb")
        .base_url(server.uri().parse().unwrap())
        .before_request(hook)
        .build()
        .unwrap();
    let authorized = Authorized::from_credentials(
        &client,
        credentials(
            "old-access",
            "old-refresh",
            Utc::now() + TimeDelta::minutes(1),
        ),
    );
    let session = Session::start(authorized, Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    let call = tokio::spawn({
        let session = session.clone();
        async move { session.get_meas(&GetMeas::new()).await }
    });
    // Held at the hook: nothing reaches Withings until it lets the call through.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(server.received_requests().await.unwrap().is_empty());
    gate.add_permits(2);
    call.await.unwrap().unwrap();
    assert_eq!(passed.load(std::sync::atomic::Ordering::SeqCst), 2);
    server.verify().await;
}
