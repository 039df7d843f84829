//! `POST /notify`: notification subscriptions (`subscribe`, `list`, `get`, `revoke`,
//! `update`) and the notifications themselves, POSTed to every subscribed callback URL when a
//! measurement is added.
//!
//! Withings calls a callback URL before accepting it and expects HTTP 200; the sandbox sends
//! it a `HEAD` request. Notifications are form POSTs with `userid`, `appli`, `startdate` and
//! `enddate` (<https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/>);
//! a callback has two seconds to answer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use url::{Host, Url};

use crate::clock::unix_secs;
use crate::data::{self, MeasureError, NewMeasure};
use crate::rotation::Grant;
use crate::state::{Inner, Shared};
use crate::wire::{self, Params, Reject, error_text};

/// How long a callback URL has to answer, at subscribe and for each notification.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Subscriptions one user may hold for one app.
const MAX_PER_USER: usize = 32;
/// The `expires` Withings lists for a subscription: it never expires.
const NEVER: i64 = 2_147_483_647;

/// A notification subscription, as
/// [`SandboxHandle::subscriptions`](crate::SandboxHandle::subscriptions) shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The user whose data it is about.
    pub userid: u64,
    /// The app that subscribed.
    pub client_id: String,
    /// Withings' notification category: 1 weight, 4 blood pressure, 16 activity, 44 sleep,
    /// 46 user actions, 50/51 bed in/out, 54 ECG, ...
    pub appli: u32,
    /// Where notifications are POSTed.
    pub callbackurl: String,
    /// The `comment` given at subscribe.
    pub comment: String,
}

/// The notification actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Subscribe,
    List,
    Get,
    Revoke,
    Update,
}

/// The scope a subscription to `appli` needs, `None` for an unknown `appli`.
fn scope_of(appli: u32) -> Option<&'static str> {
    match appli {
        1 | 2 | 4 | 54 | 55 | 58 | 62 => Some("user.metrics"),
        16 | 44 => Some("user.activity"),
        46 => Some("user.info"),
        50..=52 => Some("user.sleepevents"),
        _ => None,
    }
}

fn appli(params: &Params, required: bool) -> Result<Option<u32>, Reject> {
    match params.get("appli") {
        None if required => Err(Reject::missing("appli")),
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|a| scope_of(*a).is_some())
            .map(Some)
            .ok_or_else(|| Reject::invalid_param("appli")),
    }
}

/// Whether Withings (or the sandbox with loopback callbacks allowed) accepts `url` as a
/// callback: `https` on port 443 of a host name that is neither an IP address nor
/// `localhost`, at most 255 characters.
fn allowed(url: &str, loopback: bool) -> bool {
    let Ok(parsed) = Url::parse(url) else {
        return false;
    };
    if url.len() > 255 {
        return false;
    }
    let is_loopback = match parsed.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if loopback && is_loopback && matches!(parsed.scheme(), "http" | "https") {
        return true;
    }
    parsed.scheme() == "https"
        && parsed.port().is_none()
        && matches!(parsed.host(), Some(Host::Domain(d)) if !d.eq_ignore_ascii_case("localhost"))
}

/// The sandbox's client for callback URLs: no proxy (the sandbox is offline), no redirects,
/// and no connection kept between calls, so that none outlives the runtime it was opened on.
fn client(shared: &Shared) -> Option<reqwest::Client> {
    shared
        .callbacks
        .get_or_init(|| {
            AssertUnwindSafe(
                reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(0)
                    .timeout(CALLBACK_TIMEOUT)
                    .build()
                    .ok(),
            )
        })
        .0
        .clone()
}

