//! Withings' `status` codes and their families (the `response_status` table of the API
//! reference).

use std::fmt;

/// Withings' families of `status` codes (the `response_status` table of its API reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusFamily {
    /// 100-102, 200, 401: check the tokens.
    AuthenticationFailed,
    /// 214, 277, 2553, 2555: the app may not call this service.
    ServiceNotAllowed,
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
            214 | 277 | 2553 | 2555 => Self::ServiceNotAllowed,
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
            Self::ServiceNotAllowed => "unauthorized",
            Self::NotImplemented => "not implemented",
            Self::Timeout => "timeout",
            Self::BadState => "bad state",
            Self::TooManyRequests => "too many requests",
            Self::InvalidParams => "invalid params",
            Self::Other => "an error occurred",
        })
    }
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
}
