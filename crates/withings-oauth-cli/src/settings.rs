//! Where the settings come from: flags, then environment variables (both through clap), then the
//! config file.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;
use withings_oauth::{Client, ClientBuilder, Cloud};

use crate::cli::{CloudArg, GlobalArgs};
use crate::error::CliError;

/// The name of the application's directories (config, data).
pub(crate) const APP_NAME: &str = "withings-oauth";

/// The credential store setting: a file's path or a database URL, which may hold a password.
/// Its `Debug` shows a URL's password as `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub(crate) struct StoreSetting(PathBuf);

impl StoreSetting {
    /// The setting, as the user wrote it.
    pub(crate) fn new(value: impl Into<PathBuf>) -> Self {
        Self(value.into())
    }

    /// Whether it is a URL with a password.
    pub(crate) fn has_password(&self) -> bool {
        self.0
            .to_str()
            .and_then(|s| Url::parse(s).ok())
            .is_some_and(|url| url.password().is_some())
    }

    /// The setting with a URL's password replaced by `***`, for messages.
    pub(crate) fn redacted(&self) -> String {
        let text = self.0.to_string_lossy();
        match Url::parse(&text) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => text.into_owned(),
        }
    }
}

impl fmt::Debug for StoreSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreSetting")
            .field(&self.redacted())
            .finish()
    }
}

/// The six settings: what a config file may hold (every key optional), and, merged with the
/// flags and environment, what one run uses.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Values {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    redirect_uri: Option<String>,
    cloud: Option<CloudArg>,
    base_url: Option<Url>,
    store: Option<StoreSetting>,
}

impl Values {
    /// Each of `self`'s settings, else `fallback`'s.
    fn or(self, fallback: Values) -> Values {
        Values {
            client_id: self.client_id.or(fallback.client_id),
            client_secret: self.client_secret.or(fallback.client_secret),
            redirect_uri: self.redirect_uri.or(fallback.redirect_uri),
            cloud: self.cloud.or(fallback.cloud),
            base_url: self.base_url.or(fallback.base_url),
            store: self.store.or(fallback.store),
        }
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Values")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("cloud", &self.cloud)
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("store", &self.store)
            .finish()
    }
}

/// The settings of one run, merged.
#[derive(Debug)]
pub(crate) struct Settings {
    values: Values,
    /// The user asked for with `--user`.
    pub(crate) user: Option<u64>,
    /// The config file that was read, if any, or the one that would be read.
    config_path: Option<PathBuf>,
}

fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", APP_NAME).map(|d| d.config_dir().join("config.toml"))
}

impl Settings {
    /// Merges the flags and environment (already in `args`) with the config file.
    ///
    /// A file named with `--config` must exist; the default one may be absent.
    pub(crate) fn load(args: GlobalArgs) -> Result<Self, CliError> {
        let (config_path, explicit) = match args.config {
            Some(path) => (Some(path), true),
            None => (default_config_path(), false),
        };
        let file = match &config_path {
            Some(path) => read_config(path, explicit)?,
            None => Values::default(),
        };
        let flags = Values {
            client_id: args.client_id,
            client_secret: args.client_secret,
            redirect_uri: args.redirect_uri,
            cloud: args.cloud,
            base_url: args.base_url,
            store: args.store,
        };
        Ok(Settings {
            values: flags.or(file),
            user: args.user,
            config_path,
        })
    }

    /// Where the config file is (or would be), for messages.
    fn config_hint(&self) -> String {
        match &self.config_path {
            Some(p) => format!("the config file {}", p.display()),
            None => "a config file given with --config".to_owned(),
        }
    }

    fn missing(&self, what: &str, flag: &str, env: &str, key: &str) -> CliError {
        CliError::config(format!(
            "no {what} is configured: set {env}, pass {flag}, or add `{key} = \"...\"` to {}",
            self.config_hint()
        ))
    }

    /// Checks that the settings a client requires (id, secret and redirect URI) are given,
    /// without building one.
    pub(crate) fn require_client(&self) -> Result<(), CliError> {
        self.required().map(drop)
    }

    fn required(&self) -> Result<(String, SecretString, String), CliError> {
        let client_id = self.values.client_id.clone().ok_or_else(|| {
            self.missing(
                "client id",
                "--client-id",
                "WITHINGS_CLIENT_ID",
                "client_id",
            )
        })?;
        let client_secret = self.values.client_secret.clone().ok_or_else(|| {
            self.missing(
                "client secret",
                "--client-secret",
                "WITHINGS_CLIENT_SECRET",
                "client_secret",
            )
        })?;
        let redirect_uri = self.values.redirect_uri.clone().ok_or_else(|| {
            self.missing(
                "redirect URI",
                "--redirect-uri",
                "WITHINGS_REDIRECT_URI",
                "redirect_uri",
            )
        })?;
        Ok((client_id, client_secret, redirect_uri))
    }

