//! `withings-oauth-chaos-fleet`: one fleet instance of a fault campaign. It serves a range of
//! users from the shared store through `withings_oauth_fleet::Fleet`, as fast as its share of
//! the rate limit allows, and writes every operation as a history line on standard output
//! (the campaign appends them to the instance's history file; a pipe, unlike a file, keeps
//! working when the instance's file writes are made to fail).
//!
//! Settings come from the environment (`CHAOS_*`, see [`Settings::from_env`]); the store's
//! keys from `WITHINGS_STORE_KEYS`. Runs until killed or interrupted.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use withings_oauth::{Client, GetMeas, SessionError, TokenStore, UserId};
use withings_oauth_chaos::history::{Op, OpKind, Outcome, hash, now_ms};
use withings_oauth_fleet::{Fleet, FleetError, RateLimit, SqlRateLimiter};
use withings_oauth_sql::{SqlOptions, SqlStore};

/// What the campaign tells an instance.
struct Settings {
    instance: String,
    database: String,
    sandbox: url::Url,
    users: Vec<u64>,
    /// Requests a minute for the application, shared by every instance through the store.
    budget: u32,
    instances: u32,
    lease: Duration,
    workers: usize,
    /// How far this instance's clock is set off (faketime), in milliseconds: subtracted from
    /// the history's times, which are the real ones.
    skew_ms: i64,
    seed: u64,
    /// This instance's number, from 1: its prober asks for the users whose position modulo
    /// `instances` is `index - 1`.
    index: u32,
    /// The first user who logs in through the web instances.
    first_web_user: u64,
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set: the campaign sets it"))
}

fn number<T: std::str::FromStr>(name: &str) -> Result<T, String> {
    var(name)?
        .parse()
        .map_err(|_| format!("{name} is not a number"))
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let (first, last): (u64, u64) = (number("CHAOS_FIRST_USER")?, number("CHAOS_LAST_USER")?);
        Ok(Self {
            instance: var("CHAOS_INSTANCE")?,
            database: var("CHAOS_DATABASE")?,
            sandbox: var("CHAOS_SANDBOX")?
                .parse()
                .map_err(|_| "CHAOS_SANDBOX is not a URL".to_owned())?,
            users: (first..=last).collect(),
            budget: number("CHAOS_BUDGET")?,
            instances: number("CHAOS_INSTANCES")?,
            lease: Duration::from_millis(number("CHAOS_LEASE_MS")?),
            workers: number("CHAOS_WORKERS")?,
            skew_ms: number("CHAOS_SKEW_MS")?,
            seed: number("CHAOS_SEED")?,
            index: number("CHAOS_INDEX")?,
            first_web_user: number("CHAOS_FIRST_WEB_USER")?,
        })
    }
}

/// Writes history lines on standard output, with the real time.
struct History {
    skew_ms: i64,
}

impl History {
    fn real(&self, t: u64) -> u64 {
        u64::try_from(i64::try_from(t).unwrap_or(i64::MAX) - self.skew_ms).unwrap_or(0)
    }

