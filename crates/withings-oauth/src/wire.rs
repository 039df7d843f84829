//! Withings' `{status, body}` envelope and the HTTP calls that carry it.
//!
//! Every answer is HTTP 200 with an envelope, errors included
//! (`{"status":503,"body":{},"error":"Invalid Params: invalid code"}`), so `status` is checked
//! before `body` is read, and `body` may be missing.

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::config::Client;
use crate::credentials::{Credentials, UserId};
use crate::error::{ApiError, StatusFamily, TransportKind, sanitize_message};
use crate::scope::Scopes;

/// Largest answer read from the token and signature endpoints.
pub(crate) const TOKEN_BODY_LIMIT: usize = 64 * 1024;

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

/// A serde error as a reason that never quotes the input.
fn malformed(what: &str, e: &serde_json::Error) -> ApiError {
    let text = e.to_string();
    // "missing field `x`" and "unknown variant" name only fields; "invalid type: string \"...\""
    // would quote a value, which may be a token.
    let detail = if text.starts_with("missing field") || text.starts_with("duplicate field") {
        text.split(" at line").next().unwrap_or_default().to_owned()
    } else {
        format!("{:?} error", e.classify()).to_lowercase()
    };
    ApiError::Malformed {
        reason: format!(
            "{what}: {detail} at line {} column {}",
            e.line(),
            e.column()
        ),
    }
}

/// The body of a token answer. `Debug` hides the tokens.
#[derive(Deserialize)]
pub(crate) struct TokenBody {
    #[serde(default)]
    userid: Option<UserId>,
    access_token: SecretString,
    refresh_token: SecretString,
    expires_in: ExpiresIn,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

impl std::fmt::Debug for TokenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBody")
            .field("userid", &self.userid)
            .finish_non_exhaustive()
    }
}

/// `expires_in`, as a number or a string of digits.
struct ExpiresIn(u64);

impl<'de> Deserialize<'de> for ExpiresIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Number(u64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Number(n) => Ok(ExpiresIn(n)),
            Wire::Text(s) => s.trim().parse().map(ExpiresIn).map_err(|_| {
                serde::de::Error::custom("expires_in is not a whole number of seconds")
            }),
        }
    }
}

/// `sent_at + expires_in`, saturating at the largest representable time.
pub(crate) fn expiry(sent_at: DateTime<Utc>, expires_in: u64) -> DateTime<Utc> {
    let secs = i64::try_from(expires_in).unwrap_or(i64::MAX);
    TimeDelta::try_seconds(secs)
        .and_then(|d| sent_at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl TokenBody {
    /// Turns the body into credentials. `fallback_user` is used when the body has no `userid`
    /// (demo access); `asked` when it has no `scope`.
    pub(crate) fn into_credentials(
        self,
        sent_at: DateTime<Utc>,
        fallback_user: Option<UserId>,
        asked: &Scopes,
    ) -> Result<Credentials, ApiError> {
        use secrecy::ExposeSecret;
        let user_id = self
            .userid
            .or(fallback_user)
            .ok_or_else(|| ApiError::Malformed {
                reason: "body: missing field `userid`".into(),
            })?;
        for (name, token) in [
            ("access_token", &self.access_token),
            ("refresh_token", &self.refresh_token),
        ] {
            if !crate::credentials::is_token_text(token.expose_secret()) {
                return Err(ApiError::Malformed {
                    reason: format!("body: {name} is empty or not printable"),
                });
            }
        }
        Ok(Credentials {
            user_id,
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at: expiry(sent_at, self.expires_in.0),
            scopes: match self.scope {
                Some(s) => Scopes::parse_granted(&s),
                None => asked.clone(),
            },
            token_type: self
                .token_type
                .filter(|t| is_token_type(t))
                .unwrap_or_else(|| "Bearer".to_owned()),
        })
    }
}

/// Whether a `token_type` is short printable ASCII (it is shown in terminals and logs).
pub(crate) fn is_token_type(t: &str) -> bool {
    !t.is_empty() && t.len() < 32 && t.bytes().all(|b| b.is_ascii_graphic())
}

/// Posts a form to `path` on the API host and returns the parsed success body.
pub(crate) async fn post_form<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    form: &[(&str, &str)],
    bearer: Option<&str>,
    secrets: &[&str],
    limit: usize,
) -> Result<T, ApiError> {
    let url = client.api_endpoint(path);
    let mut request = client.http().post(url).form(form);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn expiry_saturates() {
        let now = Utc::now();
        assert_eq!(expiry(now, u64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(expiry(now, 10800), now + TimeDelta::seconds(10800));
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

        #[test]
        fn any_expires_in_is_fine(expires_in: u64) {
            let body = format!(r#"{{"status":0,"body":{{"userid":1,"access_token":"a","refresh_token":"r","expires_in":{expires_in}}}}}"#);
            let creds = parse(&body).unwrap().into_credentials(Utc::now(), None, &Scopes::empty()).unwrap();
            prop_assert!(creds.expires_at() > Utc::now() - TimeDelta::seconds(5));
        }
    }
}
