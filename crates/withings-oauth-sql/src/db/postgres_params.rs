//! The query parameters of a PostgreSQL URL: only those the driver reads reach it.
//!
//! sqlx logs every parameter it does not know, *with its value*, at WARN
//! (`PgConnectOptions::parse_from_url` in sqlx-postgres 0.8: "ignoring unrecognized connect
//! parameter"). A misspelled `pasword=...`, or a parameter of another driver carrying a
//! secret, would put that secret in the application's logs. Such a URL is refused before
//! sqlx reads it, naming the parameter but never its value. Refusing rather than dropping the
//! parameter: a parameter the store silently ignored (say `sslmode` misspelled
//! `ssl_mode`) would leave the connection weaker than its URL asked for.

use withings_oauth::StoreError;

/// The parameters sqlx-postgres reads (besides `options[name]`), as its URL parser lists them.
const KNOWN: [&str; 17] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
];

/// Refuses a URL with a query parameter sqlx does not read (it would log its value), or one it
/// reads but can't be parsed here. `shown` is the URL without its password, for the message.
pub(crate) fn check(url: &str, shown: &str) -> Result<(), StoreError> {
    let parsed = url::Url::parse(url.trim()).map_err(|_| {
        StoreError::Other(
            "the PostgreSQL URL can't be parsed: write postgres://user:password@host:port/database"
                .into(),
        )
    })?;
    for (name, _) in parsed.query_pairs() {
        let known = KNOWN.contains(&&*name)
            || name == "options"
            || (name.starts_with("options[") && name.ends_with(']'));
        if !known {
            return Err(StoreError::Other(format!(
                "the store URL {shown} has the parameter `{name}`, which the PostgreSQL driver does not read: remove it or fix its name (known: {}, options)",
                KNOWN.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_parameter_is_named_never_its_value() {
        let url =
            "postgres://fleet:pw@db/tokens?sslmode=require&pasword=hunter2&application_name=a";
        let message = check(url, "postgres://fleet@db/tokens")
            .unwrap_err()
            .to_string();
        assert!(message.contains("`pasword`"), "{message}");
        assert!(
            !message.contains("hunter2") && !message.contains("pw"),
            "{message}"
        );
        // `options[...]` without its closing bracket is one sqlx would drop without a word.
        assert!(check("postgres://db/t?options[search_path=x", "postgres://db/t").is_err());
    }

    #[test]
    fn the_parameters_sqlx_reads_pass() {
        check(
            "postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=/ca.pem&password=x&options[search_path]=s&options=-c%20a%3Db&statement-cache-capacity=10",
            "",
        )
        .unwrap();
        check("postgresql://h/db", "").unwrap();
    }
}
