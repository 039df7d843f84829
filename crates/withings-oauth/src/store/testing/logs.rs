//! What a program logs through `tracing`, kept in memory for a test to read: every event,
//! and every span as it opens with its fields, as a subscriber formats them.

use std::sync::{Arc, Mutex, PoisonError};

/// Everything the [`subscriber`](Self::subscriber)s made from it wrote, as text.
///
/// ```
/// use withings_oauth::testing::CapturedLogs;
///
/// let logs = CapturedLogs::default();
/// tracing::subscriber::with_default(logs.subscriber("trace"), || {
///     tracing::info!(user_id = 7, "refreshed");
/// });
/// assert!(logs.text().contains("refreshed user_id=7"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// A subscriber that writes here what `filter` lets through (`tracing_subscriber`'s
    /// `EnvFilter` directives, e.g. `"withings_oauth=trace,withings_oauth_sql=trace"`): every
    /// event, and every span as it opens with its fields, without colours. Install it with
    /// `tracing::subscriber::set_default` (this thread) or `set_global_default` (the process).
    ///
    /// # Panics
    /// If `filter` is not a valid directive.
    pub fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_new(filter).expect("a valid log filter"),
            )
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
