//! `POST /measure` (`action=getmeas`): a fixed set of fake measurements behind a bearer token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::Shared;
use crate::wire::{self, Reject, error_text};

/// The scope `getmeas` needs.
const SCOPE: &str = "user.metrics";

/// `POST /measure`.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let params = match wire::read_params(parts.uri.query(), body).await {
        Ok(p) => p,
        Err(reject) => return reject.into_response(),
    };
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The auth scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    let token = bearer.or_else(|| params.get("access_token"));

    let now = shared.clock.now();
    let mut inner = shared.lock();
    // Rate limit by the token's client before the token is marked used.
    if let Some(client) = token
        .and_then(|t| inner.access.get(t))
        .map(|a| a.client_id.clone())
        && !inner.rate_limit_allows(&client, now)
    {
        return Reject::new(601, error_text::TOO_MANY_REQUESTS).into_response();
    }
    inner.counters.measure += 1;
    let Some((_, scopes)) = token.and_then(|t| inner.use_access(t, now)) else {
        inner.counters.measure_rejected += 1;
        return Reject::new(401, error_text::INVALID_TOKEN).into_response();
    };
    drop(inner);
    if !scopes.iter().any(|s| s == SCOPE) {
        return Reject::new(401, error_text::INSUFFICIENT_SCOPE).into_response();
    }
    match params.get("action") {
        Some("getmeas") => wire::ok(measurements(crate::clock::unix_secs(now))),
        Some(_) => Reject::invalid(error_text::INVALID_ACTION).into_response(),
        None => Reject::missing("action").into_response(),
    }
}

/// Three measure groups: weight, fat ratio, blood pressure with pulse.
fn measurements(now: u64) -> Value {
    let group = |grpid: u64, date: u64, measures: Value| {
        json!({
            "grpid": grpid,
            "attrib": 0,
            "date": date,
            "created": date + 60,
            "modified": date + 60,
            "category": 1,
            "deviceid": null,
            "hash_deviceid": null,
            "measures": measures,
        })
    };
    json!({
        "updatetime": now,
        "timezone": "Europe/Paris",
        "measuregrps": [
            group(5_000_001, 1_700_000_000, json!([
                { "value": 72_345, "type": 1, "unit": -3 },
            ])),
            group(5_000_002, 1_700_000_000, json!([
                { "value": 2_150, "type": 6, "unit": -2 },
            ])),
            group(5_000_003, 1_700_086_400, json!([
                { "value": 80, "type": 9, "unit": 0 },
                { "value": 121, "type": 10, "unit": 0 },
                { "value": 64, "type": 11, "unit": 0 },
            ])),
        ],
        "more": 0,
        "offset": 0,
    })
}
