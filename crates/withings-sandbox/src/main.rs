//! `withings-sandbox`: run the offline Withings OAuth server from the command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use withings_sandbox::{App, Sandbox, SandboxConfig, User};

/// A faithful offline Withings OAuth 2.0 server for tests and demos.
///
/// Serves the authorize page (/oauth2_user/authorize2), the token endpoint (/v2/oauth2:
/// requesttoken, revoke, getdemoaccess), nonces (/v2/signature) and fake measurements
/// (/measure) on one base URL, with Withings' envelopes, error texts and lifetimes.
///
/// Without --app, the default app is registered: client id "sandbox-client-id", secret
/// "sandbox-client-secret", callbacks http://127.0.0.1/callback (any port on a loopback
/// host) and https://app.example.com/withings/callback. Without --user, the seeded user
/// alice@example.com / correct-horse-battery (userid 1001) can log in. mode=demo logs in
/// the demo user (userid 999999) without a password.
///
/// Also serves the data API (/v2/measure, /v2/sleep, /v2/heart, /v2/user) with a month of
/// fake data per user, and notification subscriptions (/notify).
///
/// The clock, fault injection and counters are controlled through the library
/// (withings_sandbox::SandboxHandle), or over HTTP with --admin. Logs go to stderr, a line
/// per request with its action and user; set RUST_LOG (for example
/// RUST_LOG=withings_sandbox=debug) for more. Runs until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "withings-sandbox", version, about, long_about)]
struct Args {
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,

    /// Register an app, replacing the default one: CLIENT_ID:SECRET:CALLBACK[,CALLBACK...].
    /// Callbacks may contain ':' (the first two ':' separate the fields). Repeatable.
    #[arg(long = "app", value_name = "CLIENT_ID:SECRET:CALLBACKS", value_parser = parse_app)]
    apps: Vec<App>,

    /// Add a user who can log in, replacing the seeded one: EMAIL:PASSWORD:USERID. Repeatable.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD:USERID", value_parser = parse_user)]
    users: Vec<User>,

    /// Also seed N numbered users who can log in: user1@example.com / sandbox-password-1
    /// (userid 1000001) to userN@example.com / sandbox-password-N (userid 1000000+N).
    #[arg(long = "users", value_name = "N", default_value_t = 0)]
    numbered_users: u32,

    /// Skip the login/consent form: redirect with a code for the first user at once.
    #[arg(long)]
    auto_approve: bool,

    /// Access token lifetime in seconds (expires_in): 1 to 315360000 (10 years).
    #[arg(long, value_name = "SECS", default_value_t = 10_800, value_parser = lifetime(1))]
    access_token_lifetime: u64,

    /// Refresh token lifetime in seconds: 1 to 315360000 (10 years). Withings: 1 year.
    #[arg(long, value_name = "SECS", default_value_t = 365 * 24 * 3600, value_parser = lifetime(1))]
    refresh_token_lifetime: u64,

    /// Authorization code lifetime in seconds: 1 to 315360000. Withings: 30.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = lifetime(1))]
    code_lifetime: u64,

    /// Lifetime of a getnonce nonce in seconds: 1 to 315360000. Withings: 30 minutes.
    #[arg(long, value_name = "SECS", default_value_t = 30 * 60, value_parser = lifetime(1))]
    nonce_lifetime: u64,

    /// How long a rotated refresh token keeps working after its successor was issued, in
    /// seconds, unless the successor's access token is used first: 0 to 315360000. Withings:
    /// 8 hours.
    #[arg(long, value_name = "SECS", default_value_t = 8 * 3600, value_parser = lifetime(0))]
    old_refresh_grace: u64,

    /// Requests per client id within the rate limit window before status 601; 0 turns the
    /// limit off.
    #[arg(long, value_name = "N", default_value_t = 120)]
    rate_limit: u32,

    /// Length of the rate limit's sliding window in seconds: 1 to 315360000. Default a minute.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = lifetime(1))]
    rate_limit_window: u64,

    /// Strict rotation: a refresh token that was already exchanged for a newer pair is never
    /// accepted again, and presenting it revokes the whole login (the newest refresh token
    /// and its access tokens too). Off by default: Withings lets a rotated refresh token work
    /// for its grace period.
    #[arg(long)]
    strict_rotation: bool,

    /// Records per page of the data services that page (getmeas, getactivity, getworkouts,
    /// sleep getsummary, heart list), before `more`.
    #[arg(long, value_name = "N", default_value_t = PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    page_size: u32,

    /// Let /notify subscribe accept http callback URLs on 127.0.0.1, [::1] or localhost, so
    /// that tests can receive notifications. Withings accepts only https callbacks on a public
    /// host name.
    #[arg(long)]
    loopback_notify: bool,

    /// The last day of every user's 30 days of data, YYYY-MM-DD (UTC); by default the day
    /// before the start, so that the data follow the calendar.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    data_through: Option<SystemTime>,

