//! [`ApiError`]: how a call to Withings failed, and whether trying again may help.
//!
//! No message holds a secret or a raw response body: Withings' own `error` text is kept
//! (shortened, with any secret of the request masked) because it tells what went wrong.

use std::fmt;

use crate::api::status::StatusFamily;

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
    /// An HTTP status other than 200 that says nothing about the address (a 5xx, 429, 408...:
    /// Withings or a proxy in front of it is unwell).
    #[error(
        "the server answered HTTP {status} instead of 200: Withings may be unavailable, retry later"
    )]
    HttpStatus {
        /// The HTTP status.
        status: u16,
    },
    /// HTTP 404, 405 or 410: there is no Withings API at the address called, which is a
    /// configuration error (a wrong base URL or cloud), not an outage.
    #[error(
        "the server answered HTTP {status}: there is no Withings API at that address; check the cloud or the API base URL"
    )]
    WrongEndpoint {
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
    /// A refresh was not sent: the refresh lease it was to go under ended first (another
    /// program took it over, or too little of it was left and it was not renewed). Nothing
    /// reached Withings and no token was spent.
    #[error(
        "the refresh was not sent: this program's refresh lease for the user ended first (another program may be refreshing the same user); nothing was spent: retry, which reads the store first"
    )]
    LeaseEnded,
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
    /// `false` for connection failures and refreshes held back by their lease: nothing was
    /// sent.
    pub fn maybe_processed(&self) -> bool {
        !matches!(
            self,
            ApiError::Transport {
                kind: TransportKind::Connect,
                ..
            } | ApiError::LeaseEnded
        )
    }

    /// Whether trying the same call again later may succeed.
    ///
    /// | error | transient | why |
    /// |---|---|---|
    /// | [`RateLimited`](Self::RateLimited) (601) | yes | the limit resets within a minute |
    /// | [`Withings`](Self::Withings), family [`Timeout`](StatusFamily::Timeout) (522) or [`Other`](StatusFamily::Other) ("an error occurred") | yes | Withings' own failures |
    /// | [`Withings`](Self::Withings), any other family | no | the request itself is refused (parameters, authentication, a service the app may not use): sending it again gets the same answer |
    /// | [`HttpStatus`](Self::HttpStatus) 408, 425, 429 and 5xx | yes | Withings or a proxy in front of it is overloaded or down |
    /// | [`HttpStatus`](Self::HttpStatus), other 4xx | no | the request is refused before it reaches Withings' API |
    /// | [`WrongEndpoint`](Self::WrongEndpoint) (404, 405, 410) | no | a wrong base URL or cloud: a configuration error |
    /// | [`NotJson`](Self::NotJson) | yes | an HTML answer is a maintenance or error page of a front end |
    /// | [`Truncated`](Self::Truncated), [`EmptyBody`](Self::EmptyBody) | yes | the connection broke while the answer was coming |
    /// | [`Transport`](Self::Transport) | yes | no connection, a timeout, a connection broken on the way |
    /// | [`LeaseEnded`](Self::LeaseEnded) | yes | not sent: the next attempt takes the lease again and reads the store |
    /// | [`TooLarge`](Self::TooLarge), [`Malformed`](Self::Malformed) | no | what answered is not Withings' API as this version knows it |
    /// | [`InvalidCode`](Self::InvalidCode) | no | a code is valid once, for 30 seconds: start the login again |
    /// | [`InvalidRefreshToken`](Self::InvalidRefreshToken) | no | the grant is dead: the user must log in again |
    /// | [`InvalidClient`](Self::InvalidClient) | no | the app's id or secret is wrong: a configuration error |
    /// | [`InvalidAccessToken`](Self::InvalidAccessToken) | no | the same token stays invalid: refresh it first |
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::RateLimited { .. }
            | ApiError::NotJson { .. }
            | ApiError::Truncated
            | ApiError::EmptyBody
            | ApiError::LeaseEnded
            | ApiError::Transport { .. } => true,
            ApiError::HttpStatus { status } => {
                matches!(status, 408 | 425 | 429) || (500..600).contains(status)
            }
            ApiError::Withings { family, .. } => {
                matches!(family, StatusFamily::Timeout | StatusFamily::Other)
            }
            ApiError::InvalidCode
            | ApiError::InvalidRefreshToken
            | ApiError::InvalidClient
            | ApiError::InvalidAccessToken
            | ApiError::WrongEndpoint { .. }
            | ApiError::TooLarge { .. }
            | ApiError::Malformed { .. } => false,
        }
    }

    /// Whether the error says the program is set up wrong (the app's credentials, the cloud or
    /// base URL), rather than anything about the user or the moment.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ApiError::InvalidClient | ApiError::WrongEndpoint { .. }
        )
    }
}
