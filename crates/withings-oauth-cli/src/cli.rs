//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

use crate::error::EXIT_CODES_HELP;
use crate::settings::StoreSetting;

const CONFIG_HELP: &str = "\
Configuration:
  Each setting comes from a flag, else an environment variable, else the config file (TOML):
    --client-id      WITHINGS_CLIENT_ID      client_id = \"...\"
    --client-secret  WITHINGS_CLIENT_SECRET  client_secret = \"...\"
    --redirect-uri   WITHINGS_REDIRECT_URI   redirect_uri = \"https://...\"
    --cloud          WITHINGS_CLOUD          cloud = \"eu\" | \"us\"
    --base-url       WITHINGS_BASE_URL       base_url = \"http://127.0.0.1:8080/\"
    --store          WITHINGS_STORE          store = \"/path/to/credentials.json\"
                                             (or \"sqlite:///path/tokens.db\", \"postgres://...\")
  A database store encrypts tokens with the keys of WITHINGS_STORE_KEYS (\"k2:base64,k1:base64\",
  the first active) or of the file WITHINGS_STORE_KEYS_FILE.
  Prefer the environment or the config file for the client secret: command-line flags are
  visible to other users of the machine (ps, /proc). The secret is never printed.";

/// Log in to Withings and keep the tokens fresh.
///
/// Start with `withings-oauth demo`: it runs the whole flow against a local sandbox, offline.
#[derive(Debug, Parser)]
#[command(name = "withings-oauth", version, after_help = after_help())]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

fn after_help() -> String {
    format!("{CONFIG_HELP}\n\n{EXIT_CODES_HELP}")
}

/// Settings every command accepts.
#[derive(Debug, Args, Default)]
pub(crate) struct GlobalArgs {
    /// Config file (TOML) [default: the platform's config directory, e.g.
    /// ~/.config/withings-oauth/config.toml]
    #[arg(long, global = true, env = "WITHINGS_CONFIG", value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Credential store: a file [default: the platform's data directory, e.g.
    /// ~/.local/share/withings-oauth/tokens.json], or a database URL (sqlite:///path/tokens.db,
    /// postgres://user@host/db) for many users and instances
    #[arg(
        long,
        global = true,
        env = "WITHINGS_STORE",
        hide_env_values = true,
        value_name = "PATH",
        value_parser = parse_store
    )]
    pub(crate) store: Option<StoreSetting>,

    /// The user to act on, when the store holds several
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) user: Option<u64>,

    /// The app's client id, from the Withings developer dashboard
    #[arg(long, global = true, env = "WITHINGS_CLIENT_ID", value_name = "ID")]
    pub(crate) client_id: Option<String>,

    /// The app's client secret (prefer the environment variable: flags show in `ps`)
    #[arg(
        long,
        global = true,
        env = "WITHINGS_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = parse_secret
    )]
    pub(crate) client_secret: Option<SecretString>,

    /// The redirect URI registered for the app; a loopback one such as
    /// http://127.0.0.1:0/callback (port 0: any free port) lets the browser agent catch the
    /// redirect
    #[arg(long, global = true, env = "WITHINGS_REDIRECT_URI", value_name = "URL")]
    pub(crate) redirect_uri: Option<String>,

    /// Which Withings cloud
    #[arg(long, global = true, env = "WITHINGS_CLOUD", value_enum)]
    pub(crate) cloud: Option<CloudArg>,

    /// Base URL of both Withings hosts, for a local sandbox (overrides --cloud)
    #[arg(long, global = true, env = "WITHINGS_BASE_URL", value_name = "URL")]
    pub(crate) base_url: Option<Url>,
}

/// The store setting, whose `Debug` hides a database URL's password.
fn parse_store(value: &str) -> Result<StoreSetting, std::convert::Infallible> {
    Ok(StoreSetting::new(value))
}

