//! The data API: every service a Withings client calls with a bearer token, each answered in
//! Withings' `{status, body}` envelope with fake data that is the same for the same user and
//! day on every run.
//!
//! One pipeline serves them all, in the order Withings checks: the access token (401), the
//! action (503), the family's scope (401), then the service's own parameters (503).

mod activity;
mod heart;
mod measure;
mod query;
mod seed;
mod sleep;
mod user;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::notify;
use crate::rotation::Grant;
use crate::state::{Inner, Shared};
use crate::wire::{self, LogTag, Params, Reject, error_text};

pub use measure::{MeasureError, NewMeasure};
pub(crate) use measure::{MeasureGroup, appli_of};
pub(crate) use query::Call;
pub(crate) use seed::Window;

/// Path of the v2 measure services (`getactivity`, `getworkouts`, `getintradayactivity`).
pub(crate) const MEASURE_V2_PATH: &str = "/v2/measure";
/// Path of the user services (`getdevice`).
pub(crate) const USER_PATH: &str = "/v2/user";
/// Path of the sleep services (`get`, `getsummary`).
pub(crate) const SLEEP_PATH: &str = "/v2/sleep";
/// Path of the heart services (`list`, `get`).
pub(crate) const HEART_PATH: &str = "/v2/heart";
/// Path of the notification services (`subscribe`, `list`, `get`, `revoke`, `update`).
pub(crate) const NOTIFY_PATH: &str = "/notify";

/// How a service answers once the token, the action and the scope are checked.
#[derive(Clone, Copy)]
enum Run {
    /// Reads the user's data under the state lock.
    Data(fn(&Call<'_>) -> Result<Value, Reject>),
    /// A notification service, which may call the app's callback URL first.
    Notify(notify::Action),
}

/// One service: a path, an action, the scope it needs.
struct Service {
    path: &'static str,
    action: &'static str,
    /// `None`: any valid token (notifications check the scope of their `appli`).
    scope: Option<&'static str>,
    run: Run,
}

const METRICS: Option<&str> = Some("user.metrics");
const ACTIVITY: Option<&str> = Some("user.activity");
const INFO: Option<&str> = Some("user.info");

/// Every service the sandbox serves, with the scope Withings asks of it.
const SERVICES: &[Service] = &[
    Service {
        path: crate::MEASURE_PATH,
        action: "getmeas",
        scope: METRICS,
        run: Run::Data(measure::getmeas),
    },
    Service {
        path: MEASURE_V2_PATH,
        action: "getactivity",
        scope: ACTIVITY,
        run: Run::Data(activity::getactivity),
    },
    Service {
        path: MEASURE_V2_PATH,
        action: "getworkouts",
        scope: ACTIVITY,
        run: Run::Data(activity::getworkouts),
    },
    Service {
        path: MEASURE_V2_PATH,
        action: "getintradayactivity",
        scope: ACTIVITY,
        run: Run::Data(activity::getintradayactivity),
    },
    Service {
        path: SLEEP_PATH,
        action: "get",
        scope: ACTIVITY,
        run: Run::Data(sleep::get),
    },
    Service {
        path: SLEEP_PATH,
        action: "getsummary",
        scope: ACTIVITY,
        run: Run::Data(sleep::getsummary),
    },
    Service {
        path: HEART_PATH,
        action: "list",
        scope: METRICS,
        run: Run::Data(heart::list),
    },
    Service {
        path: HEART_PATH,
        action: "get",
        scope: METRICS,
        run: Run::Data(heart::get),
    },
    Service {
        path: USER_PATH,
        action: "getdevice",
        scope: INFO,
        run: Run::Data(user::getdevice),
    },
    Service {
        path: NOTIFY_PATH,
        action: "subscribe",
        scope: None,
        run: Run::Notify(notify::Action::Subscribe),
    },
    Service {
        path: NOTIFY_PATH,
        action: "list",
        scope: None,
        run: Run::Notify(notify::Action::List),
    },
    Service {
        path: NOTIFY_PATH,
        action: "get",
        scope: None,
        run: Run::Notify(notify::Action::Get),
    },
    Service {
        path: NOTIFY_PATH,
        action: "revoke",
        scope: None,
        run: Run::Notify(notify::Action::Revoke),
    },
    Service {
        path: NOTIFY_PATH,
        action: "update",
        scope: None,
        run: Run::Notify(notify::Action::Update),
    },
];

/// The paths of the data API, for the router.
pub(crate) const PATHS: [&str; 6] = [
    crate::MEASURE_PATH,
    MEASURE_V2_PATH,
    USER_PATH,
    SLEEP_PATH,
    HEART_PATH,
    NOTIFY_PATH,
];

/// Every `(path, action)` served, for the docs' test.
#[cfg(test)]
fn services() -> impl Iterator<Item = (&'static str, &'static str)> {
    SERVICES.iter().map(|s| (s.path, s.action))
}

/// Any data path.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let params = match wire::read_params(parts.uri.query(), body).await {
        Ok(p) => p,
        Err(reject) => return reject.into_response(),
    };
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The auth scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    let token = bearer.or_else(|| params.get("access_token"));
    // Only known names reach the log: a parameter's value could be anything, a token included.
    let action = params.get("action").map(|action| {
        if SERVICES
            .iter()
            .any(|s| s.path == path && s.action == action)
        {
            action.to_owned()
        } else {
            "(unknown)".to_owned()
        }
    });

