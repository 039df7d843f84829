//! `withings-web-example`: the web example, against an embedded sandbox by default, keeping
//! its users' tokens, pending logins and accounts in a database.
//!
//! ```console
//! $ cargo run -p withings-oauth-web-example
//! open http://127.0.0.1:PORT/
//! ```
//!
//! Settings (each flag also reads the environment variable named after it):
//! - `--database` / `WITHINGS_WEB_DATABASE`: where tokens, pending logins and accounts live;
//!   default `sqlite://withings-web-example.db` (a file in the current directory). With
//!   `postgres://user:password@host/db` several instances share everything, so a login
//!   started on one can finish on another. Tokens are encrypted when `WITHINGS_STORE_KEYS`
//!   (or `WITHINGS_STORE_KEYS_FILE`) is set, see `withings-oauth-sql`.
//! - `--listen` / `WITHINGS_WEB_LISTEN`: the address to listen on; default `127.0.0.1:0`, a
//!   free port.
//!
//! Against an external Withings, set `WITHINGS_CLIENT_ID`, `WITHINGS_CLIENT_SECRET` and
//! `WITHINGS_REDIRECT_URI` (a callback URL registered for the app, whose path is served here,
//! e.g. `https://app.example.com/callback` behind a reverse proxy to this server), and
//! `WITHINGS_BASE_URL` for another server than the real Withings (a sandbox shared by several
//! instances, say). Without `WITHINGS_CLIENT_ID` the binary starts its own sandbox; that
//! sandbox forgets its tokens when the binary stops, so users connected in an earlier run are
//! shown as "Connect again" in the next one (their stored tokens are refused).

use std::net::SocketAddr;

use clap::Parser;
use url::Url;
use withings_oauth::Client;
use withings_oauth_sql::SqlOptions;
use withings_oauth_web_example::{SandboxAccount, Shared, router};
use withings_sandbox::{Sandbox, SandboxConfig};

/// How many numbered sandbox users (`user1@example.com` ...) the embedded sandbox has.
const SANDBOX_USERS: u32 = 5;

/// A multi-user web application connecting its users' Withings accounts.
#[derive(Parser)]
#[command(name = "withings-web-example", version)]
struct Args {
    /// Where tokens, pending logins and accounts live: `sqlite://file.db` or
    /// `postgres://user:password@host/db`.
    #[arg(
        long,
        env = "WITHINGS_WEB_DATABASE",
        default_value = "sqlite://withings-web-example.db",
        hide_env_values = true
    )]
    database: String,
    /// The address to listen on (port 0: a free port).
    #[arg(long, env = "WITHINGS_WEB_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The external Withings the environment names, if it names one.
fn external_withings() -> Result<Option<Client>, Box<dyn std::error::Error>> {
    let Ok(client_id) = std::env::var("WITHINGS_CLIENT_ID") else {
        if std::env::var_os("WITHINGS_BASE_URL").is_some() {
            return Err("WITHINGS_BASE_URL needs WITHINGS_CLIENT_ID, WITHINGS_CLIENT_SECRET and WITHINGS_REDIRECT_URI (the app registered there)".into());
        }
        return Ok(None);
    };
    let secret = std::env::var("WITHINGS_CLIENT_SECRET")
        .map_err(|_| "WITHINGS_CLIENT_SECRET is not set (it goes with WITHINGS_CLIENT_ID)")?;
    let redirect = std::env::var("WITHINGS_REDIRECT_URI")
        .map_err(|_| "WITHINGS_REDIRECT_URI is not set (it goes with WITHINGS_CLIENT_ID)")?;
    let mut builder = Client::builder()
        .client_id(client_id)
        .client_secret(secret)
        .redirect_uri(redirect.as_str());
    if let Ok(base) = std::env::var("WITHINGS_BASE_URL") {
        let base: Url = base
            .parse()
            .map_err(|e| format!("WITHINGS_BASE_URL={base:?} is not a URL: {e}"))?;
        builder = builder.base_url(base);
    }
    Ok(Some(builder.build()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "withings_oauth=info,withings_oauth_axum=info,withings_oauth_sql=warn,withings_sandbox=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;

    let (client, sandbox, accounts) = match external_withings()? {
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
    match &sandbox {
        Some(sandbox) => eprintln!("embedded Withings sandbox at {}", sandbox.base_url()),
        None => eprintln!("Withings API at {}", client.api_url()),
    }
    let shared = Shared::open(&args.database, SqlOptions::from_env()?).await?;
    let app = router(client, shared, accounts);
    println!("open http://{local}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    Ok(())
}
