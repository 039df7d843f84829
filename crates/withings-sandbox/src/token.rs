//! `POST /v2/oauth2`: `requesttoken` (code exchange and refresh), `revoke`, `getdemoaccess`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::{Inner, Pair, Shared, random_token};
use crate::wire::{self, LogTag, Params, Reject, error_text};
use crate::{DEMO_USERID, signature};

/// `POST /v2/oauth2`.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let params = match wire::read_params(parts.uri.query(), body).await {
        Ok(params) => params,
        Err(reject) => return reject.into_response(),
    };
    // Only known names reach the log: a parameter's value could be anything, a token included.
    let action = params
        .get("action")
        .map(|action| match (action, params.get("grant_type")) {
            ("requesttoken", Some(g @ ("authorization_code" | "refresh_token"))) => {
                format!("requesttoken {g}")
            }
            ("requesttoken" | "revoke" | "getdemoaccess", _) => action.to_owned(),
            _ => "(unknown)".to_owned(),
        });
    let mut tag = LogTag {
        action,
        userid: None,
    };
    let agent = crate::ledger::agent(&parts.headers);
    let mut response = dispatch(&shared, &params, agent, &mut tag).into_response();
    response.extensions_mut().insert(tag);
    response
}

/// Answers the request; puts the user it acted for in `tag`.
fn dispatch(
    shared: &Shared,
    params: &Params,
    agent: &str,
    tag: &mut LogTag,
) -> Result<Response, Reject> {
    let action = params.require("action")?;
    let client_id = params.require("client_id")?;
    let now = shared.clock.now();
    let mut inner = shared.lock();
    if inner.ledger.is_some() {
        agent.clone_into(&mut inner.agent);
    }
    if !inner.rate_limit_allows(client_id, now) {
        return Err(Reject::new(601, error_text::TOO_MANY_REQUESTS));
    }
    match action {
        "requesttoken" => requesttoken(&mut inner, params, client_id, now, tag),
        "revoke" => {
            inner.counters.revoke += 1;
            signature::verify_signed(&mut inner, params, action, client_id, now)?;
            let userid = params
                .require("userid")?
                .parse::<u64>()
                .map_err(|_| Reject::invalid(error_text::INVALID_USERID))?;
            tag.userid = Some(userid);
            inner.revoke(client_id, userid, now);
            tracing::debug!(client_id, userid, "tokens revoked");
            Ok(wire::ok(json!({})))
        }
        "getdemoaccess" => {
            inner.counters.demo_access += 1;
            signature::verify_signed(&mut inner, params, action, client_id, now)?;
            let scopes = wire::parse_scopes(params.require("scope_oauth2")?)
                .ok_or_else(|| Reject::invalid(error_text::INVALID_SCOPE))?;
            let pair = inner.issue_pair(client_id, DEMO_USERID, scopes, None, now);
            tag.userid = Some(pair.userid);
            // Withings documents only the three token fields; `userid` is added so that a
            // client can store the demo grant like any other.
            Ok(wire::ok(json!({
                "userid": pair.userid,
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in": pair.expires_in,
            })))
        }
        _ => Err(Reject::invalid(error_text::INVALID_ACTION)),
    }
}

fn requesttoken(
    inner: &mut Inner,
    params: &Params,
    client_id: &str,
    now: SystemTime,
    tag: &mut LogTag,
) -> Result<Response, Reject> {
    let grant_type = params.require("grant_type")?;
    match grant_type {
        "authorization_code" => inner.counters.token_code += 1,
        "refresh_token" => inner.counters.token_refresh += 1,
        _ => return Err(Reject::invalid(error_text::INVALID_GRANT_TYPE)),
    }
    authenticate(inner, params, client_id, now)?;
    if grant_type == "authorization_code" {
        let code = params.require("code")?;
        let redirect_uri = params.require("redirect_uri")?;
        // A code is consumed only by a successful exchange: a request with the wrong client
        // or redirect_uri is refused without burning it (it dies 30 s later anyway).
        let granted = inner.codes.get(code).filter(|c| {
            c.client_id == client_id && c.redirect_uri == redirect_uri && c.expires_at > now
        });
        let Some(granted) = granted.cloned() else {
            inner.counters.code_rejected += 1;
            return Err(Reject::invalid(error_text::INVALID_CODE));
        };
        inner.codes.remove(code);
        let pair = inner.issue_pair(client_id, granted.userid, granted.scopes, None, now);
        inner.counters.count_code_granted(pair.userid);
        tag.userid = Some(pair.userid);
        // The code exchange answers `userid` as a string...
        Ok(token_body(&pair, json!(pair.userid.to_string())))
    } else {
        let refresh_token = params.require("refresh_token")?;
        let Some(pair) = inner.rotate(refresh_token, client_id, now) else {
            inner.counters.refresh_rejected += 1;
            return Err(Reject::invalid(error_text::INVALID_REFRESH_TOKEN));
        };
        tag.userid = Some(pair.userid);
        // ...and a refresh answers it as a number, as Withings does.
        Ok(token_body(&pair, json!(pair.userid)))
    }
}

/// `client_secret`, or a signature over `action,client_id,nonce`.
fn authenticate(
    inner: &mut Inner,
    params: &Params,
    client_id: &str,
    now: SystemTime,
) -> Result<(), Reject> {
    if let Some(secret) = params.get("client_secret") {
        return match inner.apps.get(client_id) {
            Some(app) if app.client_secret == secret => Ok(()),
            _ => Err(Reject::invalid(error_text::INVALID_CLIENT)),
        };
    }
    if params.get("signature").is_some() || params.get("nonce").is_some() {
        return signature::verify_signed(inner, params, "requesttoken", client_id, now);
    }
    Err(Reject::invalid(error_text::INVALID_CLIENT))
}

fn token_body(pair: &Pair, userid: Value) -> Response {
    wire::ok(json!({
        "userid": userid,
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "scope": pair.scopes.join(","),
        "csrf_token": random_token(),
        "token_type": "Bearer",
    }))
}