    let now = shared.clock.now();
    let (grant, run) = {
        let mut inner = shared.lock();
        if inner.ledger.is_some() {
            crate::ledger::agent(&parts.headers).clone_into(&mut inner.agent);
        }
        match authorize(&mut inner, &path, &params, token, now) {
            Ok(found) => found,
            Err((reject, userid)) => {
                return tagged(reject.into_response(), action, userid);
            }
        }
    };
    let userid = Some(grant.userid);
    let response = match run {
        Run::Data(service) => {
            let inner = shared.lock();
            let call = Call::new(&params, grant.userid, now, &inner);
            match service(&call) {
                Ok(body) => wire::ok(body),
                Err(reject) => reject.into_response(),
            }
        }
        Run::Notify(what) => notify::handle(&shared, what, &grant, &params).await,
    };
    tagged(response, action, userid)
}

/// Checks the token, the action and the scope, counting the call. The error carries the user
/// the token belonged to, if it was valid, for the log line.
fn authorize(
    inner: &mut Inner,
    path: &str,
    params: &Params,
    token: Option<&str>,
    now: SystemTime,
) -> Result<(Grant, Run), (Reject, Option<u64>)> {
    // Rate limit by the token's client before the token is marked used.
    if let Some(client) = token
        .and_then(|t| inner.access.get(t))
        .map(|a| a.client_id.clone())
        && !inner.rate_limit_allows(&client, now)
    {
        return Err((Reject::new(601, error_text::TOO_MANY_REQUESTS), None));
    }
    let measure = path == crate::MEASURE_PATH;
    inner.counters.data_calls += 1;
    if measure {
        inner.counters.measure += 1;
    }
    let Some(grant) = token.and_then(|t| inner.use_access(t, now)) else {
        inner.counters.data_rejected += 1;
        if measure {
            inner.counters.measure_rejected += 1;
        }
        return Err((Reject::new(401, error_text::INVALID_TOKEN), None));
    };
    inner.counters.count_data_served(grant.userid);
    let userid = Some(grant.userid);
    let action = params
        .require("action")
        .map_err(|reject| (reject, userid))?;
    let Some(service) = SERVICES
        .iter()
        .find(|s| s.path == path && s.action == action)
    else {
        return Err((Reject::invalid(error_text::INVALID_ACTION), userid));
    };
    if let Some(scope) = service.scope
        && !grant.has(scope)
    {
        return Err((Reject::new(401, error_text::INSUFFICIENT_SCOPE), userid));
    }
    Ok((grant, service.run))
}

fn tagged(mut response: Response, action: Option<String>, userid: Option<u64>) -> Response {
    response.extensions_mut().insert(LogTag { action, userid });
    response
}

/// Paths no Withings service lives at: status 2554, "not implemented".
pub(crate) async fn unknown_path() -> Response {
    Reject::new(2554, error_text::NOT_IMPLEMENTED).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::{Call, Run, SERVICES};
    use crate::SandboxConfig;
    use crate::state::Shared;
    use crate::wire::Params;

    /// Any integer, with the extremes and the present often.
    fn int() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            1_700_000_000i64..1_900_000_000,
            any::<i64>(),
        ]
    }

    proptest::proptest! {
        #[test]
        fn no_parameter_makes_a_service_panic(
            start in int(),
            end in int(),
            offset in int(),
            other in int(),
            ymd in "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}",
            fields in "[a-z_,]{0,30}",
        ) {
            let inner = Shared::new(SandboxConfig::default().page_size(0)).into_inner();
            let form = format!(
                "startdate={start}&enddate={end}&offset={offset}&lastupdate={other}\
                 &meastype={other}&meastypes={other},{start}&category={other}&signalid={other}\
                 &startdateymd={ymd}&enddateymd={ymd}&data_fields={fields}"
            );
            let params = Params::parse(None, form.as_bytes());
            for service in SERVICES {
                if let Run::Data(run) = service.run {
                    let call = Call::new(&params, 1001, SystemTime::now(), &inner);
                    let _ = run(&call);
                }
            }
        }
    }

    #[test]
    fn the_readme_lists_every_service() {
        let readme = include_str!("../../README.md");
        for (path, action) in super::services() {
            let listed = readme.lines().any(|line| {
                line.contains(&format!("`POST {path}`")) && line.contains(&format!("`{action}`"))
            });
            assert!(listed, "README lists no `{action}` at `POST {path}`");
        }
    }
}
