//! The store URL: which backend it picks, and how it is shown (never with its password).

use crate::options::Backend;

/// A parsed store URL and its shown form.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) backend: Backend,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
    /// The password, to scrub from any message a driver might make.
    password: Option<String>,
}

impl Location {
    /// Reads `sqlite://path`, `sqlite:path`, `postgres://...` or `postgresql://...`.
    pub(crate) fn parse(url: &str) -> Result<Location, String> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            return Ok(Location {
                backend: Backend::Sqlite,
                shown: url.to_owned(),
                password: None,
            });
        }
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let Ok(mut parsed) = url::Url::parse(url) else {
                return Err(
                    "the PostgreSQL URL can't be parsed: write postgres://user:password@host:port/database"
                        .into(),
                );
            };
            let password = parsed.password().map(percent_decode);
            let _ = parsed.set_password(None);
            // Query parameters may carry a password too (`?password=`): never shown.
            parsed.set_query(None);
            return Ok(Location {
                backend: Backend::Postgres,
                shown: parsed.to_string(),
                password,
            });
        }
        Err("a store URL starts with sqlite:// or postgres:// (or postgresql://)".into())
    }

    /// The SQLite file a `sqlite:` URL names.
    #[cfg(any(feature = "sqlite", test))]
    pub(crate) fn sqlite_path(url: &str) -> &str {
        let url = url.trim();
        let rest = &url["sqlite:".len()..];
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        rest.split_once('?').map_or(rest, |(path, _)| path)
    }

    /// `text` with the URL's password masked, whatever produced it.
    pub(crate) fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(password) if !password.is_empty() && text.contains(password.as_str()) => {
                text.replace(password.as_str(), "***")
            }
            _ => text,
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let location =
            Location::parse("postgres://fleet:s3cr%21t@db.example:5432/tokens?sslmode=disable")
                .unwrap();
        assert_eq!(location.backend, Backend::Postgres);
        assert_eq!(location.shown, "postgres://fleet@db.example:5432/tokens");
        assert_eq!(
            location.scrub("password s3cr!t was refused".into()),
            "password *** was refused"
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            Location::sqlite_path("sqlite:///var/lib/t.db"),
            "/var/lib/t.db"
        );
        assert_eq!(Location::sqlite_path("sqlite://t.db?mode=rwc"), "t.db");
        assert_eq!(Location::sqlite_path("sqlite:t.db"), "t.db");
        assert!(Location::parse("mysql://x").is_err());
        assert!(Location::parse("/home/a/tokens.json").is_err());
    }
}