/// Whether `url` answers a `HEAD` request with HTTP 200.
async fn answers_200(shared: &Shared, url: &str) -> bool {
    let Some(client) = client(shared) else {
        return false;
    };
    client
        .head(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// A notification action, for the user and app of `grant`.
pub(crate) async fn handle(
    shared: &Shared,
    action: Action,
    grant: &Grant,
    params: &Params,
) -> Response {
    let answer = match action {
        Action::Subscribe => subscribe(shared, grant, params).await,
        Action::List => list(&shared.lock(), grant, params),
        Action::Get => get(&shared.lock(), grant, params),
        Action::Revoke => revoke(&mut shared.lock(), grant, params),
        Action::Update => update(shared, grant, params).await,
    };
    match answer {
        Ok(body) => wire::ok(body),
        Err(reject) => reject.into_response(),
    }
}

async fn subscribe(shared: &Shared, grant: &Grant, params: &Params) -> Result<Value, Reject> {
    let url = params.require("callbackurl")?.to_owned();
    let Some(appli) = appli(params, true)? else {
        return Err(Reject::missing("appli"));
    };
    if !scope_of(appli).is_some_and(|s| grant.has(s)) {
        return Err(Reject::new(401, error_text::INSUFFICIENT_SCOPE));
    }
    check_callback(shared, &url).await?;
    let comment = params.get("comment").unwrap_or_default().to_owned();
    let mut inner = shared.lock();
    let subscriptions = &mut inner.subscriptions;
    subscriptions.retain(|s| {
        !(s.userid == grant.userid
            && s.client_id == grant.client_id
            && s.appli == appli
            && s.callbackurl == url)
    });
    let held = subscriptions
        .iter()
        .filter(|s| s.userid == grant.userid && s.client_id == grant.client_id)
        .count();
    if held >= MAX_PER_USER {
        return Err(Reject::new(293, error_text::INVALID_CALLBACK));
    }
    subscriptions.push(Subscription {
        userid: grant.userid,
        client_id: grant.client_id.clone(),
        appli,
        callbackurl: url,
        comment,
    });
    tracing::debug!(userid = grant.userid, appli, "notification subscribed");
    Ok(json!({}))
}

/// A callback URL Withings accepts (see [`allowed`]) and that answers HTTP 200.
async fn check_callback(shared: &Shared, url: &str) -> Result<(), Reject> {
    let loopback = shared.lock().config.loopback_notify;
    if allowed(url, loopback) && answers_200(shared, url).await {
        Ok(())
    } else {
        Err(Reject::new(293, error_text::INVALID_CALLBACK))
    }
}

/// `update`: a subscription's callback URL and `appli` (`new_callbackurl` and `new_appli`),
/// or its `comment`.
async fn update(shared: &Shared, grant: &Grant, params: &Params) -> Result<Value, Reject> {
    let url = params.require("callbackurl")?.to_owned();
    let Some(appli) = appli(params, true)? else {
        return Err(Reject::missing("appli"));
    };
    let is_it = |s: &Subscription| {
        s.userid == grant.userid
            && s.client_id == grant.client_id
            && s.callbackurl == url
            && s.appli == appli
    };
    if !shared.lock().subscriptions.iter().any(is_it) {
        return Err(Reject::new(294, error_text::NO_SUCH_SUBSCRIPTION));
    }
    let change = match (params.get("new_callbackurl"), params.get("comment")) {
        (Some(new_url), _) => {
            let new_appli = match params.get("new_appli") {
                None => return Err(Reject::missing("new_appli")),
                Some(raw) => raw
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|a| scope_of(*a).is_some())
                    .ok_or_else(|| Reject::invalid_param("new_appli"))?,
            };
            if !scope_of(new_appli).is_some_and(|s| grant.has(s)) {
                return Err(Reject::new(401, error_text::INSUFFICIENT_SCOPE));
            }
            check_callback(shared, new_url).await?;
            Change::Target(new_url.to_owned(), new_appli)
        }
        (None, Some(comment)) => Change::Comment(comment.to_owned()),
        (None, None) => return Err(Reject::missing("new_callbackurl")),
    };
    let mut inner = shared.lock();
    // "If multiple subscriptions were made for a given user, callbackurl and appli, only one
    // of the subscriptions will be updated."
    let Some(found) = inner.subscriptions.iter_mut().find(|s| is_it(s)) else {
        return Err(Reject::new(294, error_text::NO_SUCH_SUBSCRIPTION));
    };
    match change {
        Change::Target(new_url, new_appli) => {
            found.callbackurl = new_url;
            found.appli = new_appli;
        }
        Change::Comment(comment) => found.comment = comment,
    }
    Ok(json!({}))
}

/// What `update` changes.
enum Change {
    Target(String, u32),
    Comment(String),
}

fn mine<'a>(inner: &'a Inner, grant: &'a Grant) -> impl Iterator<Item = &'a Subscription> + 'a {
    inner
        .subscriptions
        .iter()
        .filter(|s| s.userid == grant.userid && s.client_id == grant.client_id)
}

fn profile(s: &Subscription) -> Value {
    json!({
        "appli": s.appli,
        "callbackurl": s.callbackurl,
        "comment": s.comment,
        "expires": NEVER,
    })
}

fn list(inner: &Inner, grant: &Grant, params: &Params) -> Result<Value, Reject> {
    let appli = appli(params, false)?;
    let profiles: Vec<Value> = mine(inner, grant)
        .filter(|s| appli.is_none_or(|a| s.appli == a))
        .map(profile)
        .collect();
    Ok(json!({ "profiles": profiles }))
}

