//! The HTML of the example's pages: home (signed out: the sign-in form; signed in: the user's
//! Withings link), and the failure page, which shows what to do and a reference, never the
//! details (they go to the log under that reference).

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::SandboxAccount;
use crate::users::{DEMO_USERS, demo_password};

/// The signed-in user's Withings link, as the home page shows it.
pub(crate) struct Connection {
    pub(crate) user: withings_oauth::UserId,
    pub(crate) scopes: String,
    pub(crate) expires: String,
    /// The last weight and its day; `Err` holds the reference of a failure.
    pub(crate) weight: Result<Option<(f64, String)>, String>,
    pub(crate) login_required: bool,
}

/// The home page of a visitor who is not signed in: the sign-in form, and the demo and sandbox
/// accounts when there are.
pub(crate) fn signed_out(
    refused: bool,
    demo_accounts: bool,
    sandbox_accounts: &[SandboxAccount],
) -> String {
    let mut html = String::from(HEADER);
    if refused {
        html.push_str(
            "<p class=\"error\" id=\"sign-in-error\">That name and password do not match: \
             try again.</p>",
        );
    }
    html.push_str(
        "<form id=\"sign-in-form\" class=\"card\" method=\"post\" action=\"/sign-in\">\
         <h2>Sign in</h2>\
         <label>Name <input id=\"name\" name=\"name\" autocomplete=\"username\" required></label>\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label>\
         <button id=\"sign-in\" class=\"primary\">Sign in</button></form>",
    );
    if demo_accounts {
        html.push_str(
            "<section id=\"demo-accounts\" class=\"note\"><h2>Demo accounts</h2><p>This \
             instance runs on a Withings sandbox, so it has demo accounts with published \
             passwords:</p><ul>",
        );
        for name in DEMO_USERS {
            let _ = write!(
                html,
                "<li><code>{name}</code> / <code>{}</code></li>",
                demo_password(name)
            );
        }
        html.push_str("</ul></section>");
    }
    html.push_str(&sandbox(sandbox_accounts));
    page(&html)
}

/// The home page of signed-in user `name`: their Withings link, or a button to make one.
pub(crate) fn signed_in(
    name: &str,
    connection: Option<&Connection>,
    sandbox_accounts: &[SandboxAccount],
) -> String {
    let name = escape(name);
    let mut html = String::from(HEADER);
    let _ = write!(
        html,
        "<div class=\"who\"><span>Signed in as <strong id=\"signed-in-as\">{name}</strong></span>\
         <form method=\"post\" action=\"/sign-out\"><button id=\"sign-out\">Sign out</button>\
         </form></div>\
         <table id=\"users\"><thead><tr><th>User</th><th>Withings</th><th>Scopes</th>\
         <th>Token expires</th><th>Last weight</th><th></th></tr></thead><tbody>\
         <tr id=\"user-{name}\"><td class=\"name\">{name}</td>"
    );
    match connection {
        None => html.push_str(
            "<td class=\"status\"><span class=\"pill off\">Not connected</span></td>\
             <td></td><td></td><td></td><td class=\"action\">\
             <form method=\"post\" action=\"/withings/connect\">\
             <button id=\"connect\" class=\"primary\">Connect Withings</button>\
             </form></td>",
        ),
        Some(c) => {
            let weight = match &c.weight {
                Ok(Some((kg, on))) => {
                    format!("<span class=\"weight\">{kg:.1} kg</span><br><small>{on}</small>")
                }
                Ok(None) => "<small>no weight yet</small>".to_owned(),
                Err(reference) => format!(
                    "<small class=\"error\">not available now (reference <code>{}</code>)</small>",
                    escape(reference)
                ),
            };
            let state = if c.login_required {
                "<span class=\"pill warn\">Connect again</span>".to_owned()
            } else {
                format!(
                    "<span class=\"pill on\">Connected</span><br><small class=\"withings-user\" \
                     data-withings-user=\"{user}\">Withings user {user}</small>",
                    user = c.user
                )
            };
            let _ = write!(
                html,
                "<td class=\"status\">{state}</td><td class=\"scopes\"><code>{scopes}</code></td>\
                 <td class=\"expires\">{expires}</td><td>{weight}</td><td class=\"action\">\
                 <form method=\"post\" action=\"/disconnect\">\
                 <button id=\"disconnect\">Disconnect</button></form></td>",
                scopes = escape(&c.scopes).replace(",", "</code> <code>"),
                expires = escape(&c.expires),
            );
        }
    }
    html.push_str("</tr></tbody></table>");
    html.push_str(&sandbox(sandbox_accounts));
    page(&html)
}