/// Holds the secret as a [`SecretString`] from the moment it is parsed, so that no `Debug` of
/// the arguments shows it.
fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// `--cloud`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CloudArg {
    /// account.withings.com, wbsapi.withings.net
    Eu,
    /// account.us.withingsmed.com, wbsapi.us.withingsmed.net
    Us,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Log in a user and save the credentials
    Login(LoginArgs),
    /// Show the stored logins: user, scopes, expiry (never a token); exit code 3 if one must
    /// log in again
    Status,
    /// Print a valid access token on stdout, refreshing it if needed
    ///
    /// For scripts: curl -H "Authorization: Bearer $(withings-oauth token)" ...
    Token,
    /// Refresh the tokens now and save the new ones
    Refresh,
    /// Revoke the app's access at Withings and delete the local credentials
    Revoke,
    /// Delete the local credentials only (Withings still allows access)
    Logout(LogoutArgs),
    /// Run login, status, a data call, refresh and revoke against a local sandbox, offline
    Demo(DemoArgs),
    /// Many users: how their logins stand, and renewing the idle ones (any store; a database
    /// store shares its rate limit with the fleet's instances)
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Manage a database store (--store sqlite://... or postgres://...)
    #[cfg(feature = "sql")]
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `store`.
#[cfg(feature = "sql")]
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy every login of a tokens.json file into the database (users it already has are
    /// kept; the file is not changed)
    MigrateFrom {
        /// The tokens.json to copy from
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Re-encrypt every row with the active key (the first of WITHINGS_STORE_KEYS), while
    /// other programs keep using the store; the other keys are retired in the database first
    RotateKey,
    /// Encrypt a database used without keys until now, with the keys of WITHINGS_STORE_KEYS:
    /// once, after which programs without the keys are refused
    Encrypt,
}

/// `fleet`.
#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Count the stored users by state (fresh, due, expired, login required; idle ones among
    /// the expired), name the least recently refreshed and those who must log in again, and
    /// show the shared rate limit of a database store; never a token
    Status(FleetStatusArgs),
    /// Renew up to --batch logins unused for --idle-after (one pass of the fleet's sweep),
    /// within the rate limit; exit code 4 if a renewal failed
    Sweep(FleetSweepArgs),
}

/// `fleet status`.
#[derive(Debug, Args)]
pub(crate) struct FleetStatusArgs {
    /// Print JSON on stdout instead of text
    #[arg(long)]
    pub(crate) json: bool,

    /// Count logins unused for this long as idle (due for `fleet sweep`): a number with s, m,
    /// h or d
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub(crate) idle_after: std::time::Duration,

    #[command(flatten)]
    pub(crate) limit: RateLimitArgs,
}

/// `fleet sweep`.
#[derive(Debug, Args)]
pub(crate) struct FleetSweepArgs {
    /// Renew at most this many logins
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) batch: u32,

    /// Renew logins unused for this long (access token expired that long ago): a number with
    /// s, m, h or d
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub(crate) idle_after: std::time::Duration,

    /// Print the report as JSON on stdout
    #[arg(long)]
    pub(crate) json: bool,

    /// Keep running as a service, sweeping every DURATION (such as 10m) until SIGTERM or
    /// Ctrl-C; a failed pass is reported and the next one runs on time
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) every: Option<std::time::Duration>,

    /// With --every: serve /metrics (Prometheus), /healthz and /readyz on this address, such
    /// as 127.0.0.1:9465 (port 0: a free port, printed at start)
    #[arg(long, value_name = "ADDRESS", requires = "every")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub(crate) limit: RateLimitArgs,
}

/// The rate limit of `fleet` commands.
#[derive(Debug, Args)]
pub(crate) struct RateLimitArgs {
    /// Withings requests a minute for the whole application: with a database store, the budget
    /// of the rate limit the fleet's instances share (give the same figure as they use);
    /// with a file store, this command's own
    #[arg(long, value_name = "PER_MINUTE", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rate_limit: u32,
}

/// A duration such as `30d`, `12h`, `90m`, `45s` or `1h 30m` (humantime's syntax; a bare
/// number is seconds), at least a second.
pub(crate) fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    const HINT: &str = "write whole numbers followed by s, m, h or d, such as 30d, 12h or 1h 30m";
    let value = value.trim();
    let parsed = match value.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(value).map_err(|e| format!("{e}: {HINT}")),
    }?;
    if parsed.subsec_nanos() != 0 {
        return Err(format!("not a whole number of seconds: {HINT}"));
    }
    Ok(parsed)
}

