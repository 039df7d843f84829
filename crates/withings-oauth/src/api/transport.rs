//! The HTTP exchange with Withings' API host: post a form, read a bounded answer, parse the
//! envelope.

use serde::de::DeserializeOwned;

use crate::api::envelope::parse_answer;
use crate::api::error::{ApiError, TransportKind};
use crate::config::Client;
use crate::store::LeaseTerm;

/// Largest answer read from the token and signature endpoints.
pub(crate) const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// Largest answer read from a data endpoint (a long `getmeas` history is a few megabytes).
pub(crate) const DATA_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Posts a form to `path` on the API host and returns the parsed success body. With a
/// `fence` (the term of the lease a refresh goes under), the request goes only if the lease
/// is held long enough, with a timeout that ends before it.
pub(crate) async fn post_form<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    form: &[(&str, &str)],
    bearer: Option<&str>,
    secrets: &[&str],
    limit: usize,
    fence: Option<&LeaseTerm>,
) -> Result<T, ApiError> {
    // A rate limiter waits here, before anything is sent.
    client.before_request().await;
    let url = client.api_endpoint(path);
    let mut request = client.http().post(url).form(form);
    // The fence: checked after every wait (the rate limiter, a nonce), right before the
    // request leaves, which then ends before the lease does.
    if let Some(term) = fence {
        let timeout = term
            .request_timeout(client.request_timeout())
            .await
            .map_err(|_| ApiError::LeaseEnded)?;
        request = request.timeout(timeout);
    }
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let answer = exchange(request, limit, secrets).await;
    crate::telemetry::answered(path, &answer);
    answer
}

/// Sends `request` and parses the answer.
async fn exchange<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    limit: usize,
    secrets: &[&str],
) -> Result<T, ApiError> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = read_limited(response, limit).await?;
    parse_answer(status, content_type.as_deref(), &bytes, secrets)
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        // A body that stops arriving is a body error too; it must read as a timeout.
        if !e.is_timeout() && (e.is_decode() || e.is_body()) {
            // The connection broke mid-body: what arrived is a truncated answer.
            ApiError::Truncated
        } else {
            transport(e)
        }
    })? {
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn transport(e: reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    ApiError::Transport {
        kind,
        source: e.without_url(),
    }
}