    /// Serve the admin API under /admin/ (counters, logins minted in bulk, new measurements,
    /// the clock, faults; see the README). It hands out tokens: for tests on the loopback
    /// only.
    #[arg(long)]
    admin: bool,

    /// Write the ledger to FILE (created or truncated): one JSON line per token issued,
    /// refresh token presented, chain revoked, user revoked and request counted against the
    /// rate limit; tokens only as their SHA-256 (see the README, "Ledger").
    #[arg(long, value_name = "FILE")]
    ledger: Option<std::path::PathBuf>,
}

/// `--page-size`'s default, the library's.
const PAGE_SIZE: u32 = withings_sandbox::DEFAULT_PAGE_SIZE as u32;

/// The longest lifetime a flag accepts: 10 years in seconds, ten times Withings' longest (the
/// refresh token's year). Longer ones are surely typos, and the library takes them anyway.
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// Seconds from `min` to [`MAX_LIFETIME_SECS`]; clap names the range when a value is outside.
fn lifetime(min: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(min..=MAX_LIFETIME_SECS)
}

fn parse_app(s: &str) -> Result<App, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(id), Some(secret), Some(callbacks)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected CLIENT_ID:SECRET:CALLBACK[,CALLBACK...]".into());
    };
    let callbacks: Vec<&str> = callbacks.split(',').filter(|c| !c.is_empty()).collect();
    if id.is_empty() || secret.is_empty() || callbacks.is_empty() {
        return Err("client id, secret and at least one callback must be non-empty".into());
    }
    for c in &callbacks {
        url::Url::parse(c).map_err(|e| format!("callback {c:?} is not a URL: {e}"))?;
    }
    Ok(App::new(id, secret, callbacks))
}