    /// The client built from the settings: id, secret and redirect URI are required.
    pub(crate) fn client(&self) -> Result<Client, CliError> {
        self.client_builder()?
            .build()
            .map_err(|e| self.client_error(&e))
    }

    /// A client's configuration error, saying where the settings come from.
    pub(crate) fn client_error(&self, error: &withings_oauth::ConfigError) -> CliError {
        CliError::config(format!(
            "{error} (check the flags, the WITHINGS_* environment variables and {})",
            self.config_hint()
        ))
    }

    /// The client's builder, for a fleet that completes it: id, secret and redirect URI are
    /// required.
    pub(crate) fn client_builder(&self) -> Result<ClientBuilder, CliError> {
        let (client_id, client_secret, redirect_uri) = self.required()?;
        let builder = Client::builder()
            .client_id(client_id)
            .client_secret(client_secret)
            .redirect_uri(redirect_uri);
        let builder = match (&self.values.base_url, self.values.cloud) {
            (Some(base), _) => builder.base_url(base.clone()),
            (None, Some(CloudArg::Us)) => builder.cloud(Cloud::Us),
            (None, _) => builder.cloud(Cloud::Default),
        };
        Ok(builder)
    }

    /// The credential store's path: `--store`, `WITHINGS_STORE`, the config file, or the
    /// platform's data directory.
    pub(crate) fn store_path(&self) -> Result<PathBuf, CliError> {
        if let Some(store) = &self.values.store {
            return Ok(store.0.clone());
        }
        crate::store::default_path().ok_or_else(|| {
            CliError::config(
                "no home directory was found for the credential store: set WITHINGS_STORE or pass --store",
            )
        })
    }
}

/// The keys of the config file, in the order the docs list them.
const KNOWN_KEYS: [&str; 6] = [
    "client_id",
    "client_secret",
    "redirect_uri",
    "cloud",
    "base_url",
    "store",
];

/// The line number of byte `offset` in `text`, and the key set on that line if it is one of
/// [`KNOWN_KEYS`]. Anything else on the line (a value, an unknown key that may be a pasted
/// secret) is never returned.
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<&'static str>) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let number = before.matches('\n').count() + 1;
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"'))
        .and_then(|key| KNOWN_KEYS.into_iter().find(|k| *k == key));
    (Some(number), key)
}

/// Why the file was refused, in words of our own. toml's message may quote the offending
/// value (`invalid type: integer `12345678`, expected a string` for a numeric client secret),
/// so it only chooses among these texts and is never shown.
fn reason(toml_message: &str, key: Option<&str>) -> &'static str {
    if toml_message.starts_with("invalid type") {
        "the value has the wrong type: each setting is a string in double quotes"
    } else if toml_message.starts_with("unknown field") {
        "this key is not one of the known keys"
    } else if toml_message.starts_with("unknown variant") {
        "the value is not one of those allowed (cloud is \"eu\" or \"us\")"
    } else if toml_message.starts_with("duplicate key") {
        "the key is set twice"
    } else if key == Some("base_url") {
        "the value is not a valid URL (such as \"http://127.0.0.1:8080/\")"
    } else {
        "this is not valid TOML: write one `key = \"value\"` per line"
    }
}

