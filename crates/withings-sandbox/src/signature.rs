//! `POST /v2/signature` (`getnonce`) and the check behind every signed call.
//!
//! Withings' signature: lowercase hex HMAC-SHA256, keyed by the client secret, over the
//! *values* of the signed parameters sorted by parameter name and joined with commas
//! (<https://developer.withings.com/api-reference/#tag/signature>).

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::state::{Inner, Shared};
use crate::wire::{self, Params, Reject, error_text};

/// How far a `getnonce` timestamp may be from the sandbox clock. Withings does not document
/// its tolerance; ten minutes is the sandbox's guess.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 600;

/// Lowercase hex HMAC-SHA256 of `values` joined with commas.
pub(crate) fn sign(secret: &str, values: &[&str]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(values.join(",").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a signed call (`action`, `client_id`, `nonce`, `signature`) and consumes its nonce.
///
/// Order: unknown client, then signature, then nonce, so that a wrong signature never burns
/// a good nonce.
pub(crate) fn verify_signed(
    inner: &mut Inner,
    params: &Params,
    action: &str,
    client_id: &str,
    now: SystemTime,
) -> Result<(), Reject> {
    let nonce = params.require("nonce")?;
    let signature = params.require("signature")?;
    let Some(app) = inner.apps.get(client_id) else {
        return Err(Reject::invalid(error_text::INVALID_CLIENT));
    };
    if sign(&app.client_secret, &[action, client_id, nonce]) != signature {
        return Err(Reject::invalid(error_text::INVALID_SIGNATURE));
    }
    if !inner.take_nonce(nonce, client_id, now) {
        return Err(Reject::invalid(error_text::INVALID_NONCE));
    }
    Ok(())
}

/// `POST /v2/signature`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    req: Request,
) -> Result<Response, Reject> {
    let (parts, body) = req.into_parts();
    let params = wire::read_params(parts.uri.query(), body).await?;
    getnonce(&shared, &params, crate::ledger::agent(&parts.headers))
}

fn getnonce(shared: &Shared, params: &Params, agent: &str) -> Result<Response, Reject> {
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
    if action != "getnonce" {
        return Err(Reject::invalid(error_text::INVALID_ACTION));
    }
    inner.counters.getnonce += 1;
    let timestamp = params.require("timestamp")?;
    let signature = params.require("signature")?;
    let Some(app) = inner.apps.get(client_id) else {
        return Err(Reject::invalid(error_text::INVALID_CLIENT));
    };
    if sign(&app.client_secret, &[action, client_id, timestamp]) != signature {
        return Err(Reject::invalid(error_text::INVALID_SIGNATURE));
    }
    let clock = crate::clock::unix_secs(now);
    match timestamp.parse::<u64>() {
        Ok(t) if t.abs_diff(clock) <= TIMESTAMP_TOLERANCE_SECS => {}
        _ => return Err(Reject::invalid(error_text::INVALID_TIMESTAMP)),
    }
    let nonce = inner.issue_nonce(client_id, now);
    tracing::debug!(client_id, "nonce issued");
    Ok(wire::ok(json!({ "nonce": nonce })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), a
        // published test vector; the comma join must not alter a single value.
        assert_eq!(
            sign("key", &["The quick brown fox jumps over the lazy dog"]),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn values_are_comma_joined() {
        assert_eq!(sign("s", &["a", "b"]), sign("s", &["a,b"]));
        assert_ne!(sign("s", &["a", "b"]), sign("s", &["ab"]));
    }
}