fn parse_day(s: &str) -> Result<SystemTime, String> {
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected a date as YYYY-MM-DD: {e}"))?;
    let secs = day
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .and_then(|t| u64::try_from(t).ok())
        .ok_or("the date must be 1970-01-01 or later")?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

fn parse_user(s: &str) -> Result<User, String> {
    let (rest, userid) = s.rsplit_once(':').ok_or("expected EMAIL:PASSWORD:USERID")?;
    let (email, password) = rest
        .split_once(':')
        .ok_or("expected EMAIL:PASSWORD:USERID")?;
    let userid = userid
        .parse::<u64>()
        .map_err(|e| format!("USERID must be a number: {e}"))?;
    if email.is_empty() || password.is_empty() {
        return Err("email and password must be non-empty".into());
    }
    Ok(User::new(userid, email, password))
}

fn config(args: &Args) -> SandboxConfig {
    let mut config = SandboxConfig::default()
        .auto_approve(args.auto_approve)
        .access_token_lifetime(Duration::from_secs(args.access_token_lifetime))
        .refresh_token_lifetime(Duration::from_secs(args.refresh_token_lifetime))
        .code_lifetime(Duration::from_secs(args.code_lifetime))
        .nonce_lifetime(Duration::from_secs(args.nonce_lifetime))
        .old_refresh_grace(Duration::from_secs(args.old_refresh_grace))
        .rate_limit((args.rate_limit > 0).then_some(args.rate_limit))
        .rate_limit_window(Duration::from_secs(args.rate_limit_window))
        .strict_rotation(args.strict_rotation)
        .page_size(args.page_size as usize)
        .loopback_notify(args.loopback_notify)
        .admin_api(args.admin);
    if !args.apps.is_empty() {
        config = config.without_apps();
    }
    for app in &args.apps {
        config = config.with_app(app.clone());
    }
    if !args.users.is_empty() {
        config = config.without_users();
    }
    for user in &args.users {
        config = config.with_user(user.clone());
    }
    if let Some(day) = args.data_through {
        config = config.data_through(day);
    }
    if let Some(path) = &args.ledger {
        config = config.ledger(path.clone());
    }
    config.seed_users(args.numbered_users)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "withings_sandbox=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let sandbox = Sandbox::bind(SocketAddr::new(args.bind, args.port), config(&args)).await?;
    println!("withings-sandbox listening on {}", sandbox.base_url());
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_flag_keeps_colons_in_callbacks() {
        let app = parse_app("id:secret:https://a.example/cb,http://127.0.0.1:9000/cb").unwrap();
        assert_eq!(app.client_id, "id");
        assert_eq!(app.client_secret, "secret");
        assert_eq!(
            app.callback_urls,
            ["https://a.example/cb", "http://127.0.0.1:9000/cb"]
        );
        assert!(parse_app("id:secret").is_err());
        assert!(parse_app("id:secret:not a url").is_err());
    }

    #[test]
    fn user_flag_allows_colons_in_passwords() {
        let user = parse_user("bob@example.com:pa:ss:42").unwrap();
        assert_eq!(
            (user.email.as_str(), user.password.as_str(), user.userid),
            ("bob@example.com", "pa:ss", 42)
        );
        assert!(parse_user("bob@example.com:pw:x").is_err());
    }

    #[test]
    fn flags_replace_defaults() {
        let args = Args::parse_from([
            "withings-sandbox",
            "--app",
            "id:s:https://a.example/cb",
            "--rate-limit",
            "0",
        ]);
        let config = config(&args);
        assert_eq!(config.apps().len(), 1);
        assert_eq!(config.apps()[0].client_id, "id");
        assert_eq!(config.users(), [User::default()]);
        assert_eq!(config.rate_limit_per_minute(), None);
    }

    #[test]
    fn users_flag_adds_a_numbered_fleet() {
        let args = Args::parse_from(["withings-sandbox", "--users", "3"]);
        let users = config(&args).users().to_vec();
        assert_eq!(
            users,
            [
                User::default(),
                User::numbered(1),
                User::numbered(2),
                User::numbered(3)
            ]
        );
        let args = Args::parse_from([
            "withings-sandbox",
            "--user",
            "bob@example.com:pw:42",
            "--users",
            "1",
        ]);
        let ids: Vec<u64> = config(&args).users().iter().map(|u| u.userid).collect();
        assert_eq!(ids, [42, 1_000_001]);
    }

    #[test]
    fn data_and_admin_flags() {
        let args = Args::parse_from([
            "withings-sandbox",
            "--page-size",
            "5",
            "--loopback-notify",
            "--admin",
        ]);
        let expected = SandboxConfig::default()
            .page_size(5)
            .loopback_notify(true)
            .admin_api(true);
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
        assert!(Args::try_parse_from(["withings-sandbox", "--page-size", "0"]).is_err());
    }

    #[test]
    fn data_through_flag() {
        let args = Args::parse_from(["withings-sandbox", "--data-through", "2024-03-31"]);
        let day = UNIX_EPOCH + Duration::from_secs(1_711_843_200);
        let expected = SandboxConfig::default().data_through(day);
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
        for bad in ["2024-02-30", "31/03/2024", "1969-12-31"] {
            assert!(
                Args::try_parse_from(["withings-sandbox", "--data-through", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn strict_rotation_flag() {
        let args = Args::parse_from(["withings-sandbox", "--strict-rotation"]);
        let expected = SandboxConfig::default().strict_rotation(true);
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
    }

    #[test]
    fn ledger_flag() {
        let args = Args::parse_from(["withings-sandbox", "--ledger", "/tmp/ledger.jsonl"]);
        let expected = SandboxConfig::default().ledger("/tmp/ledger.jsonl");
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
        assert!(Args::try_parse_from(["withings-sandbox", "--ledger"]).is_err());
    }

    #[test]
    fn rate_limit_window_flag() {
        let args = Args::parse_from(["withings-sandbox", "--rate-limit-window", "5"]);
        let expected = SandboxConfig::default().rate_limit_window(Duration::from_secs(5));
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
        assert!(Args::try_parse_from(["withings-sandbox", "--rate-limit-window", "0"]).is_err());
    }

    #[test]
    fn lifetimes_are_bounded_to_ten_years() {
        for flag in [
            "--rate-limit-window",
            "--access-token-lifetime",
            "--refresh-token-lifetime",
            "--code-lifetime",
            "--nonce-lifetime",
            "--old-refresh-grace",
        ] {
            let parse = |secs: &str| Args::try_parse_from(["withings-sandbox", flag, secs]);
            assert!(parse(&MAX_LIFETIME_SECS.to_string()).is_ok(), "{flag}");
            assert!(
                parse(&(MAX_LIFETIME_SECS + 1).to_string()).is_err(),
                "{flag}"
            );
            assert!(parse(&u64::MAX.to_string()).is_err(), "{flag}");
            // A grace of 0 means a rotated token dies at once; a lifetime of 0 is useless.
            assert_eq!(parse("0").is_ok(), flag == "--old-refresh-grace", "{flag}");
        }
    }

    #[test]
    fn defaults_are_withings_lifetimes() {
        let args = Args::parse_from(["withings-sandbox"]);
        let ours = format!("{:?}", config(&args));
        let library = format!("{:?}", SandboxConfig::default());
        assert_eq!(ours, library);
        let args = Args::parse_from([
            "withings-sandbox",
            "--code-lifetime",
            "5",
            "--refresh-token-lifetime",
            "60",
            "--nonce-lifetime",
            "7",
            "--old-refresh-grace",
            "0",
        ]);
        let expected = SandboxConfig::default()
            .code_lifetime(Duration::from_secs(5))
            .refresh_token_lifetime(Duration::from_secs(60))
            .nonce_lifetime(Duration::from_secs(7))
            .old_refresh_grace(Duration::ZERO);
        assert_eq!(format!("{:?}", config(&args)), format!("{expected:?}"));
    }
}
