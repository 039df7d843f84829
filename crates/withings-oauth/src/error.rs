//! Errors, one enum per layer. No error's `Display` or `Debug` holds a secret or a raw response
//! body: Withings' own `error` text is kept (shortened, with any secret of the request masked)
//! because it tells what went wrong.

use std::fmt;

use crate::user_agent::UserAgentError;

/// Withings' families of `status` codes (the `response_status` table of its API reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusFamily {
    /// 100-102, 200, 401: check the tokens.
    AuthenticationFailed,
    /// 214, 277, 2553, 2555: the app may not call this service.
    Unauthorized,
    /// 2554: the service does not exist.
    NotImplemented,
    /// 522: retry.
    Timeout,
    /// 524.
    BadState,
    /// 601: rate limited.
    TooManyRequests,
    /// The long list of "invalid params" codes (including 293, 342, 503).
    InvalidParams,
    /// Everything else: "an error occurred".
    Other,
}

impl StatusFamily {
    /// The family of a Withings `status` code.
    pub fn of(status: i64) -> Self {
        match status {
            100..=102 | 200 | 401 => Self::AuthenticationFailed,
            214 | 277 | 2553 | 2555 => Self::Unauthorized,
            2554 => Self::NotImplemented,
            522 => Self::Timeout,
            524 => Self::BadState,
            601 => Self::TooManyRequests,
            201..=213
            | 216..=218
            | 220..=221
            | 223
            | 225
            | 227..=230
            | 234..=236
            | 238
            | 240..=252
            | 254
            | 260..=267
            | 271..=272
            | 275..=276
            | 283..=288
            | 290
            | 293..=295
            | 297
            | 300..=304
            | 321
            | 323..=353
            | 380..=382
            | 400
            | 501..=511
            | 523
            | 532
            | 3017..=3019 => Self::InvalidParams,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for StatusFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AuthenticationFailed => "authentication failed",
            Self::Unauthorized => "unauthorized",
            Self::NotImplemented => "not implemented",
            Self::Timeout => "timeout",
            Self::BadState => "bad state",
            Self::TooManyRequests => "too many requests",
            Self::InvalidParams => "invalid params",
            Self::Other => "an error occurred",
        })
    }
}

/// How a request failed before a complete answer arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The connection could not be made (refused, DNS, TLS).
    Connect,
    /// No complete answer in time.
    Timeout,
    /// The connection broke while the answer was being read, or another failure.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connection failed",
            Self::Timeout => "timed out",
            Self::Other => "connection broken",
        })
    }
}

/// A failed call to Withings' API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 503 `Invalid Params: invalid code`.
    #[error(
        "Withings rejected the authorization code (it is valid 30 seconds, once, for one redirect URI): start the login again"
    )]
    InvalidCode,
    /// 503 `Invalid Params: invalid refresh_token`.
    #[error(
        "Withings rejected the refresh token (revoked, expired or already rotated away): the user must log in again"
    )]
    InvalidRefreshToken,
    /// 503 `Invalid Params: invalid client id/secret`.
    #[error(
        "Withings rejected the client id or secret: check the app's credentials in the Withings developer dashboard"
    )]
    InvalidClient,
    /// 401 `invalid_token` on a data call.
    #[error("Withings rejected the access token: refresh it, or log in again if refreshing fails")]
    InvalidAccessToken,
    /// 601.
    #[error(
        "Withings' rate limit was reached (status {status}: {message}): wait a minute before retrying"
    )]
    RateLimited {
        /// The status code (601).
        status: i64,
        /// Withings' message.
        message: String,
    },
    /// Any other non-zero status.
    #[error("Withings answered status {status} ({family}): {message}")]
    Withings {
        /// Withings' status code.
        status: i64,
        /// Its family.
        family: StatusFamily,
        /// Withings' message, shortened and with secrets masked.
        message: String,
    },
    /// HTTP status other than 200.
    #[error(
        "the server answered HTTP {status} instead of 200: Withings may be unavailable, retry later"
    )]
    HttpStatus {
        /// The HTTP status.
        status: u16,
    },
    /// A body that is not JSON (an HTML error page, say).
    #[error(
        "the server's answer is not JSON (it said {content_type}): check the API base URL, or retry later"
    )]
    NotJson {
        /// The `Content-Type` the server declared.
        content_type: String,
    },
    /// JSON that ends early.
    #[error("the server's answer was cut short (truncated JSON): retry")]
    Truncated,
    /// An empty body.
    #[error("the server answered with an empty body: retry later")]
    EmptyBody,
    /// A body larger than this library accepts.
    #[error("the server's answer is larger than {limit} bytes: check the API base URL")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// JSON that is not the expected envelope or body.
    #[error("the server's answer is not what Withings sends ({reason}): check the API base URL")]
    Malformed {
        /// What was wrong, without the body's content.
        reason: String,
    },
    /// The request failed on the way.
    #[error("could not talk to Withings ({kind}): {source}")]
    Transport {
        /// Connect, timeout or broken connection.
        kind: TransportKind,
        /// The HTTP client's error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
}

