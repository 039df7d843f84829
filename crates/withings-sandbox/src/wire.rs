//! The wire format: form parameters in, `{status, body}` envelopes out (always HTTP 200).

use std::borrow::Cow;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Largest request body the sandbox reads; larger ones are answered
/// [`error_text::BODY_TOO_LARGE`].
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Past this many bytes an oversized body is no longer drained and the connection is closed.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// The `error` texts of the envelopes the sandbox answers.
///
/// The first four are the texts Withings is known to send; the others are the sandbox's
/// guesses in the same style (Withings' exact wording is not documented).
pub mod error_text {
    /// Status 503: code expired, reused, unknown, or bound to another client or redirect_uri.
    pub const INVALID_CODE: &str = "Invalid Params: invalid code";
    /// Status 503: refresh token unknown, expired, revoked or rotated away.
    pub const INVALID_REFRESH_TOKEN: &str = "Invalid Params: invalid refresh_token";
    /// Status 503: unknown client id, wrong secret, or neither secret nor signature.
    pub const INVALID_CLIENT: &str = "Invalid Params: invalid client id/secret";
    /// Status 401: data call with an unknown, expired or revoked access token.
    pub const INVALID_TOKEN: &str =
        "XRequestError: invalid_token: The access token provided is invalid";
    /// Status 601: over the per-minute request limit (guess).
    pub const TOO_MANY_REQUESTS: &str = "Too Many Requests";
    /// Status 503: signature does not match (guess).
    pub const INVALID_SIGNATURE: &str = "Invalid Params: invalid signature";
    /// Status 503: nonce unknown, expired, used, or issued to another client (guess).
    pub const INVALID_NONCE: &str = "Invalid Params: invalid nonce";
    /// Status 503: `getnonce` timestamp not a number or more than 10 minutes off (guess).
    pub const INVALID_TIMESTAMP: &str = "Invalid Params: invalid timestamp";
    /// Status 503: `grant_type` neither `authorization_code` nor `refresh_token` (guess).
    pub const INVALID_GRANT_TYPE: &str = "Invalid Params: invalid grant_type";
    /// Status 503: unknown `action` (guess).
    pub const INVALID_ACTION: &str = "Invalid Params: invalid action";
    /// Status 503: a scope list that is empty or names an unknown scope (guess).
    pub const INVALID_SCOPE: &str = "Invalid Params: invalid scope";
    /// Status 503: `userid` is not a number (guess).
    pub const INVALID_USERID: &str = "Invalid Params: invalid userid";
    /// Status 503: request body over 64 KiB (guess).
    pub const BODY_TOO_LARGE: &str = "Invalid Params: request body too large";
    /// Status 401: access token lacks the scope the call needs (guess).
    pub const INSUFFICIENT_SCOPE: &str = "XRequestError: insufficient_scope: The request requires higher privileges than provided by the access token";
    /// Prefix of the status 503 text for a missing parameter, followed by its name (guess).
    pub const MISSING_PREFIX: &str = "Invalid Params: missing ";
    /// Prefix of the status 503 text for a parameter whose value is not valid (not a number,
    /// not a date, no such record), followed by its name (guess).
    pub const INVALID_PREFIX: &str = "Invalid Params: invalid ";
    /// Status 2554: no service at this path (Withings' "not implemented" family; text guessed).
    pub const NOT_IMPLEMENTED: &str = "Not implemented";
    /// Status 293: `subscribe` with a callback URL that is not allowed or did not answer
    /// HTTP 200 (status from Withings' table; text guessed).
    pub const INVALID_CALLBACK: &str = "Invalid Params: invalid callbackurl";
    /// Status 294: `get` or `revoke` of a subscription that does not exist (guess).
    pub const NO_SUCH_SUBSCRIPTION: &str = "Invalid Params: no such subscription";
}

/// A refusal, answered as a `{"status":N,"body":{},"error":"..."}` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    status: u32,
    error: Cow<'static, str>,
}

impl Reject {
    pub(crate) fn new(status: u32, error: &'static str) -> Self {
        Self {
            status,
            error: Cow::Borrowed(error),
        }
    }

    /// Status 503 `Invalid Params`.
    pub(crate) fn invalid(error: &'static str) -> Self {
        Self::new(503, error)
    }

    pub(crate) fn missing(name: &str) -> Self {
        Self {
            status: 503,
            error: Cow::Owned(format!("{}{name}", error_text::MISSING_PREFIX)),
        }
    }