fn read_config(path: &Path, explicit: bool) -> Result<Values, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Values::default());
        }
        Err(e) => {
            return Err(CliError::config(format!(
                "cannot read the config file {}: {e}; check the path given with --config or WITHINGS_CONFIG",
                path.display()
            )));
        }
    };
    let file: Values = toml::from_str(&text).map_err(|e| {
        let (line, key) = e.span().map_or((None, None), |s| locate(&text, s.start));
        let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
        let key_text = key.map(|k| format!(" (`{k}`)")).unwrap_or_default();
        CliError::config(format!(
            "the config file {} is not valid{at}{key_text}: {}; the known keys are {}",
            path.display(),
            reason(e.message(), key),
            KNOWN_KEYS.join(", ")
        ))
    })?;
    // As ssh does with a private key: a secret others can read is no longer a secret, and
    // refusing is the only way the owner notices.
    let secret = if file.client_secret.is_some() {
        Some("the client secret")
    } else if file.store.as_ref().is_some_and(StoreSetting::has_password) {
        Some("a store URL with a password")
    } else {
        None
    };
    if let Some(secret) = secret
        && open_to_others(path)
    {
        return Err(CliError::config(format!(
            "the config file {} holds {secret} and other users can read or change it: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(file)
}

#[cfg(unix)]
fn open_to_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn open_to_others(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// Mode 0600, as a file holding the secret must have.
    fn set_owner_only(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = path;
    }

    fn args(config: &Path) -> GlobalArgs {
        GlobalArgs {
            config: Some(config.to_owned()),
            ..GlobalArgs::default()
        }
    }

    #[test]
    fn a_store_url_password_is_in_no_debug_output() {
        let store = StoreSetting::new("postgres://app:s3cret-pw@db.internal/withings");
        let args = GlobalArgs {
            store: Some(store.clone()),
            ..GlobalArgs::default()
        };
        let shown = format!("{args:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal/withings"),
            "{shown}"
        );
        let settings = Settings::load(GlobalArgs {
            config: Some(PathBuf::from("/nonexistent/withings-config.toml")),
            ..args
        });
        if let Ok(settings) = settings {
            assert!(!format!("{settings:?}").contains("s3cret-pw"));
        }
        assert!(store.has_password());
        assert!(!StoreSetting::new("/home/me/tokens.json").has_password());
        assert!(!StoreSetting::new("postgres://app@db/withings").has_password());
    }

    #[cfg(unix)]
    #[test]
    fn a_config_file_others_can_read_is_refused_when_its_store_url_has_a_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "store = \"postgres://app:s3cret-pw@db/withings\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Settings::load(args(&path)).unwrap_err().to_string();
        assert!(error.contains("store URL with a password"), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
        assert!(!error.contains("s3cret-pw"), "{error}");
        // Without a password there is nothing to hide.
        std::fs::write(&path, "store = \"postgres://app@db/withings\"\n").unwrap();
        Settings::load(args(&path)).unwrap();
        // Private, it is read.
        std::fs::write(&path, "store = \"postgres://app:s3cret-pw@db/withings\"\n").unwrap();
        set_owner_only(&path);
        Settings::load(args(&path)).unwrap();
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "client_id = \"from-file\"\nclient_secret = \"file-secret\"\nredirect_uri = \"https://app.example.com/cb\"\ncloud = \"us\"\n",
        )
        .unwrap();
        set_owner_only(&path);
        let mut a = args(&path);
        a.client_id = Some("from-flag".into());
        let s = Settings::load(a).unwrap();
        assert_eq!(s.values.client_id.as_deref(), Some("from-flag"));
        assert_eq!(
            s.values.client_secret.as_ref().unwrap().expose_secret(),
            "file-secret"
        );
        let client = s.client().unwrap();
        assert_eq!(client.cloud(), &Cloud::Us);
        assert!(!format!("{s:?}").contains("file-secret"));
    }

    #[test]
    fn a_bad_config_file_is_named_and_its_secret_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "client_secret = \"hunter2-secret\" oops\n").unwrap();
        let err = Settings::load(args(&path)).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        std::fs::write(&path, "clientid = \"x\"\n").unwrap();
        let err = Settings::load(args(&path)).unwrap_err().to_string();
        assert!(err.contains("client_id"), "{err}");
    }

    #[test]
    fn no_error_about_the_file_quotes_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (text, line, expected) in [
            (
                "client_secret = 12345678\n",
                1,
                "(`client_secret`): the value has the wrong type",
            ),
            (
                "client_id = \"a\"\nclient_secret = [\"87654321\"]\n",
                2,
                "(`client_secret`): the value has the wrong type",
            ),
            (
                "cloud = \"m4rs-87654321\"\n",
                1,
                "(`cloud`): the value is not one of those allowed",
            ),
            (
                "base_url = \"no url 87654321\"\n",
                1,
                "(`base_url`): the value is not a valid URL",
            ),
            (
                "client_secret = \"a\"\nclient_secret = \"87654321\"\n",
                2,
                "(`client_secret`): the key is set twice",
            ),
            (
                "87654321 = \"x\"\n",
                1,
                "line 1: this key is not one of the known keys",
            ),
            ("87654321\n", 1, "line 1: this is not valid TOML"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load(args(&path)).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains(&format!("at line {line}")), "{text:?}: {err}");
            for secret in ["12345678", "87654321", "m4rs"] {
                assert!(!err.contains(secret), "{text:?}: {err}");
            }
        }
    }

    #[test]
    fn a_missing_setting_names_its_variable_flag_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = Settings::load(args(&path)).unwrap_err().to_string();
        assert!(err.contains("absent.toml"), "{err}");

        let s = Settings::load(GlobalArgs {
            config: None,
            ..GlobalArgs::default()
        })
        .unwrap();
        let err = s.client().unwrap_err().to_string();
        for needle in ["WITHINGS_CLIENT_ID", "--client-id", "client_id ="] {
            assert!(err.contains(needle), "{err}");
        }
    }
}
