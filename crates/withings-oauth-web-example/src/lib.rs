//! A multi-user web application that connects its users' Withings accounts: the server-side
//! counterpart of the CLI demo.
//!
//! The application has a few fixed users ([`DEMO_USERS`]); its home page lists them, each with
//! a "Connect Withings" button, and for each connected one the granted scopes, the access
//! token's expiry, the last weight (through `getmeas`) and a "Disconnect" button (revoke). The
//! Withings part is [`withings_oauth_axum::WithingsLogin`]; this crate adds the pages and the
//! application's record of which Withings user each of its users connected.
//!
//! The binary (`withings-web-example`) keeps everything in a database ([`Shared::open`]: a
//! SQLite file by default, PostgreSQL for several instances) and runs against an embedded
//! sandbox, or an external Withings (the real one, or a shared sandbox) when configured; see
//! its docs for the settings. The end-to-end tests run it in-process, several instances at
//! once sharing one [`Shared`] in memory, and as several processes on one PostgreSQL
//! database.
//!
//! There is no real sign-in: the user a request is for is the `user` query parameter, which
//! must name one of [`DEMO_USERS`]. A real application reads its own session instead.

#![deny(missing_docs)]

mod accounts;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use withings_oauth::{
    Client, GetMeas, MemoryPendingLogins, MemoryStore, PendingLoginStore, Scope, Scopes,
    SessionError, StoreError, TokenStore, UserId, measure_type,
};
use withings_oauth_axum::WithingsLogin;
use withings_oauth_sql::{SqlOptions, SqlStore};

pub use accounts::{Accounts, AccountsError};

/// The application's users.
pub const DEMO_USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// What the instances of the application share: the pending logins, the credentials and the
/// accounts, all in memory ([`Shared::in_memory`]) or all in one database ([`Shared::open`]).
#[derive(Clone)]
pub struct Shared {
    /// Logins waiting for their callback.
    pub pending: Arc<dyn PendingLoginStore>,
    /// Withings credentials.
    pub tokens: Arc<dyn TokenStore>,
    /// Which Withings user each application user connected.
    pub accounts: Accounts,
}

impl Shared {
    /// Everything in memory.
    pub fn in_memory() -> Self {
        Self {
            pending: Arc::new(MemoryPendingLogins::new()),
            tokens: Arc::new(MemoryStore::new()),
            accounts: Accounts::in_memory(),
        }
    }

    /// Everything in the database at `url` (`sqlite://file.db`, or `postgres://...` for
    /// several instances): the tokens in a [`SqlStore`] opened with `options` (encrypted when
    /// they carry keys), the pending logins in its
    /// [`pending_logins`](SqlStore::pending_logins), and the accounts in the table
    /// `web_example_accounts`. Opening applies the store's migrations and creates the table.
    ///
    /// ```
    /// use withings_oauth_sql::SqlOptions;
    /// use withings_oauth_web_example::Shared;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let url = format!("sqlite://{}", dir.path().join("app.db").display());
    /// let shared = Shared::open(&url, SqlOptions::default()).await?;
    /// assert_eq!(shared.accounts.get("alice").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(url: &str, options: SqlOptions) -> Result<Self, OpenError> {
        let store = SqlStore::connect(url, options).await?;
        let accounts = Accounts::open(url).await?;
        Ok(Self {
            pending: Arc::new(store.pending_logins()),
            tokens: Arc::new(store),
            accounts,
        })
    }
}

/// Why [`Shared::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The token store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The accounts table could not be opened.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}

/// A sandbox account, shown on the home page so that a visitor can log in.
#[derive(Clone, Debug)]
pub struct SandboxAccount {
    /// Its email.
    pub email: String,
    /// Its password.
    pub password: String,
}

#[derive(Clone)]
struct App {
    withings: WithingsLogin,
    accounts: Accounts,
    sandbox_accounts: Arc<Vec<SandboxAccount>>,
}

/// The scopes the application asks for.
pub fn scopes() -> Scopes {
    [Scope::Info, Scope::Metrics].into_iter().collect()
}

/// The application: `/` (the users), `POST /disconnect?user=...`, and the Withings routes
/// (`/withings/connect?user=...` and the callback at the client's redirect URI's path).
/// `sandbox_accounts` are listed on the home page (empty against the real Withings).
pub fn router(client: Client, shared: Shared, sandbox_accounts: Vec<SandboxAccount>) -> Router {
    let record = shared.accounts.clone();
    let withings = WithingsLogin::builder(client, shared.pending, shared.tokens, owner)
        .scopes(scopes())
        .after_login("/")
        .on_connected(move |connected| {
            let record = record.clone();
            async move {
                let recorded = record.set(&connected.owner, connected.user_id).await;
                if let Err(e) = &recorded {
                    tracing::error!(error = %e, "a connected account was not recorded");
                }
                recorded
            }
        })
        .build();
    let app = App {
        withings: withings.clone(),
        accounts: shared.accounts,
        sandbox_accounts: Arc::new(sandbox_accounts),
    };
    Router::new()
        .route("/", get(home))
        .route("/disconnect", post(disconnect))
        .merge(withings.router())
        .with_state(app)
}

/// The application user a request is for: its `user` query parameter, one of [`DEMO_USERS`].
fn owner(request: &Parts) -> Option<String> {
    let query = request.uri.query()?;
    let user = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "user")?
        .1;
    DEMO_USERS
        .iter()
        .find(|u| **u == user)
        .map(|u| (*u).to_owned())
}

#[derive(serde::Deserialize)]
struct UserQuery {
    user: String,
}

