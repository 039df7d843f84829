//! The admin HTTP API under `/admin/`, served only with
//! [`SandboxConfig::admin_api`](crate::SandboxConfig::admin_api) (`--admin` on the command
//! line): what [`SandboxHandle`](crate::SandboxHandle) does, for tests written in any
//! language. Plain JSON in and out with HTTP status codes, not Withings' envelope: it is the
//! sandbox's own API.
//!
//! It hands out tokens in clear: a test tool, never to be exposed beyond the loopback.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::unix_secs;
use crate::config::User;
use crate::data::NewMeasure;
use crate::fault::{Endpoint, Fault};
use crate::state::Shared;
use crate::wire::LogTag;
use crate::{NUMBERED_USERID_BASE, notify};

/// Most logins one `POST /admin/logins` mints.
const MAX_LOGINS: u32 = 10_000;
/// Longest delay a `delay` fault may ask for.
const MAX_DELAY: Duration = Duration::from_secs(600);

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        .route("/logins", post(logins))
        .route("/measures", post(measures))
        .route("/clock", get(clock).post(advance_clock))
        .route("/faults", post(inject_fault).delete(clear_faults))
        .route("/settings", post(settings))
        .route("/subscriptions", get(subscriptions))
}

/// A refusal: HTTP 400 (or another status) with `{"error": "..."}`.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn answer(action: &str, result: Result<Value, Refusal>) -> Response {
    let mut response = match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(refusal) => refusal.into_response(),
    };
    response.extensions_mut().insert(LogTag {
        action: Some(format!("admin {action}")),
        userid: None,
    });
    response
}

/// The JSON body, an empty body counting as `{}`. The error names the problem, never the
/// body.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Refusal> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        Refusal::bad(format!(
            "the body must be a JSON object of the documented fields (line {}, column {}: {})",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Data => "a field is unknown or of the wrong type",
                _ => "not valid JSON",
            }
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersQuery {
    #[serde(default)]
    users: bool,
    userid: Option<u64>,
}

/// `GET /admin/counters`: the totals; `?users=true` adds the per-user refresh counters,
/// `?userid=N` answers one user's.
async fn counters(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<CountersQuery>, QueryRejection>,
) -> Response {
    let result = (|| {
        let Ok(Query(query)) = query else {
            return Err(Refusal::bad("the query takes users=true or userid=N"));
        };
        let counters = shared.lock().counters.clone();
        if let Some(userid) = query.userid {
            return serde_json::to_value(counters.user(userid))
                .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        }
        let mut value = serde_json::to_value(&counters)
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if !query.users
            && let Some(map) = value.as_object_mut()
        {
            map.remove("users");
        }
        Ok(value)
    })();
    answer("counters", result)
}