/// `logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// Delete the user's credentials even if another program changed them since they were
    /// read (a refresh, a new login)
    #[arg(long)]
    pub(crate) force: bool,
}

/// `login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// How to show the Withings page: auto picks `browser` for a loopback redirect URI (such
    /// as http://127.0.0.1:0/callback, port 0 for any free port), otherwise the browser with a
    /// paste prompt
    #[arg(long, value_enum, default_value_t = AgentArg::Auto)]
    pub(crate) agent: AgentArg,

    /// Scopes to ask for (repeat, or separate with commas)
    #[arg(
        long = "scope",
        value_name = "SCOPE",
        value_delimiter = ',',
        default_value = "user.metrics"
    )]
    pub(crate) scopes: Vec<String>,

    /// Log in Withings' demo user, with dummy data
    #[arg(long)]
    pub(crate) demo: bool,

    /// Do not try to open a browser: only print the URL
    #[arg(long)]
    pub(crate) no_browser: bool,

    /// Give up after this many seconds without a callback (browser, browser-or-paste and webview
    /// agents; --agent paste waits until end of input)
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) timeout: u64,
}

/// `--agent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AgentArg {
    /// browser for a loopback redirect URI, else browser-or-paste
    Auto,
    /// The system browser, with a local listener catching the redirect (loopback redirect URI)
    Browser,
    /// Print the URL and read the address the browser ends up on from stdin
    Paste,
    /// An embedded window (needs the `webview` feature)
    Webview,
}

/// `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Log in with the system browser on the sandbox's page instead of the built-in agent
    #[arg(long)]
    pub(crate) browser: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_shows_the_free_port_redirect_uri_with_its_port_0() {
        let help = Cli::command()
            .find_subcommand_mut("login")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("http://127.0.0.1:0/callback"), "{help}");
        assert!(help.contains("port 0"), "{help}");
    }

    #[test]
    fn scopes_may_be_repeated_or_comma_separated() {
        let cli = Cli::try_parse_from([
            "withings-oauth",
            "login",
            "--scope",
            "user.metrics,user.info",
            "--scope",
            "user.activity",
        ])
        .unwrap();
        let Command::Login(args) = cli.command else {
            panic!("not login")
        };
        assert_eq!(args.scopes, ["user.metrics", "user.info", "user.activity"]);
    }

    #[test]
    fn debug_of_the_arguments_never_shows_the_client_secret() {
        for args in [
            [
                "withings-oauth",
                "--client-secret",
                "s3cr3t-from-a-flag",
                "token",
            ],
            [
                "withings-oauth",
                "login",
                "--client-secret",
                "s3cr3t-from-a-flag",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let shown = format!("{cli:?} {:?} {:#?}", cli.global, cli.global);
            assert!(!shown.contains("s3cr3t-from-a-flag"), "{shown}");
            assert!(shown.contains("client_secret"), "{shown}");
        }
    }

    #[test]
    fn durations_take_a_unit_and_refuse_anything_else() {
        use std::time::Duration;
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "d",
            "3x",
            "-1d",
            "99999999999999999999d",
            "2.5s",
            "1500ms",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("such as 30d"), "{bad}: {error}");
        }
    }

    #[test]
    fn fleet_sweep_refuses_a_batch_of_zero() {
        let error =
            Cli::try_parse_from(["withings-oauth", "fleet", "sweep", "--batch", "0"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn the_metrics_listener_comes_with_the_sweep_service_only() {
        let args = [
            "withings-oauth",
            "fleet",
            "sweep",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let error = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--every"), "{error}");
        let service = [&args[..], &["--every", "10m"]].concat();
        assert!(Cli::try_parse_from(service).is_ok());
    }

    #[test]
    fn global_settings_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["withings-oauth", "token", "--user", "7"]).unwrap();
        assert_eq!(cli.global.user, Some(7));
        let cli = Cli::try_parse_from(["withings-oauth", "--user", "8", "status"]).unwrap();
        assert_eq!(cli.global.user, Some(8));
    }
}
