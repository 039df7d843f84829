//! `withings-oauth demo`: the whole life of a login against an embedded sandbox, offline, with
//! the same steps the real commands take, and every secret redacted.

use chrono::Utc;
use url::Url;
use withings_oauth::{AgentFuture, Prepared};
use withings_oauth::{Client, Scope, Scopes, UserAgent};
use withings_oauth::{GetMeas, measure_type};
use withings_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HTTPS_CALLBACK, Sandbox, SandboxConfig,
};

use crate::agent::AutoApproveAgent;
use crate::cli::DemoArgs;
use crate::error::{CliError, Kind};
use crate::ops::{self, redacted};
use crate::out::say;
use crate::store::Store;

const STEPS: usize = 7;

fn step(n: usize, text: impl std::fmt::Display) -> Result<(), CliError> {
    say!("[{n}/{STEPS}] {text}")
}

fn detail(text: impl std::fmt::Display) -> Result<(), CliError> {
    say!("      {text}")
}

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(Kind::Remote, format!("the demo failed: {what}: {e}"))
}

pub(crate) async fn run(args: &DemoArgs) -> Result<(), CliError> {
    say!(
        "withings-oauth demo: log in, use, refresh and revoke, against a local Withings sandbox."
    )?;
    say!("")?;

    let sandbox = Sandbox::start(SandboxConfig::default().auto_approve(!args.browser))
        .await
        .map_err(|e| failed("the sandbox could not start on 127.0.0.1", e))?;
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::store(format!("cannot create a temporary directory for the demo's store: {e}; set TMPDIR to a writable directory")))?;
    let store = Store::open(dir.path().join("tokens.json"))?;
    let redirect_uri = if args.browser {
        "http://127.0.0.1:0/callback"
    } else {
        HTTPS_CALLBACK
    };
    let client = Client::builder()
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .redirect_uri(redirect_uri)
        .base_url(sandbox.base_url())
        .build()
        .map_err(|e| failed("the demo client is misconfigured", e))?;

    step(
        1,
        format_args!(
            "Started a Withings sandbox on {} (offline: nothing leaves this machine).",
            sandbox.base_url()
        ),
    )?;
    detail(format_args!(
        "App: client id {DEFAULT_CLIENT_ID}, client secret [redacted], redirect URI {redirect_uri}."
    ))?;
    detail(format_args!(
        "Credentials go to a temporary store, deleted at the end: {}",
        store.location()
    ))?;

    step(2, "Login, asking for user.metrics and user.activity.")?;
    let scopes: Scopes = [Scope::Metrics, Scope::Activity].into_iter().collect();
    let (session, _) = if args.browser {
        detail(format_args!(
            "Your browser opens the sandbox's page: log in as {} with password {}, then Allow.",
            withings_sandbox::SEEDED_EMAIL,
            withings_sandbox::SEEDED_PASSWORD
        ))?;
        let (agent, spinner) = crate::agent::demo_browser();
        let result = ops::log_in(&client, scopes, false, &Narrated(agent), &store).await;
        spinner.finish();
        result?
    } else {
        detail(
            "The built-in agent plays the user: it opens the authorize URL with an HTTP client and \
             follows the sandbox's auto-approve redirect, as a browser does after \"Allow\".",
        )?;
        let agent = Narrated(AutoApproveAgent::new()?);
        ops::log_in(&client, scopes, false, &agent, &store).await?
    };
    let user = session.user_id();
    let first = session.access_token().await.map_err(ops::session_error)?;
    detail(format_args!(
        "Logged in user {user}; access token {}, refresh token [redacted]; saved to the store before use.",
        redacted(first.expose_secret())
    ))?;

    step(3, "Status (what `withings-oauth status` shows):")?;
    let status = session.status();
    detail(format_args!(
        "user {user}, scopes {}, stored users: {:?}",
        status.scopes,
        store
            .users()
            .await?
            .iter()
            .map(|u| u.get())
            .collect::<Vec<_>>()
    ))?;
    detail(format_args!(
        "access token: {}",
        ops::describe_expiry(status.expires_at, Utc::now())
    ))?;

    step(
        4,
        "Data calls: getmeas (POST /measure with `Authorization: Bearer <access token>`), then sleep summaries (POST /v2/sleep).",
    )?;
    let answer = session
        .get_meas(&GetMeas::new())
        .await
        .map_err(ops::session_error)?;
    let weight = answer
        .groups
        .iter()
        .find_map(|g| g.measure(measure_type::WEIGHT))
        .map(|m| format!("; the latest weight: {:.1} kg", m.real_value()))
        .unwrap_or_default();
    let paging = if answer.more {
        " (one page: `more` says there are others)"
    } else {
        ""
    };
    detail(format_args!(
        "Withings answered {} measure groups{paging}{weight}.",
        answer.groups.len()
    ))?;
    let day = |days_ago: i64| {
        (Utc::now() - chrono::TimeDelta::days(days_ago))
            .format("%Y-%m-%d")
            .to_string()
    };
    let (week_start, week_end) = (day(7), day(1));
    let sleep = session
        .call(
            "v2/sleep",
            &[
                ("action", "getsummary"),
                ("startdateymd", &week_start),
                ("enddateymd", &week_end),
            ],
        )
        .await
        .map_err(ops::session_error)?;
    detail(sleep_summary(&sleep))?;

    step(
        5,
        "Refresh: a new token pair, saved before the new access token is used.",
    )?;
    session.refresh().await.map_err(ops::session_error)?;
    let fresh = session.access_token().await.map_err(ops::session_error)?;
    let changed = fresh.expose_secret() != first.expose_secret();
    detail(format_args!(
        "New access token {}, {}; new refresh token [redacted]; the access token {}.",
        redacted(fresh.expose_secret()),
        ops::describe_expiry(session.status().expires_at, Utc::now()),
        if changed { "changed" } else { "did NOT change" }
    ))?;
    if !changed {
        return Err(failed("refresh", "the access token did not change"));
    }

    step(
        6,
        "Revoke: Withings withdraws the app's access; the local credentials are deleted.",
    )?;
    session.revoke().await.map_err(ops::session_error)?;
    detail(format_args!(
        "Users left in the store: {}.",
        store.users().await?.len()
    ))?;

    step(7, "The revoked access token is refused now:")?;
    let measure_url = client
        .api_url()
        .join("measure")
        .map_err(|e| failed("the measure URL", e))?;
    match refusal(&measure_url, fresh.expose_secret()).await? {
        Some((status, error)) => {
            detail(format_args!("/measure answered status {status}: {error}"))?;
        }
        None => return Err(failed("revoke", "the revoked token was still accepted")),
    }
    match ops::session(&client, &store, user).await {
        Err(e) if e.kind() == Kind::LoginRequired => {
            detail(format_args!("`withings-oauth token` would now say: {e}"))?;
        }
        _ => return Err(failed("revoke", "the store still has a usable login")),
    }

    sandbox.shutdown().await;
    say!("")?;
    say!(
        "Done. To log in to the real Withings, configure your app and run `withings-oauth login` (see `withings-oauth --help`)."
    )?;
    Ok(())
}

