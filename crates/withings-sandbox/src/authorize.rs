//! `/oauth2_user/authorize2`: the login and consent page, and the redirect back to the app.
//!
//! Errors in `client_id` or `redirect_uri` are shown on the sandbox's own page and never
//! redirected, as Withings does; so are the other parameter errors (a guess: Withings'
//! behaviour there is undocumented).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use url::{Host, Url};

use crate::config::User;
use crate::state::{Code, Inner, Shared};
use crate::wire::{self, Params};
use crate::{AUTHORIZE_PATH, DEMO_USERID, KNOWN_SCOPES};

/// A validated authorization request.
#[derive(Debug)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    scopes: Vec<String>,
    state: String,
    demo: bool,
}

/// `GET /oauth2_user/authorize2`.
pub(crate) async fn page(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let params = Params::parse(req.uri().query(), b"");
    let now = shared.clock.now();
    let mut inner = shared.lock();
    inner.counters.authorize_page += 1;
    let request = match validate(&inner, &params) {
        Ok(r) => r,
        Err(page) => return page.into_response(),
    };
    if inner.config.auto_approve {
        let userid = if request.demo {
            Some(DEMO_USERID)
        } else {
            inner.users.first().map(|u| u.userid)
        };
        let Some(userid) = userid else {
            return error_page("No user is registered in this sandbox, so nobody can log in.");
        };
        let scopes = request.scopes.clone();
        return grant(&mut inner, &request, userid, scopes, now);
    }
    consent_page(&request, None, "", inner.users.first())
}

/// `POST /oauth2_user/authorize2`: the consent form's submission.
pub(crate) async fn submit(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (_, body) = req.into_parts();
    let params = match wire::read_body(body).await {
        Ok(bytes) => Params::parse(None, &bytes),
        Err(_) => return error_page("The form submission was too large or broken."),
    };
    let now = shared.clock.now();
    let mut inner = shared.lock();
    let request = match validate(&inner, &params) {
        Ok(r) => r,
        Err(page) => return page.into_response(),
    };
    let email = params.get("email").unwrap_or_default();
    match params.get("decision") {
        Some("deny") => {
            inner.counters.authorize_deny += 1;
            redirect(
                &request,
                &[
                    ("error", "access_denied"),
                    (
                        "error_description",
                        "The user denied access to the application",
                    ),
                ],
            )
        }
        Some("allow") => {
            let userid = if request.demo {
                Some(DEMO_USERID)
            } else {
                let password = params.get("password").unwrap_or_default();
                inner
                    .users
                    .iter()
                    .find(|u| u.email.eq_ignore_ascii_case(email) && u.password == password)
                    .map(|u| u.userid)
            };
            let Some(userid) = userid else {
                return consent_page(
                    &request,
                    Some("Wrong email or password."),
                    email,
                    inner.users.first(),
                );
            };
            // The page offers one checkbox per scope; without them (a scripted POST) all the
            // requested scopes are granted.
            let scopes: Vec<String> = if params.get("scopes_chosen").is_some() {
                let chosen: Vec<&str> = params.all("grant_scope").collect();
                request
                    .scopes
                    .iter()
                    .filter(|s| chosen.contains(&s.as_str()))
                    .cloned()
                    .collect()
            } else {
                request.scopes.clone()
            };
            if scopes.is_empty() {
                return consent_page(
                    &request,
                    Some("Select at least one permission."),
                    email,
                    inner.users.first(),
                );
            }
            grant(&mut inner, &request, userid, scopes, now)
        }
        _ => consent_page(
            &request,
            Some("Choose Allow or Deny."),
            email,
            inner.users.first(),
        ),
    }
}

