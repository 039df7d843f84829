//! Misbehaviour on demand: per-endpoint faults for the next K requests.

use std::collections::VecDeque;
use std::time::Duration;

/// An endpoint a [`Fault`] can be attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET` and `POST /oauth2_user/authorize2`.
    Authorize,
    /// `POST /v2/oauth2`, any action.
    Token,
    /// `POST /v2/signature`.
    Signature,
    /// `POST /measure`.
    Measure,
    /// `POST /v2/measure` (`getactivity`, `getworkouts`, `getintradayactivity`).
    MeasureV2,
    /// `POST /v2/user` (`getdevice`).
    User,
    /// `POST /v2/sleep` (`get`, `getsummary`).
    Sleep,
    /// `POST /v2/heart` (`list`, `get`).
    Heart,
    /// `POST /notify` (`subscribe`, `list`, `get`, `revoke`).
    Notify,
}

/// Every endpoint, in the order of their queues.
const ENDPOINTS: [Endpoint; 9] = [
    Endpoint::Authorize,
    Endpoint::Token,
    Endpoint::Signature,
    Endpoint::Measure,
    Endpoint::MeasureV2,
    Endpoint::User,
    Endpoint::Sleep,
    Endpoint::Heart,
    Endpoint::Notify,
];

impl Endpoint {
    pub(crate) fn from_path(path: &str) -> Option<Self> {
        ENDPOINTS.into_iter().find(|e| e.path() == path)
    }

    /// The path it serves.
    pub fn path(self) -> &'static str {
        match self {
            Self::Authorize => crate::AUTHORIZE_PATH,
            Self::Token => crate::TOKEN_PATH,
            Self::Signature => crate::SIGNATURE_PATH,
            Self::Measure => crate::MEASURE_PATH,
            Self::MeasureV2 => crate::data::MEASURE_V2_PATH,
            Self::User => crate::data::USER_PATH,
            Self::Sleep => crate::data::SLEEP_PATH,
            Self::Heart => crate::data::HEART_PATH,
            Self::Notify => crate::data::NOTIFY_PATH,
        }
    }

    /// The endpoint named by its path without the leading `/` (`v2/oauth2`, `measure`,
    /// `v2/sleep`, ...) or by its name in lower case (`token`, `authorize`, `sleep`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().trim_start_matches('/');
        ENDPOINTS.into_iter().find(|e| {
            e.path().trim_start_matches('/') == name
                || format!("{e:?}").eq_ignore_ascii_case(&name.replace(['-', '_'], ""))
        })
    }

    fn index(self) -> usize {
        ENDPOINTS
            .iter()
            .position(|e| *e == self)
            .unwrap_or_default()
    }
}

/// What goes wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request is processed normally (state changes happen: a refresh rotates the tokens)
    /// and then the response is held back this long. Models a slow network or a client
    /// timeout that fires after the server acted.
    Delay(Duration),
    /// The request is read, then the TCP connection is closed without any response. The
    /// request is not processed.
    DropConnection,
    /// HTTP 500 with a small HTML body, like a load balancer in trouble. Not processed.
    Http500,
    /// HTTP 200 whose JSON body is cut short (`{"status":0,"body":{"access_tok`).
    /// Not processed.
    MalformedBody,
    /// HTTP 200 with an HTML page instead of JSON, as a captive portal or a proxy's
    /// maintenance page answers. Not processed.
    HtmlPage,
    /// HTTP 200 with the rate limit's envelope, status 601 `Too Many Requests`, as if the
    /// app were over its limit. Not processed, not counted in `rate_limited`.
    TooManyRequests,
}

/// A queued fault: `skip` requests pass first, then `left` get the fault.
#[derive(Debug)]
struct Queued {
    fault: Option<Fault>,
    left: u32,
}

/// Faults queued per endpoint; each entry applies to a number of requests, in order. A pause
/// (`fault: None`) lets requests through before the next fault.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    queues: [VecDeque<Queued>; ENDPOINTS.len()],
}

impl Faults {
    pub(crate) fn push(&mut self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.push_after(endpoint, fault, 0, times);
    }

    /// Lets `skip` more requests through, then applies `fault` to `times` requests.
    pub(crate) fn push_after(&mut self, endpoint: Endpoint, fault: Fault, skip: u32, times: u32) {
        if times == 0 {
            return;
        }
        let queue = &mut self.queues[endpoint.index()];
        if skip > 0 {
            queue.push_back(Queued {
                fault: None,
                left: skip,
            });
        }
        queue.push_back(Queued {
            fault: Some(fault),
            left: times,
        });
    }

    pub(crate) fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    /// The fault for the next request to `endpoint`, if any, counting it down.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queue = &mut self.queues[endpoint.index()];
        let next = queue.front_mut()?;
        let fault = next.fault.clone();
        next.left -= 1;
        if next.left == 0 {
            queue.pop_front();
        }
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_in_order_for_their_count() {
        let mut faults = Faults::default();
        faults.push(Endpoint::Token, Fault::Http500, 2);
        faults.push(Endpoint::Token, Fault::MalformedBody, 1);
        faults.push(Endpoint::Measure, Fault::DropConnection, 0);
        assert_eq!(faults.take(Endpoint::Token), Some(Fault::Http500));
        assert_eq!(faults.take(Endpoint::Signature), None);
        assert_eq!(faults.take(Endpoint::Token), Some(Fault::Http500));
        assert_eq!(faults.take(Endpoint::Token), Some(Fault::MalformedBody));
        assert_eq!(faults.take(Endpoint::Token), None);
        assert_eq!(faults.take(Endpoint::Measure), None);
    }

    #[test]
    fn a_fault_can_wait_for_the_nth_request() {
        let mut faults = Faults::default();
        faults.push_after(Endpoint::Sleep, Fault::TooManyRequests, 2, 1);
        assert_eq!(faults.take(Endpoint::Sleep), None);
        assert_eq!(faults.take(Endpoint::Sleep), None);
        assert_eq!(faults.take(Endpoint::Sleep), Some(Fault::TooManyRequests));
        assert_eq!(faults.take(Endpoint::Sleep), None);
    }

    #[test]
    fn endpoints_parse_by_path_or_name() {
        for e in ENDPOINTS {
            assert_eq!(Endpoint::parse(e.path()), Some(e));
            assert_eq!(Endpoint::parse(&format!("{e:?}").to_lowercase()), Some(e));
        }
        assert_eq!(Endpoint::parse("measure-v2"), Some(Endpoint::MeasureV2));
        assert_eq!(Endpoint::parse("v2/oauth2"), Some(Endpoint::Token));
        assert_eq!(Endpoint::parse("nowhere"), None);
    }

    #[test]
    fn paths_map_to_endpoints() {
        for e in ENDPOINTS {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
        }
        assert_eq!(Endpoint::from_path("/v2/oauth2"), Some(Endpoint::Token));
        assert_eq!(Endpoint::from_path("/v2/sleep"), Some(Endpoint::Sleep));
        assert_eq!(Endpoint::from_path("/v2/oauth2/"), None);
    }
}