    /// Status 503 `Invalid Params: invalid <name>`: the parameter's value is refused. The
    /// value itself is never quoted.
    pub(crate) fn invalid_param(name: &str) -> Self {
        Self {
            status: 503,
            error: Cow::Owned(format!("{}{name}", error_text::INVALID_PREFIX)),
        }
    }
}

/// What the request log line says of a request besides its method, path and status: the
/// action and the user it acted for. Handlers put it in the response's extensions. Never a
/// token.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogTag {
    pub(crate) action: Option<String>,
    pub(crate) userid: Option<u64>,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        err(self.status, &self.error)
    }
}

/// `{"status":0,"body":...}`
pub(crate) fn ok(body: Value) -> Response {
    Json(json!({ "status": 0, "body": body })).into_response()
}

/// `{"status":N,"body":{},"error":"..."}`, still HTTP 200 as Withings does.
fn err(status: u32, error: &str) -> Response {
    Json(json!({ "status": status, "body": {}, "error": error })).into_response()
}

/// Request parameters: the form body first, then the query string (Withings documents its
/// parameters as query parameters and accepts them in either place).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self(pairs)
    }

    /// First value of `name`; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// All values of `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or the `missing` envelope.
    pub(crate) fn require(&self, name: &str) -> Result<&str, Reject> {
        self.get(name).ok_or_else(|| Reject::missing(name))
    }
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
    Broken,
}

/// Reads at most [`MAX_BODY_BYTES`]. An oversized body is drained (up to a cap) before the
/// error is returned, so the client sees the answer rather than a reset while still sending.
pub(crate) async fn read_body(mut body: Body) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            } else if total > MAX_DRAIN_BYTES {
                return Err(BodyError::TooLarge);
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    Ok(Bytes::from(buf))
}

/// Reads the body and parses the parameters, or answers with an envelope.
pub(crate) async fn read_params(query: Option<&str>, body: Body) -> Result<Params, Reject> {
    match read_body(body).await {
        Ok(bytes) => Ok(Params::parse(query, &bytes)),
        Err(BodyError::TooLarge) => Err(Reject::invalid(error_text::BODY_TOO_LARGE)),
        Err(BodyError::Broken) => Err(Reject::missing("action")),
    }
}

/// Parses a comma-separated Withings scope list: non-empty, known scopes only,
/// duplicates dropped, order kept.
pub(crate) fn parse_scopes(raw: &str) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for s in raw.split(',') {
        if !crate::KNOWN_SCOPES.contains(&s) {
            return None;
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    (!scopes.is_empty()).then_some(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_prefer_body_and_treat_empty_as_missing() {
        let p = Params::parse(Some("action=fromquery&x=1"), b"action=frombody&empty=");
        assert_eq!(p.get("action"), Some("frombody"));
        assert_eq!(p.get("x"), Some("1"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn scopes_are_comma_separated_and_known() {
        assert_eq!(
            parse_scopes("user.metrics,user.info,user.metrics"),
            Some(vec!["user.metrics".to_owned(), "user.info".to_owned()])
        );
        assert_eq!(parse_scopes("user.info user.metrics"), None);
        assert_eq!(parse_scopes(""), None);
        assert_eq!(parse_scopes("user.info,"), None);
        assert_eq!(parse_scopes("user.everything"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_input_never_panics(
            query in proptest::option::of(".{0,64}"),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let params = Params::parse(query.as_deref(), &body);
            let _ = params.get("action");
            let _ = params.all("grant_scope").count();
        }

        #[test]
        fn parsed_scopes_are_known_and_unique(raw in "[a-z.,]{0,48}") {
            if let Some(scopes) = parse_scopes(&raw) {
                proptest::prop_assert!(!scopes.is_empty());
                for (i, s) in scopes.iter().enumerate() {
                    proptest::prop_assert!(crate::KNOWN_SCOPES.contains(&s.as_str()));
                    proptest::prop_assert!(!scopes[..i].contains(s));
                }
            }
        }
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        assert_eq!(read_body(Body::from(big)).await, Err(BodyError::TooLarge));
        let fits = vec![b'a'; MAX_BODY_BYTES];
        assert_eq!(
            read_body(Body::from(fits)).await.map(|b| b.len()),
            Ok(MAX_BODY_BYTES)
        );
    }
}