const HEADER: &str = "<header><h1>Withings web example</h1><p class=\"lead\">Each user of this \
    application can connect their own Withings account. Logins survive across requests and \
    server instances, and are bound to the browser and the user that started them.</p></header>";

fn sandbox(accounts: &[SandboxAccount]) -> String {
    if accounts.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<section id=\"sandbox\" class=\"note\"><h2>Sandbox accounts</h2><p>This instance talks \
         to an embedded Withings sandbox. Log in on its consent page with any of:</p><ul>",
    );
    for account in accounts {
        let _ = write!(
            html,
            "<li><code>{}</code> / <code>{}</code></li>",
            escape(&account.email),
            escape(&account.password)
        );
    }
    html.push_str("</ul></section>");
    html
}

/// A failure the user can't fix: `what_to_do` and a fresh reference on the page; `detail`,
/// with that reference, in the log (at `ERROR`).
pub(crate) fn failure(
    status: StatusCode,
    what_to_do: &str,
    detail: &dyn std::fmt::Display,
) -> Response {
    let reference = logged(detail);
    let body = format!(
        "<div id=\"failure\" class=\"card\"><h2>Something went wrong</h2>\
         <p id=\"message\">{}</p><p id=\"reference\">If it happens again, tell the \
         application's support this reference: <code>{reference}</code>.</p>\
         <p><a id=\"back\" href=\"/\">Back</a></p></div>",
        escape(what_to_do)
    );
    html(status, page(&body))
}

/// Logs `detail` at `ERROR` under a fresh reference, and returns the reference.
pub(crate) fn logged(detail: &dyn std::fmt::Display) -> String {
    let reference = new_reference();
    tracing::error!(reference, error = %detail, "request failed");
    reference
}

/// A short random reference for a failure.
fn new_reference() -> String {
    let mut bytes = [0u8; 4];
    // Without the OS's random source, the time tells failures apart well enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// An HTML response that no cache keeps (pages show who is signed in).
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn page(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Withings web example</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>"
    )
}

const STYLE: &str = "\
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f6f8;color:#1d2430}\
main{max-width:66rem;margin:2.5rem auto;padding:0 1.5rem}\
h1{font-size:1.6rem;margin:0 0 .25rem}.lead{color:#5a6472;margin:0 0 1.5rem}\
h2{font-size:1.1rem;margin:0 0 .75rem}\
.card{background:#fff;border-radius:12px;box-shadow:0 1px 8px rgba(0,0,0,.07);padding:1.25rem 1.5rem;max-width:24rem}\
.card label{display:block;margin:0 0 .75rem;color:#5a6472;font-size:.9rem}\
.card input{display:block;width:100%;box-sizing:border-box;font:inherit;padding:.45rem .6rem;margin-top:.2rem;border:1px solid #c9d0d8;border-radius:8px}\
.who{display:flex;justify-content:space-between;align-items:center;margin:0 0 1rem}\
table{width:100%;border-collapse:collapse;background:#fff;border-radius:12px;overflow:hidden;\
box-shadow:0 1px 8px rgba(0,0,0,.07)}\
th,td{padding:.8rem 1rem;text-align:left;border-bottom:1px solid #e7eaee;vertical-align:middle;white-space:nowrap}\
td.scopes{white-space:normal}td.scopes code{display:inline-block;margin:.1rem 0}\
th{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:#6b7480;background:#fafbfc}\
tr:last-child td{border-bottom:none}td.name{font-weight:600;text-transform:capitalize}\
td.action{text-align:right}form{margin:0}\
button{font:inherit;padding:.4rem .9rem;border-radius:8px;border:1px solid #c9d0d8;background:#fff;cursor:pointer}\
button.primary{background:#0b63ce;border-color:#0b63ce;color:#fff}\
.pill{display:inline-block;padding:.1rem .6rem;border-radius:999px;font-size:.8rem;font-weight:600}\
.pill.on{background:#e3f4e8;color:#1e7b3a}.pill.off{background:#eef0f3;color:#6b7480}\
.pill.warn{background:#fdecea;color:#b3261e}\
small{color:#6b7480}.weight{font-weight:600}.error{color:#b3261e}\
code{font-size:.85em;background:#f0f2f5;padding:.05rem .3rem;border-radius:4px}\
.note{margin-top:1.5rem;background:#fff8e1;border:1px solid #f3e0a6;border-radius:12px;padding:.5rem 1.25rem}\
.note h2{font-size:1rem;margin:.5rem 0 0}.note ul{columns:2;padding-left:1.2rem}";

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