/// One line about the nights of a sleep `getsummary` answer.
fn sleep_summary(body: &serde_json::Value) -> String {
    let nights = body["series"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let last = nights
        .last()
        .and_then(|n| n["data"]["total_sleep_time"].as_i64())
        .map(|secs| {
            format!(
                "; the last one {} h {:02} min asleep",
                secs / 3600,
                secs % 3600 / 60
            )
        })
        .unwrap_or_default();
    format!(
        "Sleep summaries of the last week: {} nights{last}.",
        nights.len()
    )
}

/// Calls `getmeas` by hand with a token the session no longer has: Withings' status and error
/// text if it refuses the call, `None` if it accepts it.
async fn refusal(url: &Url, token: &str) -> Result<Option<(i64, String)>, CliError> {
    let body: serde_json::Value = reqwest::Client::new()
        .post(url.clone())
        .bearer_auth(token)
        .form(&[("action", "getmeas")])
        .send()
        .await
        .map_err(|e| failed("the data call", e.without_url()))?
        .json()
        .await
        .map_err(|e| failed("the data call's answer", e.without_url()))?;
    match body["status"].as_i64() {
        Some(0) => Ok(None),
        Some(status) => Ok(Some((
            status,
            body["error"].as_str().unwrap_or("no error text").to_owned(),
        ))),
        None => Err(failed("the data call", "the answer has no status")),
    }
}

/// Shows the authorize URL (with its `state` redacted) before handing it to the real agent.
struct Narrated<A>(A);

impl<A: UserAgent> UserAgent for Narrated<A> {
    fn prepare<'a>(&'a self, redirect_uri: &'a Url) -> AgentFuture<'a, Prepared> {
        self.0.prepare(redirect_uri)
    }

    fn run<'a>(&'a self, prepared: Prepared, authorize_url: &'a Url) -> AgentFuture<'a, Url> {
        let query: Vec<&str> = authorize_url
            .query()
            .unwrap_or_default()
            .split('&')
            .map(|pair| {
                if pair.starts_with("state=") {
                    "state=[redacted]"
                } else {
                    pair
                }
            })
            .collect();
        let shown = format!(
            "{}?{}",
            &authorize_url[..url::Position::AfterPath],
            query.join("&")
        );
        // A closed stdout is noticed, and ends the demo, at the next step's line.
        let _ = detail(format_args!("Authorize URL: {shown}"));
        self.0.run(prepared, authorize_url)
    }
}