async fn reset_counters(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().counters = crate::Counters::default();
    answer("counters reset", Ok(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginsRequest {
    /// How many numbered users, from `first`.
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one")]
    first: u32,
    client_id: Option<String>,
    /// Comma-separated; default every scope.
    scope: Option<String>,
    /// Lifetime of the access tokens in seconds; default the configured one. 0: expired.
    expires_in: Option<u64>,
    /// `json` (default) or `store`: the CLI's credential store file.
    format: Option<String>,
}

fn one() -> u32 {
    1
}

/// `POST /admin/logins`: numbered users `first..first+count`, added if missing, each with a
/// fresh login.
async fn logins(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let result = (|| {
        let request: LoginsRequest = body(&bytes)?;
        if request.count == 0 || request.count > MAX_LOGINS {
            return Err(Refusal::bad(format!("count must be 1 to {MAX_LOGINS}")));
        }
        let last = request
            .first
            .checked_add(request.count - 1)
            .filter(|_| request.first > 0)
            .ok_or_else(|| {
                Refusal::bad("first must be 1 or more, and first + count fit in 32 bits")
            })?;
        let store = match request.format.as_deref() {
            None | Some("json") => false,
            Some("store") => true,
            Some(_) => return Err(Refusal::bad("format must be json or store")),
        };
        let now = shared.clock.now();
        let mut inner = shared.lock();
        let client_id = match request.client_id {
            Some(id) => id,
            None => inner
                .config
                .apps
                .first()
                .map(|a| a.client_id.clone())
                .ok_or_else(|| Refusal::bad("no app is registered: give client_id"))?,
        };
        let scope = request
            .scope
            .unwrap_or_else(|| crate::KNOWN_SCOPES.join(","));
        let scopes: Vec<&str> = scope.split(',').collect();
        let lifetime = request
            .expires_in
            .map_or(inner.config.access_token_lifetime, Duration::from_secs);
        let known: HashSet<u64> = inner.users.iter().map(|u| u.userid).collect();
        for i in request.first..=last {
            if !known.contains(&(NUMBERED_USERID_BASE + u64::from(i))) {
                inner.users.push(User::numbered(i));
            }
        }
        let mut minted = Vec::with_capacity(request.count as usize);
        for i in request.first..=last {
            let userid = NUMBERED_USERID_BASE + u64::from(i);
            let tokens = inner
                .issue_tokens(userid, &client_id, &scopes, lifetime, now)
                .map_err(|e| Refusal::bad(e.to_string()))?;
            minted.push(tokens);
        }
        drop(inner);
        if store {
            return Ok(crate::issue::store_file(&minted));
        }
        let logins: Vec<Value> = minted
            .iter()
            .map(|t| {
                json!({
                    "userid": t.userid,
                    "access_token": t.access_token,
                    "refresh_token": t.refresh_token,
                    "expires_in": t.expires_in,
                    "expires_at": unix_secs(t.expires_at),
                    "scope": t.scopes.join(","),
                })
            })
            .collect();
        Ok(json!({ "client_id": client_id, "logins": logins }))
    })();
    answer("logins", result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureIn {
    #[serde(rename = "type")]
    measure_type: i64,
    value: i64,
    #[serde(default)]
    unit: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasuresRequest {
    userid: u64,
    /// Unix seconds; default the sandbox's present.
    date: Option<u64>,
    measures: Vec<MeasureIn>,
}

/// `POST /admin/measures`: a new measure group, which notifies subscribed callbacks.
async fn measures(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let result = (|| {
        let request: MeasuresRequest = body(&bytes)?;
        let now = i64::try_from(unix_secs(shared.clock.now())).unwrap_or(i64::MAX);
        let date = request
            .date
            .map_or(Ok(now), i64::try_from)
            .map_err(|_| Refusal::bad("date must be unix seconds up to 2^63 - 1"))?;
        let measures: Vec<NewMeasure> = request
            .measures
            .iter()
            .map(|m| NewMeasure::new(m.measure_type, m.value, m.unit))
            .collect();
        let (grpid, appli) = notify::add_measures(&shared, request.userid, date, &measures)
            .map_err(|e| Refusal::bad(e.to_string()))?;
        Ok(json!({ "grpid": grpid, "appli": appli }))
    })();
    answer("measures", result)
}

async fn clock(State(shared): State<Arc<Shared>>) -> Response {
    answer("clock", Ok(json!({ "now": unix_secs(shared.clock.now()) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    /// Seconds to move the clock forward.
    advance: u64,
}

/// `POST /admin/clock`: moves the clock forward.
async fn advance_clock(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let result = body::<ClockRequest>(&bytes).map(|request| {
        shared.clock.advance(Duration::from_secs(request.advance));
        json!({ "now": unix_secs(shared.clock.now()) })
    });
    answer("clock", result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: String,
    /// `delay`, `drop`, `http500`, `html`, `malformed` or `601`.
    fault: String,
    #[serde(default = "one")]
    times: u32,
    /// Requests let through first: the fault hits request `after + 1`.
    #[serde(default)]
    after: u32,
    /// For `delay`.
    delay_ms: Option<u64>,
}

/// `POST /admin/faults`.
async fn inject_fault(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let result = (|| {
        let request: FaultRequest = body(&bytes)?;
        let endpoint = Endpoint::parse(&request.endpoint).ok_or_else(|| {
            Refusal::bad("endpoint must be a served path (v2/oauth2, measure, v2/sleep, ...)")
        })?;
        let fault = match request.fault.as_str() {
            "delay" => {
                let ms = request
                    .delay_ms
                    .ok_or_else(|| Refusal::bad("a delay fault needs delay_ms"))?;
                let by = Duration::from_millis(ms);
                if by > MAX_DELAY {
                    return Err(Refusal::bad("delay_ms must be at most 600000"));
                }
                Fault::Delay(by)
            }
            "drop" => Fault::DropConnection,
            "http500" => Fault::Http500,
            "malformed" => Fault::MalformedBody,
            "html" => Fault::HtmlPage,
            "601" => Fault::TooManyRequests,
            _ => {
                return Err(Refusal::bad(
                    "fault must be delay, drop, http500, html, malformed or 601",
                ));
            }
        };
        if request.times == 0 {
            return Err(Refusal::bad("times must be 1 or more"));
        }
        shared
            .lock()
            .faults
            .push_after(endpoint, fault, request.after, request.times);
        Ok(json!({ "endpoint": endpoint.path() }))
    })();
    answer("faults", result)
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().faults.clear();
    answer("faults clear", Ok(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    strict_rotation: Option<bool>,
    auto_approve: Option<bool>,
    /// 0 turns the limit off.
    rate_limit: Option<u32>,
    page_size: Option<usize>,
}

/// `POST /admin/settings`: the switches of a running sandbox.
async fn settings(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let result = body::<SettingsRequest>(&bytes).map(|request| {
        let mut inner = shared.lock();
        let config = &mut inner.config;
        if let Some(on) = request.strict_rotation {
            config.strict_rotation = on;
        }
        if let Some(on) = request.auto_approve {
            config.auto_approve = on;
        }
        if let Some(limit) = request.rate_limit {
            config.rate_limit = (limit > 0).then_some(limit);
        }
        if let Some(size) = request.page_size {
            config.page_size = size;
        }
        json!({
            "strict_rotation": config.strict_rotation,
            "auto_approve": config.auto_approve,
            "rate_limit": config.rate_limit.unwrap_or(0),
            "page_size": config.page_size,
        })
    });
    answer("settings", result)
}

/// `GET /admin/subscriptions`: every notification subscription.
async fn subscriptions(State(shared): State<Arc<Shared>>) -> Response {
    let all: Vec<Value> = shared
        .lock()
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "userid": s.userid,
                "client_id": s.client_id,
                "appli": s.appli,
                "callbackurl": s.callbackurl,
                "comment": s.comment,
            })
        })
        .collect();
    answer("subscriptions", Ok(json!({ "subscriptions": all })))
}