    fn record(&self, mut op: Op) {
        op.inv = self.real(op.inv);
        op.done = op.done.map(|t| self.real(t));
        if let Ok(mut line) = serde_json::to_string(&op) {
            line.push('\n');
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// A short name of a fleet error, for the history (never a token).
fn kind(e: &FleetError) -> &'static str {
    match e {
        FleetError::NeedsReauthorization { .. } => "needs_reauthorization",
        FleetError::CoolingDown { .. } => "cooling_down",
        FleetError::RateLimited { .. } => "rate_limited",
        FleetError::StoreNotSaving { .. } => "store_not_saving",
        FleetError::Session(SessionError::Store(_)) => "store",
        FleetError::Session(SessionError::TokensNotSaved(_)) => "tokens_not_saved",
        FleetError::Session(SessionError::ConcurrentRefreshFailed { .. }) => {
            "concurrent_refresh_failed"
        }
        FleetError::Session(SessionError::Api(_)) => "withings",
        FleetError::Session(_) => "session",
        _ => "other",
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("withings-oauth-chaos-fleet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    // A write past a file-size limit (a fault of the campaign) must fail, not kill: with a
    // handler installed, SIGXFSZ no longer ends the process.
    let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
        rustix::process::Signal::XFSZ.as_raw(),
    ))?;
    let options = SqlOptions::from_env()?.lease_ttl(settings.lease);
    let store = SqlStore::connect(&settings.database, options).await?;
    let limiter = SqlRateLimiter::new(&store, RateLimit::per_minute(settings.budget))
        .instances(settings.instances);
    let http = reqwest::Client::builder()
        .user_agent(format!("withings-oauth-chaos/{}", settings.instance))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()?;
    let client = Client::builder()
        .client_id(withings_sandbox::DEFAULT_CLIENT_ID)
        .client_secret(withings_sandbox::DEFAULT_CLIENT_SECRET)
        .redirect_uri(withings_sandbox::LOOPBACK_CALLBACK)
        .base_url(settings.sandbox.clone())
        .http_client(http);
    let tokens: Arc<dyn TokenStore> = Arc::new(store);
    let fleet = Fleet::builder(client, tokens.clone())
        .limiter(Arc::new(limiter))
        .cooldown(Duration::from_secs(1), Duration::from_secs(8))
        .backoff(Duration::from_millis(500), Duration::from_secs(4), 4)
        .build()?;
    let fleet = Arc::new(fleet);
    let history = Arc::new(History {
        skew_ms: settings.skew_ms,
    });
    let users = Arc::new(settings.users);
    let instance: Arc<str> = settings.instance.into();
    eprintln!("{instance} serving {} users", users.len());
    let mut tasks = Vec::new();
    for worker in 0..settings.workers {
        let (fleet, tokens, history, users, instance) = (
            fleet.clone(),
            tokens.clone(),
            history.clone(),
            users.clone(),
            instance.clone(),
        );
        let seed = settings.seed ^ now_ms() ^ (worker as u64) << 48;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            // Random users: token requests mostly; data calls, reads and revokes now and then.
            loop {
                let user = users[rng.random_range(0..users.len())];
                let roll = rng.random_range(0..1000u32);
                let op = if roll < 60 {
                    data(&fleet, &instance, user).await
                } else if roll < 400 {
                    read(&*tokens, &instance, user).await
                } else {
                    token(&fleet, &instance, user).await
                };
                history.record(op);
                // A breath between operations, so that fresh tokens are not asked for in a
                // busy loop.
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
            }
        }));
    }
    // The prober: every user of this instance's share asked for a token every 2 s after the
    // last answer, each on its own, so that each one is asked for often whatever the random
    // workers do.
    let share: Vec<u64> = users
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 % settings.instances == settings.index - 1)
        .map(|(_, u)| *u)
        .collect();
    // A revoke of one of the users logged in at the start, now and then (the web users log
    // out through the web instances).
    let (revoker, revoked_history, revoking) = (fleet.clone(), history.clone(), instance.clone());
    let first_web_user = settings.first_web_user;
    let revoke_users = users.clone();
    let mut revoke_rng = StdRng::seed_from_u64(settings.seed ^ 0x7e70);
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(revoke_rng.random_range(45..135))).await;
            let user = revoke_users[revoke_rng.random_range(0..revoke_users.len())];
            if user < first_web_user {
                revoked_history.record(revoke(&revoker, &revoking, user).await);
            }
        }
    }));
    for user in share {
        let (fleet, history, instance) = (fleet.clone(), history.clone(), instance.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                history.record(token(&fleet, &instance, user).await);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
    }
    // They run until the process is stopped; one that ends (a panic) ends the instance.
    let mut running = tokio::task::JoinSet::new();
    for task in tasks {
        running.spawn(task);
    }
    if let Some(ended) = running.join_next().await {
        ended??;
    }
    Ok(())
}

/// The longest an operation is waited for; after it, its outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

async fn token(fleet: &Fleet, instance: &str, user: u64) -> Op {
    let op = Op::start(OpKind::Token, instance).user(user);
    match tokio::time::timeout(OP_TIMEOUT, fleet.access_token(UserId::new(user))).await {
        Ok(Ok(token)) => {
            let mut op = op.end(Outcome::Ok);
            op.access = Some(hash(token.expose_secret()));
            op
        }
        Ok(Err(e)) => op.end(Outcome::Failed).detail(kind(&e)),
        Err(_) => op.detail("timeout"),
    }
}

async fn data(fleet: &Fleet, instance: &str, user: u64) -> Op {
    let op = Op::start(OpKind::Data, instance).user(user);
    let query = GetMeas::new();
    match tokio::time::timeout(OP_TIMEOUT, fleet.get_meas(UserId::new(user), &query)).await {
        Ok(Ok(_)) => op.end(Outcome::Ok),
        Ok(Err(e)) => op.end(Outcome::Failed).detail(kind(&e)),
        Err(_) => op.detail("timeout"),
    }
}

async fn read(store: &dyn TokenStore, instance: &str, user: u64) -> Op {
    let op = Op::start(OpKind::Read, instance).user(user);
    match tokio::time::timeout(OP_TIMEOUT, store.load(UserId::new(user))).await {
        Ok(Ok(entry)) => {
            let mut op = op.end(Outcome::Ok);
            op.version = entry.map(|e| e.version.get());
            op
        }
        Ok(Err(_)) => op.end(Outcome::Failed).detail("store"),
        Err(_) => op.detail("timeout"),
    }
}

async fn revoke(fleet: &Fleet, instance: &str, user: u64) -> Op {
    let op = Op::start(OpKind::Revoke, instance).user(user);
    match tokio::time::timeout(OP_TIMEOUT, fleet.revoke(UserId::new(user))).await {
        Ok(Ok(())) => op.end(Outcome::Ok),
        Ok(Err(e)) => op.end(Outcome::Failed).detail(kind(&e)),
        Err(_) => op.detail("timeout"),
    }
}
