//! Failures of a command, each with the exit code scripts can test and a message that says what
//! to do next.

use std::fmt;
use std::process::ExitCode;

use withings_oauth::{ApiError, Error as LoginError, UserAgentError};

/// What kind of failure, which fixes the exit code. Listed in `--help` (see [`EXIT_CODES_HELP`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The login did not finish: denied, cancelled, timed out, or a bad callback.
    LoginFailed,
    /// Bad arguments or configuration (missing client id, invalid URL...).
    Config,
    /// No usable credentials: the user must run `withings-oauth login`.
    LoginRequired,
    /// Withings (or the network) failed; retrying later may work.
    Remote,
    /// The credential store could not be read or written.
    Store,
    /// Standard output could not be written (other than closed by its reader).
    Output,
    /// The reader of standard output closed it (`| head`): stop quietly.
    StdoutClosed,
}

impl Kind {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Kind::LoginFailed => 1,
            Kind::Config => 2,
            Kind::LoginRequired => 3,
            Kind::Remote => 4,
            Kind::Store => 5,
            Kind::Output => 6,
            // Whatever the command did (a refresh, a login) is saved before it prints; the
            // reader simply wanted no more.
            Kind::StdoutClosed => 0,
        }
    }
}

/// The exit codes, for `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success; also when the reader closes stdout early (`| head`): the command stops
     quietly, and what it already did (a login, a refresh) stays saved
  1  the login did not finish (access denied, cancelled, timed out, wrong redirect URL)
  2  usage or configuration error (missing client id, bad URL, unreadable config file)
  3  login required: no usable credentials for this user; run `withings-oauth login`
  4  Withings or the network failed; the stored credentials are kept, retry later
  5  the credential store could not be read or written
  6  the output could not be written (stdout failing, such as a full disk)";

/// A command's failure: the kind and a message that says what to do next. Never holds a secret.
#[derive(Debug)]
pub(crate) struct CliError {
    kind: Kind,
    message: String,
}

impl CliError {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message)
    }

    pub(crate) fn store(message: impl Into<String>) -> Self {
        Self::new(Kind::Store, message)
    }

    pub(crate) fn login_required(message: impl Into<String>) -> Self {
        Self::new(Kind::LoginRequired, message)
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }

    /// A failed write to stdout: [`Kind::StdoutClosed`] for a reader that went away.
    pub(crate) fn output(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::new(Kind::StdoutClosed, "standard output was closed");
        }
        Self::new(
            Kind::Output,
            format!("cannot write to standard output: {error}; check where it is redirected"),
        )
    }

    /// A failed call to Withings other than a login.
    pub(crate) fn api(context: &str, error: &ApiError) -> Self {
        match error {
            ApiError::InvalidClient => Self::config(format!(
                "{context}: {error}; set WITHINGS_CLIENT_ID and WITHINGS_CLIENT_SECRET (or the config file) to the app's values"
            )),
            ApiError::InvalidRefreshToken | ApiError::InvalidAccessToken => {
                Self::login_required(format!("{context}: {error}; run `withings-oauth login`"))
            }
            e if e.is_configuration() => Self::config(format!(
                "{context}: {error}; WITHINGS_BASE_URL (or the config file) must point at Withings' API"
            )),
            e if !e.is_transient() => Self::new(Kind::Remote, format!("{context}: {error}")),
            _ => Self::new(
                Kind::Remote,
                format!("{context}: {error}; check the network and retry"),
            ),
        }
    }

    pub(crate) fn login(error: &LoginError) -> Self {
        match error {
            LoginError::Config(e) => Self::config(format!(
                "{e} (set it with a flag, an environment variable or the config file: see `withings-oauth --help`)"
            )),
            LoginError::UserAgent(e @ UserAgentError::UnsupportedRedirectUri { .. }) => {
                Self::config(format!(
                    "{e}: set WITHINGS_REDIRECT_URI to a redirect URI registered for the app, or choose another --agent"
                ))
            }
            LoginError::Api(ApiError::InvalidCode) => {
                Self::new(Kind::LoginFailed, format!("login failed: {error}"))
            }
            LoginError::Api(e) => Self::api("login failed", e),
            _ => Self::new(Kind::LoginFailed, format!("login failed: {error}")),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_in_help_match_the_kinds() {
        for kind in [
            Kind::LoginFailed,
            Kind::Config,
            Kind::LoginRequired,
            Kind::Remote,
            Kind::Store,
            Kind::Output,
        ] {
            let line = format!("\n  {}  ", kind.exit_code());
            assert!(
                EXIT_CODES_HELP.contains(&line),
                "{kind:?} missing from help"
            );
        }
    }

    #[test]
    fn a_closed_stdout_is_a_quiet_success_and_other_failures_are_errors() {
        let closed = CliError::output(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(
            (closed.kind(), closed.kind().exit_code()),
            (Kind::StdoutClosed, 0)
        );
        let full = CliError::output(std::io::Error::from_raw_os_error(28)); // ENOSPC
        assert_eq!(full.kind().exit_code(), 6);
        assert!(full.to_string().contains("standard output"), "{full}");
    }

    #[test]
    fn a_rejected_client_is_a_configuration_error() {
        let e = CliError::api("refreshing", &ApiError::WrongEndpoint { status: 404 });
        assert_eq!(
            e.kind(),
            Kind::Config,
            "a wrong base URL is a configuration error"
        );
        assert!(!e.to_string().contains("retry"), "{e}");
        let e = CliError::api("refreshing", &ApiError::InvalidClient);
        assert_eq!(e.kind(), Kind::Config);
        assert!(e.to_string().contains("WITHINGS_CLIENT_SECRET"));
        let e = CliError::api("refreshing", &ApiError::InvalidRefreshToken);
        assert_eq!(e.kind(), Kind::LoginRequired);
        assert!(e.to_string().contains("withings-oauth login"));
    }
}
