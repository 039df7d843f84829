//! `withings-web-example`: the web example, against an embedded sandbox by default, keeping
//! its users, sessions, tokens, pending logins and accounts in a database.
//!
//! ```console
//! $ cargo run -p withings-oauth-web-example
//! open http://127.0.0.1:PORT/
//! $ cargo run -p withings-oauth-web-example -- --help
//! ```
//!
//! Every setting is a flag and an environment variable, listed by `--help` and in the crate's
//! README with a recipe for two instances behind one redirect URI.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;
use withings_oauth::Client;
use withings_oauth::chrono::TimeDelta;
use withings_oauth_axum::CookieKey;
use withings_oauth_sql::SqlOptions;
use withings_oauth_web_example::{
    Config, SandboxAccount, Shared, operations_router, read_cookie_key, read_or_create_cookie_key,
    router,
};
use withings_sandbox::{Sandbox, SandboxConfig};

/// How many numbered sandbox users (`user1@example.com` ...) the embedded sandbox has.
const SANDBOX_USERS: u32 = 5;

const AFTER_HELP: &str = "\
Secrets, read from the environment only (never a flag: a command line is visible to every
local user):
  WITHINGS_CLIENT_SECRET      the Withings app's client secret (with --client-id)
  WITHINGS_WEB_COOKIE_KEY     the cookie key itself, base64 of 64 random bytes
                              (`openssl rand -base64 64`), instead of --cookie-key-file
  WITHINGS_STORE_KEYS         the keys that encrypt tokens at rest, \"k1:base64,...\" (the
                              first one active), or WITHINGS_STORE_KEYS_FILE: see
                              withings-oauth-sql
Logs: RUST_LOG (default: info for the login routes, warnings for the rest).

Without --client-id the example starts its own Withings sandbox, seeds demo accounts and lists
their passwords on its page. Several instances share one database, one cookie key and one
Withings app: see the crate's README for a recipe.";

/// A multi-user web application connecting its users' Withings accounts.
#[derive(Parser)]
#[command(name = "withings-web-example", version, about, after_help = AFTER_HELP)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where users, sessions, tokens, pending logins and accounts live: `sqlite://file.db`
    /// (one instance) or `postgres://user:password@host/db` (shared by several instances).
    #[arg(
        long,
        env = "WITHINGS_WEB_DATABASE",
        default_value = "sqlite://withings-web-example.db",
        hide_env_values = true
    )]
    database: String,
    /// The address to listen on (port 0: a free port).
    #[arg(
        long,
        env = "WITHINGS_WEB_LISTEN",
        default_value = "127.0.0.1:0",
        hide_env_values = true
    )]
    listen: SocketAddr,
    /// Where to serve /metrics (Prometheus), /healthz and /readyz: an address only the
    /// monitoring reaches, such as 127.0.0.1:9464 (port 0: a free port). Off unless set.
    #[arg(
        long,
        env = "WITHINGS_WEB_METRICS_LISTEN",
        value_name = "ADDRESS",
        hide_env_values = true
    )]
    metrics_listen: Option<SocketAddr>,
    /// The Withings app's client id; its secret is WITHINGS_CLIENT_SECRET. Without it, an
    /// embedded sandbox is started.
    #[arg(long, env = "WITHINGS_CLIENT_ID", hide_env_values = true)]
    client_id: Option<String>,
    /// The callback URL registered for the app (with --client-id): the one address Withings
    /// sends browsers back to, served by this program (a load balancer in front of several
    /// instances). An `https` URL makes the cookies `Secure`.
    #[arg(long, env = "WITHINGS_REDIRECT_URI", hide_env_values = true)]
    redirect_uri: Option<Url>,
    /// Another Withings server than the real one (with --client-id): a sandbox shared by
    /// several instances, say.
    #[arg(long, env = "WITHINGS_BASE_URL", hide_env_values = true)]
    withings_base_url: Option<Url>,
    /// A file (mode 0600) holding the cookie key, base64 of 64 random bytes: it signs the
    /// session cookie and encrypts the login-binding cookie, and must be the same on every
    /// instance. Default with SQLite: `<database file>.cookie-key`, generated on first start;
    /// with PostgreSQL, this or WITHINGS_WEB_COOKIE_KEY is required.
    #[arg(long, env = "WITHINGS_WEB_COOKIE_KEY_FILE", hide_env_values = true)]
    cookie_key_file: Option<PathBuf>,
    /// How long a session lasts without a request, in minutes.
    #[arg(
        long,
        env = "WITHINGS_WEB_SESSION_MINUTES",
        default_value_t = 480,
        value_parser = clap::value_parser!(u32).range(1..=525_600),
        hide_env_values = true
    )]
    session_minutes: u32,
    /// How long a started Withings login waits for its callback, in minutes.
    #[arg(
        long,
        env = "WITHINGS_WEB_PENDING_LOGIN_MINUTES",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=60),
        hide_env_values = true
    )]
    pending_login_minutes: u32,
    /// Whether the demo accounts (alice ... erin, published passwords) exist and may sign in.
    /// Default: true with the embedded sandbox, false otherwise; refused against the real
    /// Withings.
    #[arg(long, env = "WITHINGS_WEB_DEMO_ACCOUNTS", hide_env_values = true)]
    demo_accounts: Option<bool>,
}

