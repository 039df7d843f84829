//! `withings-web-example`: the web example, against an embedded sandbox by default.
//!
//! ```console
//! $ cargo run -p withings-oauth-web-example
//! open http://127.0.0.1:PORT/
//! ```
//!
//! Against the real Withings, set `WITHINGS_CLIENT_ID`, `WITHINGS_CLIENT_SECRET` and
//! `WITHINGS_REDIRECT_URI` (a callback URL registered for the app, whose path is served here,
//! e.g. `https://app.example.com/callback` behind a reverse proxy to this server). The server
//! listens on `WITHINGS_WEB_LISTEN` (default `127.0.0.1:0`, a free port).

use std::net::SocketAddr;

use withings_oauth::Client;
use withings_oauth_web_example::{SandboxAccount, Shared, router};
use withings_sandbox::{Sandbox, SandboxConfig};

/// How many numbered sandbox users (`user1@example.com` ...) the embedded sandbox has.
const SANDBOX_USERS: u32 = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "withings_oauth=info,withings_oauth_axum=info,withings_sandbox=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let listen: SocketAddr = match std::env::var("WITHINGS_WEB_LISTEN") {
        Ok(addr) => addr
            .parse()
            .map_err(|e| format!("WITHINGS_WEB_LISTEN={addr:?} is not an address: {e}"))?,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;

    let real = std::env::var("WITHINGS_CLIENT_ID").ok();
    let (client, sandbox, accounts) = match real {
        Some(client_id) => {
            let secret = std::env::var("WITHINGS_CLIENT_SECRET").map_err(
                |_| "WITHINGS_CLIENT_SECRET is not set (it goes with WITHINGS_CLIENT_ID)",
            )?;
            let redirect = std::env::var("WITHINGS_REDIRECT_URI").map_err(
                |_| "WITHINGS_REDIRECT_URI is not set (it goes with WITHINGS_CLIENT_ID)",
            )?;
            let client = Client::builder()
                .client_id(client_id)
                .client_secret(secret)
                .redirect_uri(redirect.as_str())
                .build()?;
            (client, None, Vec::new())
        }
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
        None => eprintln!("talking to the real Withings"),
    }
    // The one line to change for a database: `Shared { pending, tokens, accounts }`.
    let app = router(client, Shared::in_memory(), accounts);
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
