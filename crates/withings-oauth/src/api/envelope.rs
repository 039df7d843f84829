//! Withings' `{status, body}` envelope and the HTTP calls that carry it.
//!
//! Every answer is HTTP 200 with an envelope, errors included
//! (`{"status":503,"body":{},"error":"Invalid Params: invalid code"}`), so `status` is checked
//! before `body` is read, and `body` may be missing.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::api::error::ApiError;
use crate::api::status::StatusFamily;
use crate::json::json_error_reason;

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    status: serde_json::Number,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Parses an answer into its body, mapping every failure to its [`ApiError`].
///
/// `secrets` are the request's secrets, masked if Withings' message repeats them.
pub(crate) fn parse_answer<T: DeserializeOwned>(
    http_status: u16,
    content_type: Option<&str>,
    bytes: &[u8],
    secrets: &[&str],
) -> Result<T, ApiError> {
    let raw = parse_envelope(http_status, content_type, bytes, secrets)?;
    let raw = raw.map(RawValue::get).unwrap_or("{}");
    serde_json::from_str(raw).map_err(|e| malformed("body", &e))
}

/// Checks HTTP status and envelope `status`; returns the raw body (if any) of a success.
pub(crate) fn parse_envelope<'a>(
    http_status: u16,
    content_type: Option<&str>,
    bytes: &'a [u8],
    secrets: &[&str],
) -> Result<Option<&'a RawValue>, ApiError> {
    if matches!(http_status, 404 | 405 | 410) {
        return Err(ApiError::WrongEndpoint {
            status: http_status,
        });
    }
    if http_status != 200 {
        return Err(ApiError::HttpStatus {
            status: http_status,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::Malformed {
        reason: "the answer is not UTF-8".into(),
    })?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    if !trimmed.starts_with('{') {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            return Err(ApiError::Malformed {
                reason: "the answer is JSON but not an object".into(),
            });
        }
        let content_type = content_type
            .map(|c| c.chars().filter(|c| !c.is_control()).take(100).collect())
            .unwrap_or_else(|| "an unnamed content type".to_owned());
        return Err(ApiError::NotJson { content_type });
    }
    let envelope: RawEnvelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            ApiError::Truncated
        } else {
            malformed("envelope", &e)
        }
    })?;
    let status = envelope
        .status
        .as_i64()
        .ok_or_else(|| ApiError::Malformed {
            reason: "status is not an integer".into(),
        })?;
    if status == 0 {
        return Ok(envelope.body);
    }
    let message = match &envelope.error {
        Some(serde_json::Value::String(s)) => sanitize_message(s, secrets),
        _ => String::new(),
    };
    Err(status_error(status, message))
}

/// The error for a non-zero `status`: dedicated variants where Withings' text tells them apart.
pub(crate) fn status_error(status: i64, message: String) -> ApiError {
    let lower = message.to_ascii_lowercase();
    match status {
        601 => ApiError::RateLimited { status, message },
        401 if lower.contains("invalid_token") => ApiError::InvalidAccessToken,
        503 if lower.contains("invalid refresh_token")
            || lower.contains("invalid refresh token") =>
        {
            ApiError::InvalidRefreshToken
        }
        503 if lower.contains("invalid client") => ApiError::InvalidClient,
        503 if lower.contains("invalid code") => ApiError::InvalidCode,
        _ => ApiError::Withings {
            status,
            family: StatusFamily::of(status),
            message,
        },
    }
}

/// A serde error as [`ApiError::Malformed`], naming fields but never quoting a value.
fn malformed(what: &str, e: &serde_json::Error) -> ApiError {
    ApiError::Malformed {
        reason: json_error_reason(what, e),
    }
}

/// Shortens Withings' message, drops control characters and masks any secret of the request.
///
/// Secrets shorter than 4 bytes are not masked (no real code or token is that short), and a
/// secret cut by the length limit is masked only if at least 8 bytes long.
pub(crate) fn sanitize_message(message: &str, secrets: &[&str]) -> String {
    const MAX: usize = 200;
    let mut out: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX)
        .collect();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, "[redacted]");
        }
    }
    // A secret cut by the length limit still leaves its beginning at the end: mask the longest
    // end that begins a secret. Every start is tried, because a secret's beginning may repeat
    // (`aaaab...` right after `...a` hides from a search for non-overlapping `aaaa`).
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        let cut = out
            .char_indices()
            .map(|(start, _)| start)
            .find(|&start| out.len() - start >= 4 && secret.starts_with(&out[start..]));
        if let Some(start) = cut {
            out.truncate(start);
            out.push_str("[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::token::TokenBody;
    use proptest::prelude::*;

    fn parse(body: &str) -> Result<TokenBody, ApiError> {
        parse_answer(200, Some("application/json"), body.as_bytes(), &[])
    }

    #[test]
    fn status_is_checked_before_body() {
        let err = parse(r#"{"status":503,"error":"Invalid Params: invalid code"}"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidCode));
        let err =
            parse(r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#)
                .unwrap_err();
        assert!(matches!(err, ApiError::InvalidRefreshToken));
    }

    #[test]
    fn sanitize_masks_secrets_and_truncated_prefixes() {
        let secret = "s3cr3t-refresh-token-value";
        assert_eq!(
            sanitize_message(&format!("bad token {secret} here"), &[secret]),
            "bad token [redacted] here"
        );
        let long = format!("{}{}", "x".repeat(190), secret);
        let got = sanitize_message(&long, &[secret]);
        assert!(!got.contains(&secret[..8]), "{got}");
        assert!(sanitize_message("a\u{7}b\nc", &[]) == "abc");
    }

    #[test]
    fn malformed_reason_never_quotes_values() {
        let err = parse(r#"{"status":0,"body":{"userid":"1","access_token":12,"refresh_token":"leak-me-please","expires_in":"x"}}"#)
            .unwrap_err();
        assert!(!err.to_string().contains("leak-me-please"), "{err}");
    }

    proptest! {
        #[test]
        fn envelope_parser_never_panics(status in 0u16..1000, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_answer::<TokenBody>(status, None, &bytes, &[]);
        }

        #[test]
        fn envelope_parser_never_panics_on_json_like_input(s in r#"\{("status":-?[0-9]{1,25},?|"body":(\{\}|null|\[\]|"x"),?|"error":"[a-z :_]{0,30}",?|[ {}\[\]",:0-9a-z]){0,8}\}?"#) {
            let _ = parse_answer::<TokenBody>(200, None, s.as_bytes(), &[]);
        }
    }
}