async fn disconnect(State(app): State<App>, Query(query): Query<UserQuery>) -> Response {
    let user = match app.accounts.get(&query.user).await {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(e) => return unavailable(&e),
    };
    match app.withings.disconnect(user).await {
        // Disconnected, or the login is gone anyway: forget it.
        Ok(()) => forget(&app, &query.user).await,
        Err(e) if e.login_required() => forget(&app, &query.user).await,
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            Html(page(&format!(
                "<p class=\"error\" id=\"disconnect-error\">Disconnecting failed: {}. \
                 <a href=\"/\">Back</a></p>",
                escape(&e.to_string())
            ))),
        )
            .into_response(),
    }
}

async fn forget(app: &App, owner: &str) -> Response {
    match app.accounts.remove(owner).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => unavailable(&e),
    }
}

/// The page shown when the accounts can't be read or written.
fn unavailable(error: &AccountsError) -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Html(page(&format!(
            "<p class=\"error\" id=\"accounts-error\">{}. <a href=\"/\">Back</a></p>",
            escape(&error.to_string())
        ))),
    )
        .into_response()
}

/// One user's row.
struct Row {
    name: &'static str,
    connected: Option<Connection>,
}

struct Connection {
    user: UserId,
    scopes: String,
    expires: String,
    weight: Result<Option<(f64, String)>, String>,
    login_required: bool,
}

async fn home(State(app): State<App>) -> Response {
    let mut rows = Vec::new();
    for name in DEMO_USERS {
        let connected = match app.accounts.get(name).await {
            Ok(Some(user)) => Some(connection(&app.withings, user).await),
            Ok(None) => None,
            Err(e) => return unavailable(&e),
        };
        rows.push(Row { name, connected });
    }
    Html(page(&body(&rows, &app.sandbox_accounts))).into_response()
}

async fn connection(withings: &WithingsLogin, user: UserId) -> Connection {
    let session = match withings.session(user).await {
        Ok(session) => session,
        Err(e) => {
            return Connection {
                user,
                scopes: String::new(),
                expires: String::new(),
                login_required: e.login_required(),
                weight: Err(e.to_string()),
            };
        }
    };
    let weight = last_weight(&session).await;
    let status = session.status();
    Connection {
        user,
        scopes: status.scopes.to_string(),
        expires: status.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        login_required: status.login_required || matches!(&weight, Err(e) if e.login_required()),
        weight: weight.map_err(|e| e.to_string()),
    }
}

async fn last_weight(
    session: &withings_oauth::Session,
) -> Result<Option<(f64, String)>, SessionError> {
    let groups = session
        .get_meas(&GetMeas::new().meastype(measure_type::WEIGHT))
        .await?;
    Ok(groups
        .groups
        .iter()
        .filter_map(|g| Some((g.taken_at()?, g.measure(measure_type::WEIGHT)?.real_value())))
        .max_by_key(|(at, _)| *at)
        .map(|(at, kg)| (kg, at.format("%Y-%m-%d").to_string())))
}

fn body(rows: &[Row], sandbox_accounts: &[SandboxAccount]) -> String {
    let mut html = String::from(
        "<header><h1>Withings web example</h1><p class=\"lead\">Each user of this application \
         can connect their own Withings account. Logins survive across requests and server \
         instances, and are bound to the browser that started them.</p></header>\
         <table id=\"users\"><thead><tr><th>User</th><th>Withings</th><th>Scopes</th>\
         <th>Token expires</th><th>Last weight</th><th></th></tr></thead><tbody>",
    );
    for row in rows {
        let name = row.name;
        let _ = write!(
            html,
            "<tr id=\"user-{name}\"><td class=\"name\">{name}</td>"
        );
        match &row.connected {
            None => {
                let _ = write!(
                    html,
                    "<td class=\"status\"><span class=\"pill off\">Not connected</span></td>\
                     <td></td><td></td><td></td><td class=\"action\">\
                     <form method=\"post\" action=\"/withings/connect?user={name}\">\
                     <button id=\"connect-{name}\" class=\"primary\">Connect Withings</button>\
                     </form></td>"
                );
            }
            Some(c) => {
                let weight = match &c.weight {
                    Ok(Some((kg, on))) => {
                        format!("<span class=\"weight\">{kg:.1} kg</span><br><small>{on}</small>")
                    }
                    Ok(None) => "<small>no weight yet</small>".to_owned(),
                    Err(e) => format!("<small class=\"error\">{}</small>", escape(e)),
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
                     <form method=\"post\" action=\"/disconnect?user={name}\">\
                     <button id=\"disconnect-{name}\">Disconnect</button></form></td>",
                    scopes = escape(&c.scopes).replace(",", "</code> <code>"),
                    expires = escape(&c.expires),
                );
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    if !sandbox_accounts.is_empty() {
        html.push_str(
            "<section id=\"sandbox\"><h2>Sandbox accounts</h2><p>This instance talks to an \
             embedded Withings sandbox. Log in on its consent page with any of:</p><ul>",
        );
        for account in sandbox_accounts {
            let _ = write!(
                html,
                "<li><code>{}</code> / <code>{}</code></li>",
                escape(&account.email),
                escape(&account.password)
            );
        }
        html.push_str("</ul></section>");
    }
    html
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
#sandbox{margin-top:1.5rem;background:#fff8e1;border:1px solid #f3e0a6;border-radius:12px;padding:.5rem 1.25rem}\
#sandbox h2{font-size:1rem;margin:.5rem 0 0}#sandbox ul{columns:2;padding-left:1.2rem}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