#[derive(Subcommand)]
enum Command {
    /// Adds a user of the application (or sets their password), reading the password from the
    /// first line of standard input, then exits.
    AddUser {
        /// The user's name.
        name: String,
    },
}

/// The smallest password `add-user` takes.
const MIN_PASSWORD_CHARS: usize = 10;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("withings-web-example: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "withings_oauth=info,withings_oauth_axum=info,withings_oauth_web_example=info,withings_oauth_sql=warn,withings_sandbox=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let pending_lifetime = TimeDelta::minutes(args.pending_login_minutes.into());
    let open = || async {
        Shared::open(&args.database, SqlOptions::from_env()?, pending_lifetime)
            .await
            .map_err(Box::<dyn std::error::Error>::from)
    };

    if let Some(Command::AddUser { name }) = &args.command {
        let mut password = String::new();
        std::io::stdin().lock().read_line(&mut password)?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!(
                "the password on standard input has fewer than {MIN_PASSWORD_CHARS} characters: choose a longer one"
            )
            .into());
        }
        open().await?.users.add(name, password).await?;
        eprintln!("user {name} can sign in");
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let (client, sandbox, sandbox_accounts) = match external_withings(&args)? {
        Some(client) => (client, None, Vec::new()),
        None => {
            let config = SandboxConfig::default().seed_users(SANDBOX_USERS);
            let accounts = config
                .users()
                .iter()
                .map(|u| SandboxAccount {
                    email: u.email.clone(),
                    password: u.password.clone(),
                })
                .collect();
            let sandbox = Sandbox::start(config).await?;
            let client = Client::builder()
                .client_id(withings_sandbox::DEFAULT_CLIENT_ID)
                .client_secret(withings_sandbox::DEFAULT_CLIENT_SECRET)
                .redirect_uri(format!("http://{local}/callback").as_str())
                .base_url(sandbox.base_url())
                .build()?;
            (client, Some(sandbox), accounts)
        }
    };
    let demo_accounts = args.demo_accounts.unwrap_or(sandbox.is_some());
    if demo_accounts && sandbox.is_none() && args.withings_base_url.is_none() {
        return Err("demo accounts have published passwords: they are for a sandbox (set --withings-base-url / WITHINGS_BASE_URL to one), never the real Withings; add your users with `withings-web-example add-user NAME`".into());
    }
    match &sandbox {
        Some(sandbox) => eprintln!("embedded Withings sandbox at {}", sandbox.base_url()),
        None => eprintln!("Withings API at {}", client.api_url()),
    }

    // A missing key stops a shared database's instance before it touches the database; the
    // SQLite default's key is generated beside the database once the store made its directory.
    let key_source = cookie_key_source(&args)?;
    let shared = open().await?;
    let cookie_key = match key_source {
        KeySource::Configured(key) => key,
        KeySource::BesideSqlite(path) => read_or_create_cookie_key(&path)?,
        KeySource::None => {
            return Err("the database URL names no SQLite file: set a cookie key".into());
        }
    };
    if demo_accounts {
        shared.users.seed_demo_accounts().await?;
    }
    let _cleanup = shared.spawn_session_cleanup();
    let mut config = Config::new(client, cookie_key);
    config.pending_login_lifetime = pending_lifetime;
    config.session_lifetime = Duration::from_secs(u64::from(args.session_minutes) * 60);
    config.demo_accounts = demo_accounts;
    config.sandbox_accounts = sandbox_accounts;
    // Installed before any call, so that nothing the libraries record is lost.
    let operations = match args.metrics_listen {
        Some(address) => {
            let metrics = withings_oauth_axum::install_metrics_recorder()?;
            let listener = tokio::net::TcpListener::bind(address).await?;
            println!("metrics at http://{}/metrics", listener.local_addr()?);
            let app = operations_router(metrics, shared.clone());
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        None => None,
    };
    let app = router(config, shared);
    println!("open http://{local}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(operations) = operations {
        operations.abort();
    }
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    Ok(())
}