fn grant(
    inner: &mut Inner,
    request: &AuthRequest,
    userid: u64,
    scopes: Vec<String>,
    now: std::time::SystemTime,
) -> Response {
    let expires_at = crate::clock::later(now, inner.config.code_lifetime);
    let code = inner.issue_code(Code {
        client_id: request.client_id.clone(),
        userid,
        redirect_uri: request.redirect_uri.clone(),
        scopes,
        expires_at,
    });
    inner.counters.authorize_allow += 1;
    tracing::debug!(client_id = %request.client_id, userid, "authorization code issued");
    redirect(request, &[("code", &code)])
}

/// 302 to the redirect_uri with `extra` and `state` appended to any query it already has.
fn redirect(request: &AuthRequest, extra: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(&request.redirect_uri) else {
        return error_page("The redirect_uri is not a valid URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in extra {
            query.append_pair(k, v);
        }
        query.append_pair("state", &request.state);
    }
    (StatusCode::FOUND, [(LOCATION, url.to_string())]).into_response()
}

fn validate(inner: &Inner, params: &Params) -> Result<AuthRequest, ErrorPage> {
    let Some(app) = params.get("client_id").and_then(|id| inner.apps.get(id)) else {
        return Err(ErrorPage(
            "Invalid client_id: no application is registered with this client id.".into(),
        ));
    };
    let Some(redirect_uri) = params.get("redirect_uri").filter(|uri| {
        app.callback_urls
            .iter()
            .any(|c| callback_matches(c, uri, inner.config.exact_redirect_uris))
    }) else {
        return Err(ErrorPage(
            "The redirect_uri does not match any callback URL registered for this application."
                .into(),
        ));
    };
    if params.get("response_type") != Some("code") {
        return Err(ErrorPage(
            "Invalid response_type: it must be \"code\".".into(),
        ));
    }
    let scope = params.get("scope").unwrap_or_default();
    let Some(scopes) = wire::parse_scopes(scope) else {
        return Err(ErrorPage(format!(
            "Invalid scope: give a comma-separated list of {}.",
            KNOWN_SCOPES.join(", ")
        )));
    };
    let Some(state) = params.get("state") else {
        return Err(ErrorPage("The state parameter is required.".into()));
    };
    Ok(AuthRequest {
        client_id: app.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.to_owned(),
        scopes,
        state: state.to_owned(),
        demo: params.get("mode") == Some("demo"),
    })
}