fn get(inner: &Inner, grant: &Grant, params: &Params) -> Result<Value, Reject> {
    let url = params.require("callbackurl")?;
    // "If no appli is specified, appli=1 will be considered."
    let appli = appli(params, false)?.unwrap_or(1);
    mine(inner, grant)
        .find(|s| s.callbackurl == url && s.appli == appli)
        .map(|s| json!({ "appli": s.appli, "callbackurl": s.callbackurl, "comment": s.comment }))
        .ok_or_else(|| Reject::new(294, error_text::NO_SUCH_SUBSCRIPTION))
}

fn revoke(inner: &mut Inner, grant: &Grant, params: &Params) -> Result<Value, Reject> {
    let url = params.require("callbackurl")?.to_owned();
    let appli = appli(params, false)?;
    let before = inner.subscriptions.len();
    inner.subscriptions.retain(|s| {
        !(s.userid == grant.userid
            && s.client_id == grant.client_id
            && s.callbackurl == url
            && appli.is_none_or(|a| s.appli == a))
    });
    if inner.subscriptions.len() == before {
        return Err(Reject::new(294, error_text::NO_SUCH_SUBSCRIPTION));
    }
    Ok(json!({}))
}

/// Adds a measure group taken at `date` (unix seconds) for `userid` and notifies the
/// callbacks subscribed to its `appli`: what
/// [`SandboxHandle::add_measures`](crate::SandboxHandle::add_measures) and
/// `POST /admin/measures` do. Returns its `grpid` and `appli`.
pub(crate) fn add_measures(
    shared: &Arc<Shared>,
    userid: u64,
    date: i64,
    measures: &[NewMeasure],
) -> Result<(u64, u32), MeasureError> {
    let now = i64::try_from(unix_secs(shared.clock.now())).unwrap_or(i64::MAX);
    let grpid = shared.lock().add_measures(userid, date, measures, now)?;
    let appli = data::appli_of(measures);
    deliver(shared, userid, appli, date.min(now), date.max(now));
    Ok((grpid, appli))
}

/// POSTs a notification of `appli` for `userid` to every subscribed callback URL, in tasks of
/// their own on the sandbox's runtime; the outcome is counted. The fields are `userid`,
/// `appli`, `startdate` and `enddate`.
fn deliver(shared: &Arc<Shared>, userid: u64, appli: u32, start: i64, end: i64) {
    let urls: Vec<String> = shared
        .lock()
        .subscriptions
        .iter()
        .filter(|s| s.userid == userid && s.appli == appli)
        .map(|s| s.callbackurl.clone())
        .collect();
    let (Some(runtime), Some(client)) = (shared.runtime.as_ref(), client(shared)) else {
        return;
    };
    for url in urls {
        let shared = shared.clone();
        let client = client.clone();
        let form = [
            ("userid", userid.to_string()),
            ("appli", appli.to_string()),
            ("startdate", start.to_string()),
            ("enddate", end.to_string()),
        ];
        runtime.spawn(async move {
            let delivered = client
                .post(&url)
                .form(&form)
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            let mut inner = shared.lock();
            if delivered {
                inner.counters.notifications_sent += 1;
            } else {
                inner.counters.notifications_failed += 1;
                tracing::info!(userid, appli, "notification not acknowledged with HTTP 200");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_must_be_https_on_a_host_name_unless_loopback_is_allowed() {
        assert!(allowed("https://app.example.com/withings/notify", false));
        assert!(!allowed("https://app.example.com:8443/notify", false));
        assert!(!allowed("http://app.example.com/notify", false));
        assert!(!allowed("https://192.0.2.1/notify", false));
        assert!(!allowed("https://localhost/notify", false));
        assert!(!allowed("http://127.0.0.1:9000/notify", false));
        assert!(allowed("http://127.0.0.1:9000/notify", true));
        assert!(allowed("http://[::1]:9000/notify", true));
        assert!(!allowed("http://192.0.2.1:9000/notify", true));
        assert!(!allowed("not a url", true));
        let long = format!("https://app.example.com/{}", "a".repeat(255));
        assert!(!allowed(&long, false));
    }

    #[test]
    fn every_appli_needs_its_scope() {
        assert_eq!(scope_of(1), Some("user.metrics"));
        assert_eq!(scope_of(16), Some("user.activity"));
        assert_eq!(scope_of(44), Some("user.activity"));
        assert_eq!(scope_of(50), Some("user.sleepevents"));
        assert_eq!(scope_of(3), None);
    }
}