/// The external Withings the settings name, if they name one.
fn external_withings(args: &Args) -> Result<Option<Client>, Box<dyn std::error::Error>> {
    let Some(client_id) = &args.client_id else {
        if args.withings_base_url.is_some() || args.redirect_uri.is_some() {
            return Err("--withings-base-url and --redirect-uri go with --client-id (WITHINGS_CLIENT_ID) and WITHINGS_CLIENT_SECRET: the app registered there".into());
        }
        return Ok(None);
    };
    let secret = std::env::var("WITHINGS_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or("WITHINGS_CLIENT_SECRET is not set (it goes with --client-id)")?;
    let redirect = args
        .redirect_uri
        .as_ref()
        .ok_or("--redirect-uri (WITHINGS_REDIRECT_URI) is not set (it goes with --client-id)")?;
    let mut builder = Client::builder()
        .client_id(client_id.clone())
        .client_secret(secret)
        .redirect_uri(redirect.as_str());
    if let Some(base) = &args.withings_base_url {
        builder = builder.base_url(base.clone());
    }
    Ok(Some(builder.build()?))
}

/// Where the cookie key comes from.
enum KeySource {
    /// WITHINGS_WEB_COOKIE_KEY, or the key file.
    Configured(CookieKey),
    /// This file beside the SQLite database, generated on first start.
    BesideSqlite(PathBuf),
    /// None: the database URL is neither SQLite's nor PostgreSQL's (opening it says why).
    None,
}

/// The cookie key the settings give; for a SQLite database without one, the file beside it;
/// an error for a PostgreSQL database without one.
fn cookie_key_source(args: &Args) -> Result<KeySource, Box<dyn std::error::Error>> {
    if let Some(key) = std::env::var_os("WITHINGS_WEB_COOKIE_KEY") {
        let key = key
            .to_str()
            .ok_or("WITHINGS_WEB_COOKIE_KEY is not text: it must be base64")?;
        return CookieKey::from_base64(key)
            .map(KeySource::Configured)
            .map_err(|e| format!("WITHINGS_WEB_COOKIE_KEY: {e}").into());
    }
    if let Some(path) = &args.cookie_key_file {
        return Ok(KeySource::Configured(read_cookie_key(path)?));
    }
    if let Some(db) = sqlite_file(&args.database) {
        let mut path = db.into_os_string();
        path.push(".cookie-key");
        return Ok(KeySource::BesideSqlite(PathBuf::from(path)));
    }
    if !args.database.starts_with("postgres") {
        return Ok(KeySource::None);
    }
    Err("a database shared by several instances needs one cookie key for all: set --cookie-key-file (WITHINGS_WEB_COOKIE_KEY_FILE) or WITHINGS_WEB_COOKIE_KEY to base64 of 64 random bytes (`openssl rand -base64 64`)".into())
}

/// The file of a `sqlite://` URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}