/// Exact match, except that, unless `exact`, a registered `http` loopback callback without a
/// port matches any port on any loopback host (RFC 8252 §7.3).
pub(crate) fn callback_matches(registered: &str, requested: &str, exact: bool) -> bool {
    if registered == requested {
        return true;
    }
    if exact {
        return false;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && reg.port().is_none()
        && is_loopback(&reg)
        && is_loopback(&req)
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.username().is_empty()
        && req.password().is_none()
        && req.fragment().is_none()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline only: the page must render with nothing but the sandbox reachable.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#eef1f5;color:#1c2733;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif}\
main{max-width:32rem;margin:2.5rem auto;background:#fff;border-radius:12px;box-shadow:0 2px 14px rgba(20,40,70,.12);padding:1.75rem 2rem 2rem}\
.brand{display:flex;align-items:center;gap:.5rem;font-weight:700;font-size:1.05rem;color:#00639c;margin-bottom:1rem}\
.badge{font-size:.7rem;font-weight:600;text-transform:uppercase;letter-spacing:.05em;color:#7a4b00;background:#ffe7b3;border-radius:4px;padding:.1rem .4rem}\
h1{font-size:1.3rem;margin:0 0 .35rem}\
p{margin:.3rem 0}\
#app{color:#3b4756}\
#hint,#demo{background:#e8f4fd;border:1px solid #b6dcf5;border-radius:8px;padding:.6rem .8rem;margin:1rem 0 0;font-size:.9rem}\
#hint strong{display:block;font-weight:600;margin-bottom:.2rem}\
#hint code{white-space:nowrap;font-family:'DejaVu Sans Mono',monospace;font-size:.85rem;background:#fff;border-radius:4px;padding:.05rem .3rem}\
#error{background:#fdecee;border:1px solid #f3b7bf;color:#a0001c;border-radius:8px;padding:.6rem .8rem;margin:1rem 0 0}\
.field{display:block;font-size:.85rem;font-weight:600;margin:.7rem 0 .25rem}\
input[type=email],input[type=password]{display:block;width:100%;font:inherit;padding:.5rem .65rem;border:1px solid #c3ccd6;border-radius:6px}\
fieldset{border:0;padding:0;margin:1.5rem 0 0}\
legend{padding:0;font-size:.8rem;font-weight:600;text-transform:uppercase;letter-spacing:.05em;color:#5b6878;margin:0 0 .5rem}\
.scope{display:flex;align-items:flex-start;gap:.65rem;padding:.55rem .2rem;border-top:1px solid #edf0f3;cursor:pointer}\
.scope:last-child{border-bottom:1px solid #edf0f3}\
.scope input{margin:.2rem 0 0;width:1.05rem;height:1.05rem;flex:none}\
.scope code{font-weight:600;font-family:'DejaVu Sans Mono',monospace;font-size:.85rem}\
.scope small{display:block;color:#5b6878;font-size:.85rem}\
.actions{display:flex;gap:.75rem;margin-top:1.5rem}\
.actions button{flex:1;font:inherit;font-weight:600;padding:.6rem 1rem;border-radius:6px;cursor:pointer}\
#allow{background:#00639c;border:1px solid #00639c;color:#fff}\
#deny{background:#fff;border:1px solid #c3ccd6;color:#1c2733}";

/// What each scope lets the application read, as the consent page explains it.
fn scope_description(scope: &str) -> &'static str {
    match scope {
        "user.info" => "Your profile: name, birth date, height and gender.",
        "user.metrics" => {
            "Your measurements: weight, body composition, heart rate, blood pressure."
        }
        "user.activity" => "Your activity: steps, workouts and sleep.",
        "user.sleepevents" => "Notifications when you get into and out of bed.",
        _ => "",
    }
}

/// A parameter error, shown on the sandbox's own page (HTTP 400), never redirected.
#[derive(Debug)]
struct ErrorPage(String);

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        error_page(&self.0)
    }
}

fn error_page(message: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Withings sandbox - error</title><style>{STYLE}</style></head><body><main>\
         <div class=\"brand\">Withings <span class=\"badge\">sandbox</span></div>\
         <h1>Something went wrong</h1><p id=\"error\">{}</p></main></body></html>",
        escape(message)
    );
    (StatusCode::BAD_REQUEST, Html(html)).into_response()
}

/// The login and consent form. `test_user` is shown in a hint box: this is a fake server and
/// its seeded credentials are public, so whoever opens the page can log in.
fn consent_page(
    request: &AuthRequest,
    error: Option<&str>,
    email: &str,
    test_user: Option<&User>,
) -> Response {
    let mut hidden = String::new();
    let mut fields = vec![
        ("response_type", "code"),
        ("client_id", request.client_id.as_str()),
        ("redirect_uri", request.redirect_uri.as_str()),
        ("scope", request.scope.as_str()),
        ("state", request.state.as_str()),
        ("scopes_chosen", "1"),
    ];
    if request.demo {
        fields.push(("mode", "demo"));
    }
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    }
    let mut scopes = String::new();
    for s in &request.scopes {
        let _ = write!(
            scopes,
            "<label class=\"scope\"><input type=\"checkbox\" id=\"scope-{}\" name=\"grant_scope\" \
             value=\"{s}\" checked><span><code>{s}</code><small>{}</small></span></label>",
            s.replace('.', "-"),
            scope_description(s),
        );
    }
    let who = match (request.demo, test_user) {
        (true, _) => "<p id=\"demo\">Demo mode: you are logged in as the demo user, no password \
                      needed.</p>"
            .to_owned(),
        (false, Some(user)) => format!(
            "<p id=\"hint\"><strong>Sandbox test account:</strong> <code>{}</code> / <code>{}</code></p>",
            escape(&user.email),
            escape(&user.password)
        ),
        (false, None) => String::new(),
    };
    let error = error.map_or_else(String::new, |e| {
        format!("<p id=\"error\">{}</p>", escape(e))
    });
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Withings sandbox - authorize</title><style>{STYLE}</style></head><body><main>\
         <div class=\"brand\">Withings <span class=\"badge\">sandbox</span></div>\
         <h1>Log in to Withings</h1>\
         <p id=\"app\">The application <strong>{client}</strong> wants to access your \
         Withings data.</p>\
         {who}{error}\
         <form id=\"consent-form\" method=\"post\" action=\"{AUTHORIZE_PATH}\">{hidden}\
         <label class=\"field\" for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{email}\">\
         <label class=\"field\" for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\">\
         <fieldset id=\"scopes\"><legend>Permissions asked</legend>{scopes}</fieldset>\
         <div class=\"actions\">\
         <button id=\"allow\" name=\"decision\" value=\"allow\" type=\"submit\">Allow</button>\
         <button id=\"deny\" name=\"decision\" value=\"deny\" type=\"submit\">Deny</button>\
         </div></form></main></body></html>",
        client = escape(&request.client_id),
        email = escape(email),
    );
    Html(html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_callback_matches_any_port_and_loopback_host() {
        let reg = crate::LOOPBACK_CALLBACK;
        assert!(callback_matches(reg, "http://127.0.0.1/callback", false));
        assert!(callback_matches(
            reg,
            "http://127.0.0.1:8123/callback",
            false
        ));
        assert!(callback_matches(reg, "http://[::1]:8123/callback", false));
        assert!(callback_matches(reg, "http://localhost:1/callback", false));
        assert!(!callback_matches(reg, "http://127.0.0.1:8123/other", false));
        assert!(!callback_matches(
            reg,
            "https://127.0.0.1:8123/callback",
            false
        ));
        assert!(!callback_matches(
            reg,
            "http://127.0.0.2:8123/callback",
            false
        ));
        assert!(!callback_matches(
            reg,
            "http://evil.example/callback",
            false
        ));
        assert!(!callback_matches(
            reg,
            "http://127.0.0.1:8123/callback?x=1",
            false
        ));
    }

    #[test]
    fn exact_mode_refuses_other_loopback_ports() {
        let reg = crate::LOOPBACK_CALLBACK;
        assert!(callback_matches(reg, reg, true));
        assert!(!callback_matches(
            reg,
            "http://127.0.0.1:8123/callback",
            true
        ));
        assert!(!callback_matches(reg, "http://localhost/callback", true));
    }

    #[test]
    fn other_callbacks_need_an_exact_match() {
        let reg = crate::HTTPS_CALLBACK;
        assert!(callback_matches(reg, reg, false));
        assert!(!callback_matches(
            reg,
            "https://app.example.com/withings/callback/",
            false
        ));
        assert!(!callback_matches(
            reg,
            "https://app.example.com:8443/withings/callback",
            false
        ));
        assert!(!callback_matches(
            "http://127.0.0.1:9000/cb",
            "http://127.0.0.1:9001/cb",
            false
        ));
    }

    proptest::proptest! {
        #[test]
        fn callback_matching_never_panics_and_exact_always_matches(
            registered in ".{0,40}",
            requested in ".{0,40}",
        ) {
            let lenient = callback_matches(&registered, &requested, false);
            let exact = callback_matches(&registered, &requested, true);
            // Exact matching only ever refuses more.
            proptest::prop_assert!(!exact || lenient);
            proptest::prop_assert_eq!(exact, registered == requested);
            proptest::prop_assert!(callback_matches(&registered, &registered, true));
        }

        #[test]
        fn escaped_text_has_no_markup(text in ".{0,64}") {
            let out = escape(&text);
            proptest::prop_assert!(!out.contains(['<', '>', '"', '\'']));
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