impl ApiError {
    /// Whether the request may have reached Withings and changed something before failing.
    ///
    /// `false` for connection failures: nothing was sent.
    pub fn maybe_processed(&self) -> bool {
        !matches!(
            self,
            ApiError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        )
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::RateLimited { .. }
            | ApiError::HttpStatus { .. }
            | ApiError::Truncated
            | ApiError::EmptyBody
            | ApiError::Transport { .. } => true,
            ApiError::Withings { family, .. } => {
                matches!(family, StatusFamily::Timeout | StatusFamily::Other)
            }
            _ => false,
        }
    }
}

/// A callback URL that can't be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Not a URL at all.
    #[error("the callback is not a URL: paste the whole address from the browser's address bar")]
    NotAUrl,
    /// Scheme, host, port or path differ from the redirect URI.
    #[error(
        "the callback went to {got}, not to the redirect URI {expected}: it does not belong to this login"
    )]
    RedirectMismatch {
        /// The redirect URI (without query).
        expected: String,
        /// Where the callback went (scheme, host, port and path only).
        got: String,
    },
    /// The user (or Withings) refused access.
    #[error("authorization was denied ({error}{}): the user must allow access to continue", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        /// The `error` parameter, e.g. `access_denied`.
        error: String,
        /// The `error_description` parameter, if any.
        description: Option<String>,
    },
    /// No `state` parameter.
    #[error("the callback has no state parameter: it did not come from this login")]
    MissingState,
    /// `state` differs from the one this login sent.
    #[error(
        "the callback's state does not match this login's: it belongs to another login or was forged"
    )]
    StateMismatch,
    /// No `code` parameter (and no `error`).
    #[error("the callback has no authorization code: the login did not finish; start it again")]
    MissingCode,
    /// A parameter given more than once.
    #[error("the callback repeats the {0} parameter: it was tampered with")]
    RepeatedParameter(&'static str),
}

impl CallbackError {
    /// Whether this callback might be a forgery or belong to another login, rather than the end of
    /// this one: an agent that can keep waiting (a loopback listener) should ignore it.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            CallbackError::RedirectMismatch { .. }
                | CallbackError::MissingState
                | CallbackError::StateMismatch
                | CallbackError::RepeatedParameter(_)
                | CallbackError::NotAUrl
        )
    }
}

/// A client configuration that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("{0} is not set: pass it to the client builder")]
    Missing(&'static str),
    /// The client id is empty or holds spaces or control characters.
    #[error("the client id is not valid: copy it from the Withings developer dashboard")]
    InvalidClientId,
    /// The client secret is empty or holds spaces or control characters.
    #[error(
        "the client secret is empty or holds spaces or line breaks: copy it from the Withings developer dashboard"
    )]
    InvalidClientSecret,
    /// The redirect URI is not usable.
    #[error("the redirect URI is not valid: {0}")]
    InvalidRedirectUri(String),
    /// A base URL is not usable.
    #[error("the {which} base URL is not valid: {reason}")]
    InvalidBaseUrl {
        /// `account` or `api`.
        which: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No scope was asked for.
    #[error("no scope was requested: ask for at least one, e.g. user.metrics")]
    NoScopes,
    /// The default HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The user agent brought back no callback.
    #[error(transparent)]
    UserAgent(#[from] UserAgentError),
    /// The callback was refused (including "authorization denied").
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// Withings refused the code exchange, or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Error {
    /// Whether the user refused access.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Callback(CallbackError::Denied { .. }))
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

    #[test]
    fn families_follow_the_reference_table() {
        assert_eq!(StatusFamily::of(503), StatusFamily::InvalidParams);
        assert_eq!(StatusFamily::of(342), StatusFamily::InvalidParams);
        assert_eq!(StatusFamily::of(293), StatusFamily::InvalidParams);
        assert_eq!(StatusFamily::of(401), StatusFamily::AuthenticationFailed);
        assert_eq!(StatusFamily::of(2554), StatusFamily::NotImplemented);
        assert_eq!(StatusFamily::of(601), StatusFamily::TooManyRequests);
        assert_eq!(StatusFamily::of(215), StatusFamily::Other);
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
}
