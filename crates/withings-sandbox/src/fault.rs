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
}

impl Endpoint {
    pub(crate) fn from_path(path: &str) -> Option<Self> {
        match path {
            crate::AUTHORIZE_PATH => Some(Self::Authorize),
            crate::TOKEN_PATH => Some(Self::Token),
            crate::SIGNATURE_PATH => Some(Self::Signature),
            crate::MEASURE_PATH => Some(Self::Measure),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Authorize => 0,
            Self::Token => 1,
            Self::Signature => 2,
            Self::Measure => 3,
        }
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
}

/// Faults queued per endpoint; each entry applies to a number of requests, in order.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    queues: [VecDeque<(Fault, u32)>; 4],
}

impl Faults {
    pub(crate) fn push(&mut self, endpoint: Endpoint, fault: Fault, times: u32) {
        if times > 0 {
            self.queues[endpoint.index()].push_back((fault, times));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    /// The fault for the next request to `endpoint`, if any, counting it down.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queue = &mut self.queues[endpoint.index()];
        let (fault, left) = queue.front_mut()?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(fault)
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
    fn paths_map_to_endpoints() {
        for e in [
            Endpoint::Authorize,
            Endpoint::Token,
            Endpoint::Signature,
            Endpoint::Measure,
        ] {
            let path = match e {
                Endpoint::Authorize => "/oauth2_user/authorize2",
                Endpoint::Token => "/v2/oauth2",
                Endpoint::Signature => "/v2/signature",
                Endpoint::Measure => "/measure",
            };
            assert_eq!(Endpoint::from_path(path), Some(e));
        }
        assert_eq!(Endpoint::from_path("/v2/oauth2/"), None);
    }
}
