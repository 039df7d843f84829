//! No secret of a PostgreSQL URL reaches a log: sqlx logs the parameters it does not read,
//! with their values, so a URL with one is refused before sqlx reads it, naming the parameter
//! and not its value. Needs no database: the URL is refused before any connection.

use std::time::Duration;
use withings_oauth::testing::CapturedLogs;

use withings_oauth::StoreError;
use withings_oauth_sql::{SqlOptions, SqlStore};

#[tokio::test(flavor = "current_thread")]
async fn an_unknown_url_parameter_is_refused_and_its_value_never_logged() {
    let captured = CapturedLogs::default();
    let subscriber = captured.subscriber("trace");
    let _guard = tracing::subscriber::set_default(subscriber);

    // Port 9 (discard): nothing answers, should a connection be tried.
    let cases = [
        (
            "postgres://fleet:pw-4a1c@127.0.0.1:9/tokens?pasword=secret-7f3e",
            "pasword",
        ),
        (
            "postgres://fleet@127.0.0.1:9/tokens?sslmode=disable&api_key=secret-9b2d",
            "api_key",
        ),
        (
            "postgresql://127.0.0.1:9/tokens?password=pw-5e8a&extra=secret-1d6c",
            "extra",
        ),
    ];
    for (url, parameter) in cases {
        let options = SqlOptions::default().acquire_timeout(Duration::from_millis(500));
        let error = SqlStore::connect(url, options)
            .await
            .expect_err("the store opened");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Other(_)), "{error:?}");
        assert!(message.contains(&format!("`{parameter}`")), "{message}");
        assert!(
            !message.contains("secret-") && !message.contains("pw-"),
            "{message}"
        );
    }
    tracing::info!("the capture works");

    let logs = captured.text();
    assert!(logs.contains("the capture works"), "{logs}");
    assert!(
        !logs.contains("secret-"),
        "a URL parameter's value was logged: {logs}"
    );
    assert!(!logs.contains("pw-"), "a password was logged: {logs}");
}
